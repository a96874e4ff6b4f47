// Builds one provider instance per `[providers.<name>]` section from the registry, and answers
// which instance serves a pool. Used by the service and by CLI commands that need a provider
// (`vm logs`, `image build`) without starting the service.
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log.ts';
import { ProviderError, type Provider } from './provider.ts';
import { PROVIDER_KINDS, type AnyProviderKind } from './registry.ts';

export class Providers {
  private constructor(
    private readonly byName: ReadonlyMap<string, Provider>,
    private readonly poolProvider: ReadonlyMap<string, string>,
  ) {}

  static build(config: Pick<Config, 'providers' | 'pools' | 'instance_id'>, log: Logger): Providers {
    const byName = new Map<string, Provider>();
    for (const p of Object.values(config.providers)) {
      const kind: AnyProviderKind = PROVIDER_KINDS[p.kind];
      const pools = config.pools
        .filter((pool) => pool.provider === p.name)
        .map((pool) => ({ name: pool.name, settings: pool.settings }));
      byName.set(
        p.name,
        kind.create(p.settings, {
          name: p.name,
          instanceId: config.instance_id,
          pools,
          log: log.child({ provider: p.name }),
        }),
      );
    }
    return new Providers(byName, new Map(config.pools.map((p) => [p.name, p.provider])));
  }

  /** Instances given directly (tests that bring their own provider). */
  static of(byName: Record<string, Provider>, poolProvider: Record<string, string>): Providers {
    return new Providers(new Map(Object.entries(byName)), new Map(Object.entries(poolProvider)));
  }

  /** The instance serving a pool; a pool no longer configured has none. */
  forPool(pool: string): Provider {
    const name = this.poolProvider.get(pool);
    const provider = name === undefined ? undefined : this.byName.get(name);
    if (!provider) throw new ProviderError(`pool ${pool} is not configured (no provider serves it)`, false);
    return provider;
  }

  named(name: string): Provider | undefined {
    return this.byName.get(name);
  }

  all(): { name: string; provider: Provider }[] {
    return [...this.byName].map(([name, provider]) => ({ name, provider }));
  }

  async close(): Promise<void> {
    for (const p of this.byName.values()) await p.close?.();
  }
}

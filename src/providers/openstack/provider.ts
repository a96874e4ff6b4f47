// The OpenStack provider: one Nova server per VM, named as the VM, its bootstrap and guest config
// in user_data (user-data.ts), guests reporting over the service's HTTP guest channel.
// Ownership: a Nova tag derived from the instance id (what list() filters on) and the instance
// id itself in the server's metadata (what is checked before touching a server). Nova is the
// only state: a restarted service finds its servers by tag.
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { PerNameQueue } from '../per-name-queue.ts';
import { checkVmName, ProviderError, type Provider, type VmInfo, type VmSpec } from '../provider.ts';
import { Compute, isQuotaError, type Server } from './compute.ts';
import { OpenStackError } from './errors.ts';
import { OpenStackHttp, type HttpOptions } from './http.ts';
import { Keystone, type KeystoneOptions } from './keystone.ts';
import { Lookup } from './lookup.ts';
import { renderGuestConfig } from '../../guest/config.ts';
import { renderUserData } from './user-data.ts';

/** Where a pool's servers go. */
export interface OpenStackPlacement {
  /** Flavor name or id. */
  flavor: string;
  /** Network name or id, or Nova's `auto` (the one network the project sees) or `none`. */
  network: string;
  /** HATCHERY_NET for the guest: `none` when the image configures its network (cloud-init). */
  guestNet: string;
  securityGroups: string[];
}

export interface OpenStackProviderOptions {
  instanceId: string;
  keystone: KeystoneOptions;
  http: HttpOptions;
  placement: (pool: string) => OpenStackPlacement | undefined;
  /** How long a server may stay in BUILD (ms). */
  buildTimeoutMs: number;
  /** How long a deleted server may take to disappear (ms). */
  deleteTimeoutMs: number;
  /** How often a building or deleting server is looked at (ms). */
  pollMs: number;
  onEvent?: (fields: Record<string, unknown>, message: string) => void;
}

/** The metadata key holding the owner's instance id (the core's tags carry it too). */
export const OWNER_KEY = 'hatchery.instance';

/** The metadata key holding a digest of the server's bootstrap and guest config. */
export const CONFIG_KEY = 'hatchery.config';

/** Which spec a server was made for: a create of the same spec adopts it, of another replaces it. */
function configDigest(bootstrap: string, guestConfig: Record<string, string>): string {
  return createHash('sha256')
    .update(bootstrap)
    .update('\0')
    .update(renderGuestConfig(guestConfig))
    .digest('hex')
    .slice(0, 32);
}

/** Nova tags are at most 60 characters without `/` or `,`: a digest of the instance id. */
export function ownerTag(instanceId: string): string {
  return `hatchery-${createHash('sha256').update(instanceId).digest('hex').slice(0, 24)}`;
}

const RUNNING = new Set([
  'ACTIVE',
  'BUILD',
  'REBUILD',
  'REBOOT',
  'HARD_REBOOT',
  'PASSWORD',
  'MIGRATING',
  'RESIZE',
  'VERIFY_RESIZE',
]);

export class OpenStackProvider implements Provider {
  readonly kind = 'openstack';
  readonly compute: Compute;
  private readonly lookup: Lookup;
  private readonly tag: string;
  /** One create or destroy per name at a time (a create racing a destroy would orphan the VM). */
  private readonly serial = new PerNameQueue();

  constructor(private readonly opts: OpenStackProviderOptions) {
    const keystone = new Keystone(new OpenStackHttp(opts.http), opts.keystone);
    this.compute = new Compute(keystone);
    this.lookup = new Lookup(keystone);
    this.tag = ownerTag(opts.instanceId);
  }

  private ours(s: Server): boolean {
    return s.metadata?.[OWNER_KEY] === this.opts.instanceId;
  }

  private info(s: Server): VmInfo {
    return {
      name: s.name,
      status: RUNNING.has(s.status) ? 'running' : 'stopped',
      tags: Object.fromEntries(Object.entries(s.metadata ?? {}).filter(([k]) => k !== CONFIG_KEY)),
      createdAt: s.created,
      channel: { kind: 'http' },
    };
  }

  /** The servers of that name: ours, or an error if another installation has one. */
  private async named(name: string, signal?: AbortSignal): Promise<Server[]> {
    const all = await this.compute.servers({ name }, signal);
    const foreign = all.find((s) => !this.ours(s));
    if (foreign)
      throw new ProviderError(
        `VM ${name} belongs to another installation (${foreign.metadata?.[OWNER_KEY] ?? 'not Hatchery'})`,
        false,
      );
    return all;
  }

  async create(spec: VmSpec, signal?: AbortSignal): Promise<VmInfo> {
    checkVmName(spec.name);
    if (signal?.aborted) throw new ProviderError(`create ${spec.name} aborted`, true);
    return this.serial.run(spec.name, async () => {
      try {
        return await this.createNow(spec, signal);
      } catch (e) {
        if (signal?.aborted) {
          // Whatever got made (the POST may have landed as the abort came) goes.
          await this.removeAll(spec.name).catch((cleanup: unknown) => {
            throw providerError(cleanup, `create ${spec.name} aborted; removing its server failed`);
          });
          throw new ProviderError(`create ${spec.name} aborted`, true);
        }
        throw providerError(e, `create ${spec.name}`);
      }
    });
  }

  private async createNow(spec: VmSpec, signal?: AbortSignal): Promise<VmInfo> {
    const place = this.opts.placement(spec.pool);
    if (!place)
      throw new ProviderError(`pool ${spec.pool} has no OpenStack placement (flavor, network)`, false);
    const guestConfig = { HATCHERY_VM: spec.name, HATCHERY_NET: place.guestNet, ...spec.guestConfig };
    let userData: string;
    let digest: string;
    try {
      userData = renderUserData(spec.bootstrap, guestConfig);
      digest = configDigest(spec.bootstrap, guestConfig);
    } catch (e) {
      throw new ProviderError(`create ${spec.name}: ${(e as Error).message}`, false);
    }

    // Idempotent for the same spec: a server of ours with this name and this very config.
    const servers = await this.named(spec.name, signal);
    const existing = servers.find((s) => s.status !== 'ERROR' && s.metadata?.[CONFIG_KEY] === digest);
    if (existing) return this.info(await this.untilActive(existing.id, spec.name, signal));
    // Any other one is in ERROR, or was made for an earlier attempt whose guest config (its
    // one-shot JIT config, its channel token) is dead by now: gone before we make a new one.
    if (servers.length) await this.removeAll(spec.name, signal);

    const [imageRef, flavorRef, networks] = await Promise.all([
      this.lookup.imageId(spec.image, signal),
      this.compute.flavorId(place.flavor, signal),
      place.network === 'none' || place.network === 'auto'
        ? (place.network as 'none' | 'auto')
        : this.lookup.networkId(place.network, signal).then((id) => (id ? [id] : null)),
    ]);
    if (!imageRef)
      throw new ProviderError(`image ${spec.image}: no active image of that name or id in Glance`, false);
    if (!flavorRef) throw new ProviderError(`flavor ${place.flavor}: no such flavor in Nova`, false);
    if (!networks) throw new ProviderError(`network ${place.network}: no such network in Neutron`, false);

    const metadata = { ...spec.tags, [OWNER_KEY]: this.opts.instanceId, [CONFIG_KEY]: digest };
    const request = {
      name: spec.name,
      imageRef,
      flavorRef,
      networks,
      userData,
      metadata,
      tags: [this.tag],
      securityGroups: place.securityGroups,
    };

    let id: string;
    try {
      id = await this.compute.create(request, signal);
    } catch (e) {
      if (isQuotaError(e)) throw new ProviderError(`create ${spec.name}: no capacity: ${e.detail}`, true);
      if (!(e instanceof OpenStackError) || !e.retryable) throw e;
      // A reset, a timeout or a 5xx after the request reached Nova: the server may exist, or
      // appear once Nova has finished the request we gave up on.
      const made = await this.madeAnyway(spec.name, digest, signal);
      if (!made) throw e;
      id = made;
    }
    this.opts.onEvent?.({ vm: spec.name, server: id }, 'server created');
    try {
      return this.info(await this.untilActive(id, spec.name, signal));
    } catch (e) {
      // Nothing left behind on failure, as far as Nova lets us now (an abort cleans up in create()).
      if (!signal?.aborted) await this.removeAll(spec.name).catch(() => undefined);
      throw e;
    }
  }

  /** The id of the server a create whose answer was lost made after all, if it shows up. */
  private async madeAnyway(name: string, digest: string, signal?: AbortSignal): Promise<string | null> {
    // Nova may still be working on a request we stopped waiting for: give it that long again.
    const deadline = Date.now() + this.opts.http.timeoutMs + 5000;
    for (;;) {
      const made = (await this.named(name, signal)).find((s) => s.metadata?.[CONFIG_KEY] === digest);
      if (made) return made.id;
      if (Date.now() > deadline) return null;
      await sleep(this.opts.pollMs, undefined, signal ? { signal } : undefined);
    }
  }

  /** Waits for ACTIVE; a server in ERROR (or building too long) is deleted and the create fails. */
  private async untilActive(id: string, name: string, signal?: AbortSignal): Promise<Server> {
    const deadline = Date.now() + this.opts.buildTimeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const s = await this.compute.server(id, signal);
      if (!s) throw new ProviderError(`create ${name}: server ${id} disappeared while building`, true);
      if (s.status === 'ACTIVE') return s;
      if (s.status === 'ERROR') {
        const fault = s.fault?.message ?? 'no fault message';
        await this.removeAll(name, signal);
        // "No valid host" is a full cloud: another try later may find room.
        throw new ProviderError(
          `create ${name}: server went to ERROR: ${fault}`,
          /no valid host/i.test(fault),
        );
      }
      if (s.status !== 'BUILD') {
        await this.removeAll(name, signal);
        throw new ProviderError(`create ${name}: server is ${s.status}, not ACTIVE`, true);
      }
      if (Date.now() > deadline) {
        await this.removeAll(name, signal);
        throw new ProviderError(
          `create ${name}: still building after ${this.opts.buildTimeoutMs / 1000} s`,
          true,
        );
      }
      await sleep(this.opts.pollMs, undefined, signal ? { signal } : undefined);
    }
  }

  async destroy(name: string, signal?: AbortSignal): Promise<void> {
    checkVmName(name);
    return this.serial.run(name, () =>
      this.removeAll(name, signal).catch((e: unknown) => {
        throw providerError(e, `destroy ${name}`);
      }),
    );
  }

  /** Deletes every server of ours with that name and waits until Nova no longer shows them. */
  private async removeAll(name: string, signal?: AbortSignal): Promise<void> {
    const servers = await this.named(name, signal);
    const deadline = Date.now() + this.opts.deleteTimeoutMs;
    for (const s of servers) {
      await this.compute.delete(s.id, signal);
      for (;;) {
        const now = await this.compute.server(s.id, signal);
        if (!now) break;
        // A delete Nova could not finish (e.g. Neutron was down) leaves the server in ERROR
        // with no task: ask again.
        if (now.status === 'ERROR' && !now['OS-EXT-STS:task_state']) await this.compute.delete(s.id, signal);
        if (Date.now() > deadline)
          throw new ProviderError(
            `server ${s.id} still exists ${this.opts.deleteTimeoutMs / 1000} s after its delete (${now.status})`,
            true,
          );
        await sleep(this.opts.pollMs, undefined, signal ? { signal } : undefined);
      }
      this.opts.onEvent?.({ vm: name, server: s.id }, 'server deleted');
    }
  }

  async list(): Promise<VmInfo[]> {
    try {
      const servers = await this.compute.servers({ tags: [this.tag] });
      return servers.filter((s) => this.ours(s)).map((s) => this.info(s));
    } catch (e) {
      throw providerError(e, 'list');
    }
  }

  async get(name: string): Promise<VmInfo | null> {
    checkVmName(name);
    try {
      const s = (await this.compute.servers({ name, tags: [this.tag] })).find((x) => this.ours(x));
      return s ? this.info(s) : null;
    } catch (e) {
      throw providerError(e, `get ${name}`);
    }
  }
}

/** A ProviderError as it is, anything else wrapped with what was being done. */
function providerError(e: unknown, context: string): ProviderError {
  if (e instanceof ProviderError) return e;
  if (e instanceof OpenStackError) return new ProviderError(`${context}: ${e.message}`, e.retryable);
  return new ProviderError(`${context}: ${(e as Error).message}`, true);
}

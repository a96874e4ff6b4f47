// Admission's reads and its decision's inputs: what holds capacity now and which pending VMs are
// at the heads of their queues, from the store; the decision itself is quota.ts (pure). The
// worker admits what `pick` returns; the API shows `positions` (GET /api/v1/vms, /jobs).
import type { TenantsConfig } from '../config/limits.ts';
import { quotaOf } from '../config/limits.ts';
import { PROVIDER_STATES, type VmState } from '../model/states.ts';
import type { CoreContext } from './context.ts';
import { admit, queueOrder, tenantOf, vmWeight, type Limits, type PendingVm, type Usage } from './quota.ts';

/**
 * VMs whose runner is not online yet: what `limits.max_provisioning` caps. Booting counts as
 * well as creating: under load a boot costs the host (or the cloud) as much as the create call,
 * and seed 003 caps jobs "not acknowledged as really running" the same way.
 */
export const STARTING_STATES: readonly VmState[] = ['provisioning', 'booting'];

export interface AdmissionConfig {
  maxProvisioning?: number;
  tenants?: TenantsConfig;
  /**
   * VMs in `provisioning` at once: those admitted whose create step has not finished. The
   * provisioning deadline runs from admission, so VMs admitted beyond what the workers can
   * create in that time fail while merely waiting for a worker (2,000 admitted at once with 4
   * workers: 102 "provisioning timed out after 300 s"). The service sets it to twice the
   * workers' concurrency; the rest wait in `pending`, under the queue's longer deadline.
   */
  maxCreating?: number;
}

export class Admission {
  constructor(private readonly ctx: CoreContext) {}

  private get config(): AdmissionConfig {
    return this.ctx.admission ?? {};
  }

  /** The pending VMs to admit now, in order. Cheap however long the queue: counts, then heads. */
  async pick(): Promise<string[]> {
    const usage = await this.usage();
    const limits = this.limits(usage);
    const total = Object.values(usage.perPool).reduce((a, b) => a + b, 0);
    const room = Math.min(limits.total - total, (limits.starting ?? Infinity) - usage.starting);
    if (room <= 0) return [];
    const free = Object.fromEntries(
      this.ctx.pools.map((p) => [p.name, Math.min(p.max_vms - (usage.perPool[p.name] ?? 0), room)]),
    );
    const tenants = this.config.tenants;
    const heads: PendingVm[] = tenants
      ? (await this.ctx.store.pendingHeadsByTenant(free, tenants.by)).map((h) => ({
          name: h.name,
          pool: h.pool,
          tenant: tenantOf(h.repository, tenants.by),
        }))
      : (await this.ctx.store.pendingHeads(free)).map((h) => ({ name: h.name, pool: h.pool, tenant: '' }));
    return admit(heads, usage, limits);
  }

  /** Every pending VM's queue position (1: next), in the order admission takes them. */
  async positions(): Promise<Map<string, number>> {
    const pending = (await this.ctx.store.listVms({ states: ['pending'] })).reverse(); // oldest first
    if (pending.length === 0) return new Map();
    const by = this.config.tenants?.by ?? 'owner';
    const usage = await this.usage();
    const order = queueOrder(
      pending.map((vm) => ({ name: vm.name, pool: vm.pool, tenant: tenantOf(vm.repository, by) })),
      usage,
      this.limits(usage),
    );
    return new Map(order.map((name, i) => [name, i + 1]));
  }

  private weightOf(pool: string): number {
    const t = this.config.tenants;
    const memory = this.ctx.pools.find((p) => p.name === pool)?.memory;
    // A VM of a pool removed from the config still holds capacity: it weighs as one GiB.
    return t ? vmWeight(memory ?? 1024, t.weight_exponent) : 1;
  }

  private limits(usage: Usage & { creating: number }): Limits {
    const t = this.config.tenants;
    // Both caps bound VMs starting: the creating one as the room left among those provisioning.
    const starting = Math.min(
      this.config.maxProvisioning ?? Infinity,
      usage.starting + (this.config.maxCreating ?? Infinity) - usage.creating,
    );
    return {
      total: this.ctx.maxVms,
      perPool: Object.fromEntries(this.ctx.pools.map((p) => [p.name, p.max_vms])),
      ...(Number.isFinite(starting) ? { starting } : {}),
      ...(t
        ? {
            tenants: {
              weight: Object.fromEntries(this.ctx.pools.map((p) => [p.name, this.weightOf(p.name)])),
              quota: (tenant: string) => quotaOf(t, tenant),
            },
          }
        : {}),
    };
  }

  private async usage(): Promise<Usage & { creating: number }> {
    const by = this.config.tenants?.by ?? 'owner';
    const perPool: Record<string, number> = {};
    const perTenant: Record<string, number> = {};
    let starting = 0;
    let creating = 0;
    for (const r of await this.ctx.store.activeUse(PROVIDER_STATES)) {
      perPool[r.pool] = (perPool[r.pool] ?? 0) + r.n;
      const tenant = tenantOf(r.repository, by);
      perTenant[tenant] = (perTenant[tenant] ?? 0) + r.n * this.weightOf(r.pool);
      if (STARTING_STATES.includes(r.state)) starting += r.n;
      if (r.state === 'provisioning') creating += r.n;
    }
    return { perPool, starting, perTenant, creating };
  }
}

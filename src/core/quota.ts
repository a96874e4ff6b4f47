// Which pending VMs may start now: a pure function of what waits, what runs and the limits.
// The rules, in the order they are checked for each pick:
//   1. the global limit (`limits.max_vms`) and the cap on VMs starting at once
//      (`limits.max_provisioning`: provisioning + booting) stop the whole pass;
//   2. a pool at its `max_vms`, or a tenant whose quota the VM's weight would exceed, only
//      skips that VM (no head-of-line blocking: others may still start);
//   3. among the VMs that may start, the pick is the oldest one (no tenants configured), or
//      the oldest one of the tenant using the least weight now (tenants configured: fair share,
//      ties to the oldest). Each pick counts at once for the next one.
// Nothing is ever dropped here: a VM not picked waits for the next pass. Why this rule:
// docs/adr/2026-12-02-fair-admission.md.

export interface PendingVm {
  name: string;
  pool: string;
  /** Whose VM it is (an owner or a repository, tenantOf); ignored without `limits.tenants`. */
  tenant: string;
}

/** What holds capacity now (VMs that may exist at the provider). */
export interface Usage {
  perPool: Readonly<Record<string, number>>;
  /** VMs provisioning or booting (their runner not online yet). */
  starting: number;
  /** Weight in use per tenant (tenants configured only). */
  perTenant: Readonly<Record<string, number>>;
}

export interface TenantLimits {
  /** The weight of one VM of each pool (tenants.weightOf). */
  weight: Readonly<Record<string, number>>;
  /** A tenant's quota in weight units (Infinity: none). */
  quota(tenant: string): number;
}

export interface Limits {
  /** All pools together. */
  total: number;
  /** Per pool; a pool missing here cannot start anything. */
  perPool: Readonly<Record<string, number>>;
  /** VMs starting at once (default: no cap). */
  starting?: number;
  /** Fair share across tenants, with quotas; absent: oldest first. */
  tenants?: TenantLimits;
}

/** Weights are sums of powers of fractions: compare with a little room for rounding. */
const EPSILON = 1e-9;

/** `pending` oldest first. Returns the names to admit, in the order they were picked. */
export function admit(pending: readonly PendingVm[], usage: Usage, limits: Limits): string[] {
  const perPool: Record<string, number> = { ...usage.perPool };
  const perTenant: Record<string, number> = { ...usage.perTenant };
  let total = Object.values(perPool).reduce((a, b) => a + b, 0);
  let starting = usage.starting;
  const tenants = limits.tenants;
  const left = [...pending];
  const admitted: string[] = [];
  const fits = (vm: PendingVm): boolean => {
    if ((perPool[vm.pool] ?? 0) >= (limits.perPool[vm.pool] ?? 0)) return false;
    if (!tenants) return true;
    return (perTenant[vm.tenant] ?? 0) + weightOf(tenants, vm) <= tenants.quota(vm.tenant) + EPSILON;
  };
  while (left.length > 0 && total < limits.total && starting < (limits.starting ?? Infinity)) {
    let best = -1;
    for (let i = 0; i < left.length; i++) {
      const vm = left[i]!;
      if (!fits(vm)) continue;
      if (best === -1) best = i;
      if (!tenants) break; // oldest first: the first that fits
      // Strictly less used only: among equals the older (earlier) one stays the pick.
      if ((perTenant[vm.tenant] ?? 0) < (perTenant[left[best]!.tenant] ?? 0) - EPSILON) best = i;
    }
    if (best === -1) break;
    const [vm] = left.splice(best, 1) as [PendingVm];
    perPool[vm.pool] = (perPool[vm.pool] ?? 0) + 1;
    if (tenants) perTenant[vm.tenant] = (perTenant[vm.tenant] ?? 0) + weightOf(tenants, vm);
    total++;
    starting++;
    admitted.push(vm.name);
  }
  return admitted;
}

/**
 * Every pending VM in the order `admit` would take them were there room for all: its queue
 * position (1 = next when room frees in its pool) is its index + 1. Quotas and limits are
 * ignored: they say when, not in which order.
 */
export function queueOrder(pending: readonly PendingVm[], usage: Usage, limits: Limits): string[] {
  const pools = Object.fromEntries(pending.map((vm) => [vm.pool, Infinity]));
  return admit(pending, usage, {
    total: Infinity,
    perPool: pools,
    ...(limits.tenants ? { tenants: { weight: limits.tenants.weight, quota: () => Infinity } } : {}),
  });
}

function weightOf(t: TenantLimits, vm: PendingVm): number {
  return t.weight[vm.pool] ?? 1;
}

/** A VM's weight from its memory: (MiB / 1024) ^ exponent (seed 003: memory_GiB^1.25). */
export function vmWeight(memoryMiB: number, exponent: number): number {
  return (memoryMiB / 1024) ** exponent;
}

export type TenantBy = 'owner' | 'repository';

/** The tenant a repository (`owner/repo`) belongs to, compared case-insensitively as GitHub does. */
export function tenantOf(repository: string, by: TenantBy): string {
  const lower = repository.toLowerCase();
  return by === 'repository' ? lower : lower.split('/')[0]!;
}

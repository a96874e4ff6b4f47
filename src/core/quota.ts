// Which pending VMs may start now: a pure function of what waits, what runs and the limits.
// Oldest first; a pool at its limit does not block other pools (no head-of-line blocking).

export interface PendingVm {
  name: string;
  pool: string;
}

export interface Limits {
  /** All pools together. */
  total: number;
  /** Per pool; a pool missing here cannot start anything. */
  perPool: Record<string, number>;
}

/** `active` counts VMs that hold provider resources, per pool. Returns the names to admit, in order. */
export function admit(
  pending: readonly PendingVm[],
  active: Readonly<Record<string, number>>,
  limits: Limits,
): string[] {
  const running = { ...active };
  let total = Object.values(running).reduce((a, b) => a + b, 0);
  const admitted: string[] = [];
  for (const vm of pending) {
    if (total >= limits.total) break;
    const cap = limits.perPool[vm.pool] ?? 0;
    if ((running[vm.pool] ?? 0) >= cap) continue;
    running[vm.pool] = (running[vm.pool] ?? 0) + 1;
    total++;
    admitted.push(vm.name);
  }
  return admitted;
}

// How many VMs each pool should boot ahead, and which of those booted ahead should go: a pure
// function of counts (servo's compute_runner_changes: decide returns data, the sweep acts).
// Rules, in order:
//  1. Real work first. VMs of requests waiting for capacity (pending) that the pool's own limit
//     would admit, were it not for the slots its warm VMs hold, evict that many warm VMs; so do
//     requests of any pool kept out by the global limit (limits.max_vms). A warm VM is a guess,
//     a pending request is a job waiting.
//  2. Surplus: a pool with more warm VMs than its min_idle (lowered, or removed from the config)
//     retires the extra ones — those that cost least to lose first (not started, then booting,
//     newest first), then the oldest warm ones (closest to their max age).
//  3. Deficit: a pool with fewer boots the missing ones, but only into room nothing waits for:
//     its max_vms and the global limit, minus what is running and what is pending.
// A VM retired by rule 1 or 2 is not replaced in the same pass (rule 3 sees the room it frees
// taken by the pending work, or the pool at its min_idle).
import { INITIAL_STATE, type VmState } from '../model/states.ts';

export interface WarmPoolView {
  pool: string;
  /** The pool's min_idle (0 for a pool no longer configured). */
  minIdle: number;
  maxVms: number;
  /** The pool's VMs that hold capacity (provider states), whatever their source. */
  active: number;
  /** The pool's VMs waiting for capacity, whatever their source. */
  pending: number;
  /** Its VMs booted ahead and bound to no request (not destroying), oldest first. */
  warm: readonly { name: string; state: VmState }[];
}

export interface WarmPlan {
  /** New VMs to boot ahead, per pool. */
  boot: Record<string, number>;
  /** Warm VMs to destroy, each with why. */
  retire: { name: string; why: string }[];
}

/** Lower: cheaper to lose (nothing started yet). */
const READINESS: Partial<Record<VmState, number>> = {
  [INITIAL_STATE]: 0,
  provisioning: 1,
  booting: 2,
  warm: 3,
};

export function planWarmPools(pools: readonly WarmPoolView[], maxVms: number): WarmPlan {
  const plan: WarmPlan = { boot: {}, retire: [] };
  const gone = new Set<string>();
  const retire = (name: string, why: string): void => {
    gone.add(name);
    plan.retire.push({ name, why });
  };
  const held = (p: WarmPoolView) => p.warm.filter((w) => w.state !== INITIAL_STATE && !gone.has(w.name));
  // Evict the oldest first: the most likely to be recycled soon anyway.
  const evict = (p: WarmPoolView, n: number, why: string): number => {
    const victims = held(p).slice(0, Math.max(0, n));
    for (const v of victims) retire(v.name, why);
    return victims.length;
  };

  // 1. Real work first: the pool's own limit, then the global one.
  let realWanting = 0;
  for (const p of pools) {
    const warmHeld = held(p).length;
    const warmPending = p.warm.length - warmHeld;
    const pendingReal = p.pending - warmPending;
    const admissible = Math.min(pendingReal, p.maxVms - (p.active - warmHeld));
    realWanting += Math.max(0, admissible);
    const free = p.maxVms - p.active;
    evict(p, admissible - free, `requests of pool ${p.pool} wait for the room it holds`);
  }
  const active = pools.reduce((n, p) => n + p.active, 0);
  let globalShort = realWanting - (maxVms - active) - plan.retire.length;
  for (const p of pools) {
    if (globalShort <= 0) break;
    globalShort -= evict(p, globalShort, 'requests wait for room under limits.max_vms');
  }

  // 2. Surplus.
  for (const p of pools) {
    const left = p.warm.filter((w) => !gone.has(w.name));
    const surplus = left.length - p.minIdle;
    if (surplus <= 0) continue;
    const order = [...left].sort((a, b) => {
      const ra = READINESS[a.state] ?? 3;
      const rb = READINESS[b.state] ?? 3;
      if (ra !== rb) return ra - rb;
      // Not warm yet: newest first (least invested); warm: oldest first (nearest its max age).
      const ia = left.indexOf(a);
      const ib = left.indexOf(b);
      return ra < 3 ? ib - ia : ia - ib;
    });
    for (const w of order.slice(0, surplus)) retire(w.name, `more than min_idle = ${p.minIdle} warm VMs`);
  }

  // 3. Deficit, into room nothing waits for.
  let globalRoom = maxVms - active - pools.reduce((n, p) => n + p.pending, 0);
  for (const p of pools) {
    const have = p.warm.filter((w) => !gone.has(w.name)).length;
    const room = p.maxVms - p.active - p.pending;
    const n = Math.min(p.minIdle - have, room, globalRoom);
    if (n <= 0) continue;
    plan.boot[p.pool] = n;
    globalRoom -= n;
  }
  return plan;
}

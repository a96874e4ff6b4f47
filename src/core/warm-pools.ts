// Warm pools (docs/adr/2026-12-02-warm-pools.md): each pool keeps `min_idle` VMs booted ahead
// without a JIT config, so that a request taking one has its runner online in about a second.
// This module is the effect side: a sweep observes the store, asks the pure policy
// (warm-policy.ts) what to boot and what to retire, and records that — new rows the worker admits
// and provisions like any, destroy requests the worker carries out. Requests take warm VMs through
// `insertVmsTakingWarm` (intake.ts, jobs.ts): one store transaction rebinds the VM and starts its
// `configure` step. A sweep runs at start (adopting what the last process left: rows are the
// truth), when a VM of interest changes, and on an interval.
import { randomBytes } from 'node:crypto';
import type { DeliveryRef, NewVm } from '../store/store.ts';
import { applyEvent } from './apply.ts';
import { timeoutsFor, type CoreContext } from './context.ts';
import { deadlineFor, INITIAL_STATE, isTerminal, next, PROVIDER_STATES } from './lifecycle.ts';
import { vmName } from './naming.ts';
import { planWarmPools, type WarmPlan, type WarmPoolView } from './warm-policy.ts';

/** What a warm VM's row carries until a request takes it. */
export const WARM_SOURCE = 'warm';

/**
 * Store.insertVms, where a VM whose pool has a warm VM ready takes that one instead (its
 * `configure` step then mints the JIT config and sends it over the guest channel).
 */
export async function insertVmsTakingWarm(
  ctx: Pick<CoreContext, 'store' | 'pools' | 'clock' | 'log' | 'notifier'>,
  vms: NewVm[],
  delivery?: DeliveryRef,
): Promise<Awaited<ReturnType<CoreContext['store']['insertVms']>>> {
  const out = await ctx.store.insertVms(vms, ctx.clock(), delivery, (vm) => {
    const event = { type: 'taken' as const, by: `${vm.source} ${vm.identity}` };
    const o = next(vm, event, timeoutsFor(ctx, vm.pool));
    return o.kind === 'next' ? { event, decision: o.decision } : null;
  });
  for (const r of out.results) {
    if (!r.created || r.vm.state !== 'configuring') continue;
    ctx.log.info({ vm: r.vm.name, identity: r.vm.identity, pool: r.vm.pool }, 'warm VM taken');
    ctx.notifier.changed(r.vm.name, r.vm);
  }
  return out;
}

export class WarmPools {
  private timer: NodeJS.Timeout | null = null;
  private soon: NodeJS.Timeout | null = null;
  private running: Promise<WarmPlan> | null = null;
  private again = false;
  private stopped = false;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly ctx: CoreContext,
    private readonly intervalMs: number,
  ) {
    const used = (): boolean => ctx.pools.some((p) => p.min_idle > 0);
    const offTransition = ctx.notifier.onTransition((vm) => {
      // A warm VM changed (turned warm, was taken, ended), or capacity came back.
      if (vm.source === WARM_SOURCE || vm.state === 'configuring' || (used() && isTerminal(vm.state)))
        this.kick();
    });
    // New requests may need the room warm VMs hold.
    const offQueued = ctx.notifier.onQueued(() => {
      if (used()) this.kick();
    });
    this.unsubscribe = () => {
      offTransition();
      offQueued();
    };
  }

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => this.kick(), this.intervalMs);
    this.timer.unref();
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe();
    if (this.timer) clearInterval(this.timer);
    if (this.soon) clearTimeout(this.soon);
    this.timer = this.soon = null;
    await this.running?.catch(() => undefined);
  }

  /** A sweep soon; many kicks in a burst make one sweep. */
  kick(): void {
    if (this.stopped || this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = null;
      this.sweep().catch((e: Error) => this.ctx.log.error({ err: e.message }, 'warm pool sweep failed'));
    }, 20);
  }

  /** One pass (a pass asked for while one runs follows it). */
  async sweep(): Promise<WarmPlan> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.sweepOnce().finally(() => {
      this.running = null;
      if (this.again && !this.stopped) {
        this.again = false;
        this.kick();
      }
    });
    return this.running;
  }

  private async sweepOnce(): Promise<WarmPlan> {
    const { store } = this.ctx;
    const [warm, active, pending] = await Promise.all([
      store.warmVms(),
      store.activeByPool(PROVIDER_STATES),
      store.activeByPool([INITIAL_STATE]),
    ]);
    // Every configured pool, and any pool that has warm VMs but is no longer configured (it
    // keeps none: min_idle 0).
    const names = [...new Set([...this.ctx.pools.map((p) => p.name), ...warm.map((v) => v.pool)])];
    const views: WarmPoolView[] = names.map((pool) => {
      const cfg = this.ctx.pools.find((p) => p.name === pool);
      return {
        pool,
        minIdle: cfg?.min_idle ?? 0,
        maxVms: cfg?.max_vms ?? 0,
        active: active[pool] ?? 0,
        pending: pending[pool] ?? 0,
        warm: warm.filter((v) => v.pool === pool),
      };
    });
    const plan = planWarmPools(views, this.ctx.maxVms);
    for (const { name, why } of plan.retire) {
      await applyEvent(this.ctx, name, { type: 'destroy_requested', by: `warm pool: ${why}` });
    }
    const rows = Object.entries(plan.boot).flatMap(([pool, n]) =>
      Array.from({ length: n }, () => this.warmRow(pool)),
    );
    if (rows.length) {
      await store.insertVms(rows, this.ctx.clock());
      this.ctx.log.info({ boot: plan.boot }, 'warm pool: booting VMs ahead');
      this.ctx.notifier.queued();
    }
    if (plan.retire.length) this.ctx.notifier.wake();
    return plan;
  }

  /** A VM booted ahead: bound to no request, no repository, no runner labels until taken. */
  private warmRow(poolName: string): NewVm {
    const pool = this.ctx.pools.find((p) => p.name === poolName)!;
    const key = `warm-${randomBytes(4).toString('hex')}`;
    const label = pool.labels[0]!.toLowerCase();
    return {
      name: vmName({ repository: '', label, key }),
      identity: `${WARM_SOURCE}:${pool.name}:${key}`,
      pool: pool.name,
      provider: pool.provider,
      source: WARM_SOURCE,
      repository: '',
      runId: null,
      runAttempt: null,
      label,
      runnerLabels: [],
      credential: null,
      initialDeadline: deadlineFor(INITIAL_STATE, timeoutsFor(this.ctx, pool.name)),
    };
  }
}

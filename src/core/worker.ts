// The worker loop: admit pending VMs within quota, fire due timeouts, lease due actions and run
// them (at most `concurrency` at once). A step's lease is renewed while it runs; if the lease is
// lost (another worker took over after we stalled) the step is aborted and its result dropped.
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lease, VmRecord } from '../store/store.ts';
import { applyEvent } from './apply.ts';
import type { CoreContext } from './context.ts';
import type { LifecycleEvent } from './lifecycle.ts';
import { Admission } from './admission.ts';
import { configure, destroy, provision } from './steps.ts';

const TICK_GAP_MS = 20;

export interface WorkerOptions {
  concurrency: number;
  leaseMs: number;
  pollMs: number;
}

/** Lease owners name their process, so a restarted service can release its predecessor's. */
export function leaseOwner(instanceId: string, pid = process.pid): string {
  return `${instanceId}/${hostname()}/${pid}`;
}

export class Worker {
  readonly owner: string;
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly stopping = new AbortController();
  private loop: Promise<void> | null = null;
  /** When deadlines and the queue were last checked regardless of any signal. */
  private lastPeriodic = 0;
  /** This process queued a VM or saw one give its capacity back: admission is worth a look. */
  private queueChanged = true;
  private readonly unsubscribe: () => void;
  private readonly admission: Admission;

  constructor(
    private readonly ctx: CoreContext,
    private readonly opts: WorkerOptions,
  ) {
    this.owner = leaseOwner(ctx.instanceId);
    this.admission = new Admission(ctx);
    const offTransition = ctx.notifier.onTransition((vm) => {
      // A VM queued (pending), or giving back capacity: all of it (ended), a start slot
      // (limits.max_provisioning: it left provisioning/booting), or a creating one (it left
      // provisioning: admission.ts, maxCreating). Admission costs two queries.
      if (vm.state !== 'provisioning') this.queueChanged = true;
    });
    const offQueued = ctx.notifier.onQueued(() => (this.queueChanged = true));
    this.unsubscribe = () => {
      offTransition();
      offQueued();
    };
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops claiming; waits up to `graceMs` for running steps (their leases expire otherwise). */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping.abort();
    this.unsubscribe();
    await this.loop;
    const grace = new AbortController();
    await Promise.race([
      Promise.allSettled([...this.inflight.values()]),
      sleep(graceMs, undefined, { signal: grace.signal }).catch(() => undefined),
    ]);
    grace.abort(); // the grace timer must not keep the process alive
  }

  get busy(): number {
    return this.inflight.size;
  }

  /** Waits until no step runs (tests, graceful shutdown). */
  async idle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight.values()]);
  }

  private async run(): Promise<void> {
    while (!this.stopping.signal.aborted) {
      const started = Date.now();
      let more = false;
      try {
        more = await this.tick();
      } catch (e) {
        this.ctx.log.error({ err: (e as Error).message }, 'worker tick failed');
      }
      // Work left over (every free slot was filled, or VMs were admitted): go on at once.
      // Otherwise sleep until something happens; a wake-up signalled meanwhile is not lost.
      if (!more) await this.ctx.notifier.waitForWork(this.opts.pollMs, this.stopping.signal);
      // A burst of requests wakes the worker once per request: ticks at most every TICK_GAP_MS,
      // so that the burst is acknowledged first and admitted in a few ticks, not hundreds.
      const gap = TICK_GAP_MS - (Date.now() - started);
      if (gap > 0 && !this.stopping.signal.aborted) await sleep(gap, undefined, { ref: false });
    }
  }

  /**
   * One pass: admit, time out, claim and start steps. Returns whether more work may be due right
   * now (every free slot was filled, or VMs were admitted whose steps can start).
   */
  async tick(): Promise<boolean> {
    const now = this.ctx.clock();
    // Deadlines have second granularity, and the queue changes only on a request, a VM ending, or
    // another replica's doing: both are checked on the poll interval, or at once when this
    // process saw such a change — not on every tick of a burst.
    const periodic = now - this.lastPeriodic >= this.opts.pollMs;
    let admitted = 0;
    if (periodic || this.queueChanged) {
      this.queueChanged = false;
      admitted = await this.admitPending();
    }
    if (periodic) {
      this.lastPeriodic = now;
      await this.fireTimeouts();
    }
    const free = this.opts.concurrency - this.inflight.size;
    if (free <= 0 || this.stopping.signal.aborted) return admitted > 0 && free > 0;
    const claimed = await this.ctx.store.claim(this.owner, this.ctx.clock(), this.opts.leaseMs, free);
    for (const vm of claimed) {
      const p = this.execute(vm)
        .catch((e: Error) => this.ctx.log.error({ vm: vm.name, err: e.message }, 'step crashed'))
        .finally(() => {
          this.inflight.delete(vm.name);
          this.ctx.notifier.wake();
        });
      this.inflight.set(vm.name, p);
    }
    return claimed.length === free || admitted > 0;
  }

  /** Admits what capacity allows (admission.ts, quota.ts); returns how many. */
  private async admitPending(): Promise<number> {
    const names = await this.admission.pick();
    for (const name of names) await applyEvent(this.ctx, name, { type: 'admitted' });
    return names.length;
  }

  private async fireTimeouts(): Promise<void> {
    for (const vm of await this.ctx.store.due(this.ctx.clock())) {
      await applyEvent(this.ctx, vm.name, { type: 'timeout' });
    }
  }

  private async execute(vm: VmRecord): Promise<void> {
    let lease: Lease = { owner: this.owner, expiresAt: vm.leaseExpiresAt ?? 0 };
    const abort = new AbortController();
    let renewing: Promise<void> = Promise.resolve();
    const timer = setInterval(
      () => {
        renewing = (async () => {
          const renewed = await this.ctx.store.renew(vm.name, lease, this.opts.leaseMs, this.ctx.clock());
          if (renewed) lease = renewed;
          else abort.abort(new Error('lease lost'));
        })().catch(() => undefined);
      },
      Math.max(50, Math.floor(this.opts.leaseMs / 3)),
    );

    let event: LifecycleEvent;
    const started = this.ctx.clock();
    try {
      if (vm.action === 'provision') {
        event = await provision(this.ctx, vm, abort.signal);
      } else if (vm.action === 'configure') {
        event = await configure(this.ctx, vm, abort.signal);
      } else if (vm.action === 'destroy') {
        event = await destroy(this.ctx, vm, abort.signal);
      } else {
        throw new Error(`unknown action ${String(vm.action)}`);
      }
    } finally {
      clearInterval(timer);
      await renewing;
    }
    this.ctx.log.debug(
      { vm: vm.name, action: vm.action, ms: this.ctx.clock() - started, result: event.type },
      'step done',
    );
    // The guest link follows the new state by itself (guest-links.ts).
    await applyEvent(this.ctx, vm.name, event, { lease });
  }
}

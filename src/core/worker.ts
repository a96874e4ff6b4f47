// The worker loop: admit pending VMs within quota, fire due timeouts, lease due actions and run
// them (at most `concurrency` at once). A step's lease is renewed while it runs; if the lease is
// lost (another worker took over after we stalled) the step is aborted and its result dropped.
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lease, VmRecord } from '../store/store.ts';
import { applyEvent } from './apply.ts';
import type { CoreContext } from './context.ts';
import { PROVIDER_STATES, type LifecycleEvent } from './lifecycle.ts';
import { admit } from './quota.ts';
import { destroy, provision } from './steps.ts';

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

  constructor(
    private readonly ctx: CoreContext,
    private readonly opts: WorkerOptions,
  ) {
    this.owner = leaseOwner(ctx.instanceId);
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops claiming; waits up to `graceMs` for running steps (their leases expire otherwise). */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping.abort();
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
      try {
        await this.tick();
      } catch (e) {
        this.ctx.log.error({ err: (e as Error).message }, 'worker tick failed');
      }
      await this.ctx.notifier.waitForWork(this.opts.pollMs, this.stopping.signal);
      // A burst of requests wakes the worker once per request: ticks at most every TICK_GAP_MS,
      // so that the burst is acknowledged first and admitted in a few ticks, not hundreds.
      const gap = TICK_GAP_MS - (Date.now() - started);
      if (gap > 0 && !this.stopping.signal.aborted) await sleep(gap, undefined, { ref: false });
    }
  }

  /** One pass: admit, time out, claim and start steps. */
  async tick(): Promise<void> {
    await this.admitPending();
    await this.fireTimeouts();
    const free = this.opts.concurrency - this.inflight.size;
    if (free <= 0 || this.stopping.signal.aborted) return;
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
  }

  private async admitPending(): Promise<void> {
    // Cheap on every tick, however long the queue: counts, then only the heads that could start.
    const active = await this.ctx.store.activeByPool(PROVIDER_STATES);
    const total = Object.values(active).reduce((a, b) => a + b, 0);
    if (total >= this.ctx.maxVms) return;
    const perPool = Object.fromEntries(this.ctx.pools.map((p) => [p.name, p.max_vms]));
    const free = Object.fromEntries(
      this.ctx.pools.map((p) => [
        p.name,
        Math.min(p.max_vms - (active[p.name] ?? 0), this.ctx.maxVms - total),
      ]),
    );
    const heads = await this.ctx.store.pendingHeads(free);
    for (const name of admit(heads, active, { total: this.ctx.maxVms, perPool })) {
      await applyEvent(this.ctx, name, { type: 'admitted' });
    }
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

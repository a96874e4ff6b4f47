// Missed webhooks, part one: GitHub does not retry a failed delivery (service down, timeout,
// refused), so every interval the App's failed deliveries are listed and those whose event never
// reached us (its guid is not among the recorded deliveries: a redelivery keeps the guid) are
// redelivered, each at most MAX_ATTEMPTS times. A guid is asked for again only when a newer failed
// attempt shows that the last redelivery failed too (a redelivery still on its way is not
// doubled). Passes run one at a time. The first pass looks back LOOKBACK_MS: what failed while
// the service was down is recovered at start-up.
import type { DeliveriesApi } from '../github/deliveries.ts';
import type { Logger } from '../log.ts';
import type { Store } from '../store/store.ts';

export const LOOKBACK_MS = 3600_000;
const OVERLAP_MS = 60_000;
const MAX_ATTEMPTS = 3;

export class Redeliverer {
  private since: number | null = null;
  /** guid → redeliveries asked for, and the failed delivery id last redelivered. */
  private readonly attempts = new Map<string, { n: number; lastId: number }>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deps: { store: Store; log: Logger; clock: () => number },
    private readonly api: DeliveriesApi,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    const tick = () => {
      void this.pass()
        .catch((e: Error) =>
          this.deps.log.warn({ err: e.message }, 'redelivery pass failed; next pass retries'),
        )
        .finally(() => {
          if (this.timer !== undefined) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  get started(): boolean {
    return this.timer !== undefined;
  }

  /** One pass (after any pass in progress): returns the guids redelivered. */
  pass(): Promise<string[]> {
    const run = this.running.then(() => this.onePass());
    this.running = run.catch(() => undefined);
    return run;
  }

  private async onePass(): Promise<string[]> {
    const now = this.deps.clock();
    const since = (this.since ?? now - LOOKBACK_MS) - OVERLAP_MS;
    const failed = await this.api.failedSince(since);
    const done: string[] = [];
    for (const d of failed) {
      if (done.includes(d.guid)) continue; // newest first: one redelivery per event
      if (await this.deps.store.deliverySeen('github', d.guid)) continue; // it reached us after all
      const prev = this.attempts.get(d.guid);
      // No failed attempt newer than our last redelivery: it is still on its way, or it worked.
      if (prev && (prev.n >= MAX_ATTEMPTS || d.id <= prev.lastId)) continue;
      const n = (prev?.n ?? 0) + 1;
      this.attempts.set(d.guid, { n, lastId: d.id });
      await this.api.redeliver(d.id);
      done.push(d.guid);
      this.deps.log.info(
        { delivery: d.guid, event: d.event, action: d.action, attempt: n },
        'webhook redelivered',
      );
    }
    this.since = now;
    // Only guids inside the window can come back: forget the others.
    if (this.attempts.size > 10_000) this.attempts.clear();
    return done;
  }
}

// One shared "not before" time for the calls that GitHub rate-limits together (a secondary rate
// limit is per App or per token, not per VM). When GitHub refuses a call, every caller waits
// until the time it named (`retry-after`, or `x-ratelimit-reset`), else for an exponential
// backoff from a minute (GitHub: "wait for at least one minute … an exponentially increasing
// amount of time between retries"). Once the time has passed, a single call goes first (a probe):
// the others follow only once it succeeded, so a limit that still holds costs one refusal per
// wait, not one per waiting VM. Why here and not in the lifecycle:
// docs/adr/2026-12-02-jit-rate-limit.md.
import { setTimeout as sleep } from 'node:timers/promises';

/** What a refusal says about when to try again; `waitMs` null: nothing (back off). */
export interface Refusal {
  waitMs: number | null;
}

export interface RateGateOptions {
  clock?: () => number;
  /** First backoff when GitHub names no time (doubles per refusal in a row); default 60 s. */
  backoffMs?: number;
  /** Longest backoff; default 15 min. */
  maxBackoffMs?: number;
  /** A call that has waited this long in total fails with its last refusal; default 10 min. */
  maxWaitMs?: number;
  /** Told about every refusal (logging, counting). */
  onRefused?: (info: { what: string; waitMs: number; named: boolean; strikes: number }) => void;
}

export class RateGate {
  private notBefore = 0;
  /** Refusals in a row (only those of calls sent after the previous refusal count). */
  private strikes = 0;
  private refusedAt = Number.NEGATIVE_INFINITY;
  /** The probe in flight while recovering from a refusal. */
  private probe: Promise<void> | null = null;
  private readonly clock: () => number;

  constructor(private readonly opts: RateGateOptions = {}) {
    this.clock = opts.clock ?? Date.now;
  }

  /** When the next call may be sent (epoch ms; 0: now). */
  get openAt(): number {
    return this.notBefore;
  }

  /**
   * Runs `call` once the gate is open, again after each refusal `refusal` recognises (its other
   * errors are thrown at once), until it succeeds or has waited `maxWaitMs`. `signal` aborts a wait.
   */
  async run<T>(
    what: string,
    call: () => Promise<T>,
    refusal: (e: unknown) => Refusal | undefined,
    signal?: AbortSignal,
  ): Promise<T> {
    const maxWait = this.opts.maxWaitMs ?? 600_000;
    let waited = 0;
    let last: unknown = undefined;
    for (;;) {
      for (let now = this.clock(); now < this.notBefore || (this.strikes > 0 && this.probe);) {
        const ms = this.notBefore - now;
        if (ms > 0) {
          if (waited + ms > maxWait)
            throw last ?? new Error(`${what}: still rate-limited after ${waited} ms`);
          // An abort throws the signal's own reason (e.g. the lease lost), not a bare AbortError.
          await sleep(ms, undefined, signal ? { signal } : {}).catch((e: unknown) => {
            signal?.throwIfAborted();
            throw e;
          });
          waited += ms;
        } else {
          await this.probe;
        }
        now = this.clock();
      }
      signal?.throwIfAborted();
      const probing = this.strikes > 0;
      let release = (): void => undefined;
      if (probing) this.probe = new Promise<void>((r) => (release = r));
      const sentAt = this.clock();
      try {
        const result = await call();
        if (sentAt > this.refusedAt) this.strikes = 0;
        return result;
      } catch (e) {
        const r = refusal(e);
        if (!r) throw e;
        last = e;
        // Calls sent before the last refusal were refused by the same limit: one strike for all.
        if (sentAt > this.refusedAt) {
          this.strikes++;
          this.refusedAt = this.clock();
        }
        const waitMs = Math.max(0, r.waitMs ?? this.backoff());
        this.notBefore = Math.max(this.notBefore, this.clock() + waitMs);
        this.opts.onRefused?.({ what, waitMs, named: r.waitMs !== null, strikes: this.strikes });
      } finally {
        if (probing) {
          this.probe = null;
          release();
        }
      }
    }
  }

  private backoff(): number {
    const base = this.opts.backoffMs ?? 60_000;
    return Math.min(this.opts.maxBackoffMs ?? 900_000, base * 2 ** Math.max(0, this.strikes - 1));
  }
}

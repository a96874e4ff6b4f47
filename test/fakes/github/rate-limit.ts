// GitHub's secondary rate limit, as the stand-in enforces it on JIT config generation (the
// bottleneck peers report: ~170 per minute per App). A token bucket: `burst` requests at once,
// refilled at `perMinute`. A refused request is answered as GitHub documents it ("Rate limits
// for the REST API", about secondary rate limits): 403 or 429, a `basic-error` whose message says
// a secondary rate limit was exceeded, and, depending on `hint`, a `retry-after` header (seconds),
// or `x-ratelimit-remaining: 0` with `x-ratelimit-reset` (UTC epoch seconds), or neither (then
// GitHub asks clients to wait at least a minute, exponentially longer on repeated refusals).
import type { RestReply } from './rest.ts';

export interface SecondaryRateLimitOptions {
  /** Requests granted per minute, on average. */
  perMinute: number;
  /** Requests granted back to back before the rate applies (the bucket's size); default 1. */
  burst?: number;
  /** GitHub answers either; default 403. */
  status?: 403 | 429;
  /** What the refusal says about when to retry; default `retry-after`. */
  hint?: 'retry-after' | 'reset' | 'none';
}

export const SECONDARY_RATE_LIMIT_DOCS =
  'https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits';
export const SECONDARY_RATE_LIMIT_MESSAGE =
  'You have exceeded a secondary rate limit. Please wait a few minutes before you try again. ' +
  'If you reach out to GitHub Support for help, please include the request ID.';

export class SecondaryRateLimit {
  /** When each granted request was let through (epoch ms), oldest first. */
  readonly granted: number[] = [];
  /** How many requests were refused. */
  refused = 0;
  private tokens: number;
  private last: number;
  private readonly burst: number;
  private readonly perMs: number;

  constructor(
    readonly opts: SecondaryRateLimitOptions,
    private readonly clock: () => number = Date.now,
  ) {
    if (!(opts.perMinute > 0)) throw new Error('perMinute must be positive');
    this.burst = Math.max(1, opts.burst ?? 1);
    this.perMs = opts.perMinute / 60_000;
    this.tokens = this.burst;
    this.last = clock();
  }

  /** Null when the request may go on (and it is counted), else GitHub's refusal. */
  take(): RestReply | null {
    const now = this.clock();
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.perMs);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      this.granted.push(now);
      return null;
    }
    this.refused++;
    const readyAt = now + (1 - this.tokens) / this.perMs;
    const headers: Record<string, string> = {};
    const hint = this.opts.hint ?? 'retry-after';
    // Whole seconds, rounded up, as GitHub sends them: waiting that long is always enough.
    if (hint === 'retry-after')
      headers['retry-after'] = String(Math.max(1, Math.ceil((readyAt - now) / 1000)));
    if (hint === 'reset') {
      headers['x-ratelimit-remaining'] = '0';
      headers['x-ratelimit-reset'] = String(Math.ceil(readyAt / 1000));
    }
    const status = this.opts.status ?? 403;
    return {
      status,
      headers,
      body: {
        message: SECONDARY_RATE_LIMIT_MESSAGE,
        documentation_url: SECONDARY_RATE_LIMIT_DOCS,
        status: String(status),
      },
    };
  }
}

// One HTTP request to an OpenStack service over `fetch`, with a timeout per attempt and retries
// with jittered exponential backoff on what may pass: 5xx, 429, timeouts, refused or reset
// connections (a restarting nova-api refuses for ~1 s, then holds requests until its workers
// have loaded: first answer after 4–7 s). A request that may have had an effect (a POST that
// reached the service) is retried only when the service cannot have acted on it: the caller
// checks the world before trying again. Errors are OpenStackErrors with the service's message;
// nothing of the request (headers: tokens; body: passwords, secrets, user_data) enters them.
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage, OpenStackError } from './errors.ts';

export interface HttpOptions {
  /** Per attempt (ms): above 10 s, the time a restarted nova-api takes to answer its first request. */
  timeoutMs: number;
  /** How long transient failures are retried in all (ms); 0: one attempt. */
  retryForMs: number;
  /** Backoff: the first wait is up to `baseDelayMs`, doubling to at most `maxDelayMs`. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** For tests: the random source of the jitter. */
  random?: () => number;
}

export interface Request {
  service: string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';
  url: string;
  headers?: Record<string, string>;
  /** JSON-encoded by the caller; never logged. */
  body?: string;
  /**
   * The request has no effect if repeated (GET, DELETE, PUT, a token request). Otherwise only a
   * connection the service refused is retried: a reset or a 5xx may come after it acted.
   */
  idempotent: boolean;
  signal?: AbortSignal;
}

export interface Response {
  status: number;
  headers: Headers;
  text: string;
}

/** Connection errors that mean the request never reached the service. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

export class OpenStackHttp {
  constructor(private readonly opts: HttpOptions) {}

  /** The answer for any status below 500 but 429 (the caller types 4xx); throws for the rest. */
  async send(req: Request): Promise<Response> {
    const deadline = Date.now() + this.opts.retryForMs;
    const what = describe(req);
    for (let attempt = 1; ; attempt++) {
      let failure: OpenStackError;
      let retryAfterMs: number | undefined;
      try {
        const res = await this.once(req, what);
        if (res.status < 500 && res.status !== 429) return res;
        failure = new OpenStackError(req.service, what, 'http', res.status, errorMessage(res.text), true);
        retryAfterMs = retryAfter(res.headers.get('retry-after'));
        // A 5xx answer to a POST may come after the service acted (Nova created the server).
        if (!req.idempotent && res.status !== 429) throw failure;
      } catch (e) {
        if (!(e instanceof OpenStackError)) throw e;
        if (!e.retryable) throw e;
        failure = e;
        if (!req.idempotent && !(e.kind === 'network' && e.notSent)) throw e;
      }
      if (req.signal?.aborted) throw failure;
      const delay = retryAfterMs ?? this.backoff(attempt);
      if (Date.now() + delay > deadline) throw failure;
      await sleep(delay, undefined, req.signal ? { signal: req.signal } : undefined).catch(() => {
        throw failure;
      });
    }
  }

  private backoff(attempt: number): number {
    const base = this.opts.baseDelayMs ?? 250;
    const cap = this.opts.maxDelayMs ?? 4000;
    // "Full jitter": many clients retrying after one outage do not come back in step.
    return Math.round((this.opts.random ?? Math.random)() * Math.min(cap, base * 2 ** (attempt - 1)));
  }

  private async once(req: Request, what: string): Promise<Response> {
    const timeout = AbortSignal.timeout(this.opts.timeoutMs);
    const signal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout;
    try {
      const res = await fetch(req.url, {
        method: req.method,
        headers: {
          Accept: 'application/json',
          ...(req.body !== undefined ? { 'Content-Type': 'application/json' } : {}),
          ...req.headers,
        },
        body: req.body,
        signal,
      });
      const text = await res.text();
      return { status: res.status, headers: res.headers, text };
    } catch (e) {
      if (req.signal?.aborted) throw new OpenStackError(req.service, what, 'aborted', null, 'aborted', false);
      if (timeout.aborted)
        throw new OpenStackError(
          req.service,
          what,
          'timeout',
          null,
          `no answer within ${this.opts.timeoutMs} ms`,
          true,
        );
      const code = causeCode(e);
      const err = new OpenStackError(req.service, what, 'network', null, code ?? (e as Error).message, true);
      err.notSent = code !== undefined && NOT_SENT.has(code);
      throw err;
    }
  }
}

/** `POST /servers` (the path without the query string, which may name things but is long). */
function describe(req: Request): string {
  let path: string;
  try {
    path = new URL(req.url).pathname;
  } catch {
    path = '(invalid URL)';
  }
  return `${req.method} ${path}`;
}

function causeCode(e: unknown): string | undefined {
  // undici: TypeError("fetch failed") with cause { code: 'ECONNREFUSED' } (or an UND_ERR_* error).
  const cause = (e as { cause?: { code?: unknown } }).cause;
  return typeof cause?.code === 'string' ? cause.code : undefined;
}

function retryAfter(value: string | null): number | undefined {
  if (value === null || !/^\d{1,4}$/.test(value.trim())) return undefined;
  return Math.min(Number(value) * 1000, 30_000);
}

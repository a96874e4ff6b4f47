// The `fetch` Octokit is given: node:http(s) with keep-alive, answering what Octokit reads of a
// Response. Node's own fetch (undici) runs the whole WHATWG fetch algorithm and streams for each
// call: measured here at ~1.2 ms of CPU per small request against ~0.3 ms for node:http, and every
// VM costs two GitHub calls (mint its runner, remove it), so this was ~15% of the service's CPU
// per lifecycle (docs/adr/2026-12-02-control-plane-cost.md). Even building a WHATWG Response and
// Headers for the answer (and reading it back through a web stream) was ~7% of a lifecycle's CPU,
// so the answer is a BufferedResponse: the body already read whole, headers in a map. Octokit
// needs only what is here: method, headers, a string body, an abort signal, and the answer's
// status, url, headers (get, iteration) and text or bytes.
import http from 'node:http';
import https from 'node:https';

const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

/** Statuses whose Response may not carry a body (the constructor throws otherwise). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * Follows redirects as fetch does by default (GitHub answers 301 for a renamed repository):
 * 303, and 301/302 after a POST, become a GET without body; credentials are not sent to
 * another origin.
 */
export async function httpFetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
  let url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  let next: RequestInit = init;
  for (let hops = 0; ; hops++) {
    const res = await once(url, next);
    const location = res.headers.get('location');
    // Typed as fetch's answer for Octokit, which reads only what BufferedResponse has.
    if (!REDIRECTS.has(res.status) || !location || init.redirect === 'manual')
      return res as unknown as Response;
    if (init.redirect === 'error' || hops === 20)
      throw new TypeError('fetch failed', { cause: new Error(`redirect to ${location} not followed`) });
    const to = new URL(location, url);
    const method = (next.method ?? 'GET').toUpperCase();
    const asGet = res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST');
    const headers = new Headers(next.headers);
    if (to.origin !== url.origin) headers.delete('authorization');
    if (asGet) headers.delete('content-type');
    next = { ...next, headers, ...(asGet ? { method: 'GET', body: undefined } : {}) };
    url = to;
  }
}

function once(url: URL, init: RequestInit): Promise<BufferedResponse> {
  const { signal } = init;
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return Promise.reject(
      new TypeError(`fetch failed`, { cause: new Error(`unsupported URL ${url.protocol}`) }),
    );
  if (init.body !== undefined && init.body !== null && typeof init.body !== 'string')
    return Promise.reject(new TypeError('httpFetch sends string bodies only'));
  return new Promise<BufferedResponse>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const headers = headerRecord(init.headers);
    const secure = url.protocol === 'https:';
    const req = (secure ? https : http).request(
      url,
      { method: init.method ?? 'GET', headers, agent: secure ? agents.https : agents.http },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('error', (e) =>
          reject(signal?.aborted ? signal.reason : new TypeError('fetch failed', { cause: e })),
        );
        res.on('end', () => {
          signal?.removeEventListener('abort', onAbort);
          const status = res.statusCode ?? 0;
          const out = new Map<string, string>();
          for (const [k, v] of Object.entries(res.headers))
            if (v !== undefined) out.set(k, Array.isArray(v) ? v.join(', ') : v);
          resolve(
            new BufferedResponse(status, res.statusMessage ?? '', url.href, out, Buffer.concat(chunks)),
          );
        });
      },
    );
    // As Node's fetch: a network failure is a TypeError whose cause is the system error.
    req.on('error', (e) => {
      signal?.removeEventListener('abort', onAbort);
      reject(signal?.aborted ? signal.reason : new TypeError('fetch failed', { cause: e }));
    });
    const onAbort = () => req.destroy(signal!.reason as Error);
    signal?.addEventListener('abort', onAbort, { once: true });
    req.end(init.body ?? undefined);
  });
}

/** Request headers as one lower-cased record, from whatever form RequestInit allows. */
function headerRecord(h: HeadersInit | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  if (h instanceof Headers) h.forEach((v, k) => (out[k] = v));
  else for (const [k, v] of Array.isArray(h) ? h : Object.entries(h)) out[k.toLowerCase()] = String(v);
  return out;
}

/** A received answer's headers: names lower-case, repeated ones joined with ", " (as fetch does). */
class BufferedHeaders {
  constructor(private readonly map: Map<string, string>) {}
  get(name: string): string | null {
    return this.map.get(name.toLowerCase()) ?? null;
  }
  has(name: string): boolean {
    return this.map.has(name.toLowerCase());
  }
  forEach(f: (value: string, name: string) => void): void {
    for (const [k, v] of this.entries()) f(v, k);
  }
  /** Sorted by name, as a WHATWG Headers iterates. */
  entries(): IterableIterator<[string, string]> {
    return [...this.map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))[Symbol.iterator]();
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
}

/**
 * What fetch answers, for a body already read whole: the parts of Response that Octokit (and the
 * redirect handling above) use. `body` is a stream only when asked for; null for statuses that
 * carry none.
 */
class BufferedResponse {
  readonly headers: BufferedHeaders;
  readonly ok: boolean;
  readonly redirected = false;
  readonly type = 'basic';
  private used = false;

  constructor(
    readonly status: number,
    readonly statusText: string,
    readonly url: string,
    headers: Map<string, string>,
    private readonly bytes: Buffer,
  ) {
    this.headers = new BufferedHeaders(headers);
    this.ok = status >= 200 && status < 300;
  }

  get body(): ReadableStream<Uint8Array> | null {
    return NULL_BODY.has(this.status) ? null : new Response(new Uint8Array(this.bytes)).body;
  }

  get bodyUsed(): boolean {
    return this.used;
  }

  private take(): Buffer {
    if (this.used) throw new TypeError('Body is unusable: Body has already been read');
    this.used = true;
    return this.bytes;
  }

  async text(): Promise<string> {
    return this.take().toString('utf8');
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text()) as unknown;
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const b = this.take();
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
  }
}

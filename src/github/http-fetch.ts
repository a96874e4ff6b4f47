// The `fetch` Octokit is given: node:http(s) with keep-alive, answering a standard Response.
// Node's own fetch (undici) runs the whole WHATWG fetch algorithm and streams for each call:
// measured here at ~1.2 ms of CPU per small request against ~0.3 ms for node:http, and every
// VM costs two GitHub calls (mint its runner, remove it), so this was ~15% of the service's CPU
// per lifecycle (docs/adr/2026-12-02-control-plane-cost.md). Octokit needs only what is here:
// method, headers, a string body, an abort signal, and the answer's status, headers and text.
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
    if (!REDIRECTS.has(res.status) || !location || init.redirect === 'manual') return res;
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

function once(url: URL, init: RequestInit): Promise<Response> {
  const { signal } = init;
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return Promise.reject(
      new TypeError(`fetch failed`, { cause: new Error(`unsupported URL ${url.protocol}`) }),
    );
  if (init.body !== undefined && init.body !== null && typeof init.body !== 'string')
    return Promise.reject(new TypeError('httpFetch sends string bodies only'));
  return new Promise<Response>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((v, k) => (headers[k] = v));
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
          const out = new Headers();
          for (const [k, v] of Object.entries(res.headers)) {
            if (v === undefined) continue;
            for (const one of Array.isArray(v) ? v : [v]) out.append(k, one);
          }
          const body = NULL_BODY.has(status) ? null : Buffer.concat(chunks);
          const response = new Response(body, { status, statusText: res.statusMessage ?? '', headers: out });
          Object.defineProperty(response, 'url', { value: url.href });
          resolve(response);
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

// The OpenStack client's HTTP layer against loopback servers that misbehave as services do:
// 5xx then success, 429 with Retry-After, a POST answered 500 (not repeated: it may have acted),
// a refused connection (repeated, also for a POST: nothing was sent), no answer (timeout), and
// the error bodies of Nova, Keystone, Neutron and Glance reduced to their message.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, describe, it } from 'node:test';
import { errorMessage, OpenStackError } from '../../src/providers/openstack/errors.ts';
import { OpenStackHttp } from '../../src/providers/openstack/http.ts';

interface Seen {
  method: string;
  body: string;
}

const servers: http.Server[] = [];
after(async () => {
  for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
});

/** A server answering the n-th request (from 0) with answers[n] (the last one repeats). */
async function serve(
  answers: { status: number; body?: string; headers?: Record<string, string> }[] | null,
  port = 0,
): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', body });
      if (!answers) return; // never answers
      const a = answers[Math.min(seen.length - 1, answers.length - 1)]!;
      res.writeHead(a.status, { 'Content-Type': 'application/json', ...a.headers });
      res.end(a.body ?? '');
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v2.1/servers`, seen };
}

const client = (more: Partial<ConstructorParameters<typeof OpenStackHttp>[0]> = {}) =>
  new OpenStackHttp({ timeoutMs: 2000, retryForMs: 5000, baseDelayMs: 10, maxDelayMs: 50, ...more });

const nova500 = JSON.stringify({ computeFault: { code: 500, message: 'Unexpected API Error.' } });

describe('OpenStack HTTP', () => {
  it('retries a GET through 5xx answers until it succeeds', async () => {
    const s = await serve([
      { status: 503 },
      { status: 500, body: nova500 },
      { status: 200, body: '{"servers": []}' },
    ]);
    const res = await client().send({ service: 'compute', method: 'GET', url: s.url, idempotent: true });
    assert.equal(res.status, 200);
    assert.equal(s.seen.length, 3);
  });

  it('retries a 429 after its Retry-After, also for a POST (a 429 means not done)', async () => {
    const s = await serve([
      { status: 429, headers: { 'Retry-After': '0' } },
      { status: 202, body: '{}' },
    ]);
    const res = await client().send({
      service: 'compute',
      method: 'POST',
      url: s.url,
      body: '{}',
      idempotent: false,
    });
    assert.equal(res.status, 202);
    assert.equal(s.seen.length, 2);
  });

  it('gives up with the service’s message once the retry time is spent', async () => {
    const s = await serve([{ status: 500, body: nova500 }]);
    const failed = await client({ retryForMs: 200 })
      .send({ service: 'compute', method: 'GET', url: s.url, idempotent: true })
      .catch((e: unknown) => e);
    assert.ok(failed instanceof OpenStackError);
    assert.equal(failed.message, 'compute GET /v2.1/servers: 500 Unexpected API Error.');
    assert.equal(failed.retryable, true);
    assert.ok(s.seen.length > 1, `retried (${s.seen.length} attempts)`);
  });

  it('does not repeat a POST answered 500 (Nova may have created the server); the body is in no error', async () => {
    const s = await serve([{ status: 500, body: nova500 }]);
    const secret = 'user-data-with-a-secret-9c1f';
    const failed = await client()
      .send({
        service: 'compute',
        method: 'POST',
        url: s.url,
        body: JSON.stringify({ secret }),
        idempotent: false,
      })
      .catch((e: unknown) => e);
    assert.ok(failed instanceof OpenStackError);
    assert.equal(s.seen.length, 1);
    assert.equal(failed.retryable, true, 'the caller may look and try again');
    assert.doesNotMatch(`${failed.message}${failed.stack}`, new RegExp(secret));
  });

  it('repeats a POST whose connection was refused (nothing was sent) until the service is up', async () => {
    // A port that was free a moment ago; the service comes up on it 300 ms later.
    const probe = await serve([{ status: 200 }]);
    const port = Number(new URL(probe.url).port);
    await new Promise<void>((r) => servers.pop()!.close(() => r()));
    let late: { url: string; seen: Seen[] } | undefined;
    setTimeout(() => void serve([{ status: 202, body: '{}' }], port).then((s) => (late = s)), 300);
    const res = await client().send({
      service: 'compute',
      method: 'POST',
      url: probe.url,
      body: '{}',
      idempotent: false,
    });
    assert.equal(res.status, 202);
    assert.equal(late?.seen.length, 1, 'the POST reached the service once');
  });

  it('times out a request without an answer (retryable), and stops at once when aborted', async () => {
    const s = await serve(null);
    const failed = await client({ timeoutMs: 200, retryForMs: 0 })
      .send({ service: 'image', method: 'GET', url: s.url, idempotent: true })
      .catch((e: unknown) => e);
    assert.ok(failed instanceof OpenStackError);
    assert.equal(failed.kind, 'timeout');
    assert.equal(failed.retryable, true);
    assert.match(failed.message, /^image GET \/v2.1\/servers: no answer within 200 ms$/);

    const aborted = await client({ timeoutMs: 60_000 })
      .send({
        service: 'image',
        method: 'GET',
        url: s.url,
        idempotent: true,
        signal: AbortSignal.timeout(100),
      })
      .catch((e: unknown) => e);
    assert.ok(aborted instanceof OpenStackError);
    assert.equal(aborted.kind, 'aborted');
    assert.equal(aborted.retryable, false);
  });

  it('takes the message out of each service’s error body', () => {
    assert.equal(
      errorMessage(
        JSON.stringify({
          forbidden: {
            code: 403,
            message: 'Quota exceeded for instances: Requested 1, but already used 2 of 2 instances',
          },
        }),
      ),
      'Quota exceeded for instances: Requested 1, but already used 2 of 2 instances',
    );
    assert.equal(
      errorMessage(
        JSON.stringify({
          error: {
            code: 401,
            title: 'Unauthorized',
            message: 'The request you have made requires authentication.',
          },
        }),
      ),
      'The request you have made requires authentication.',
    );
    assert.equal(
      errorMessage(
        JSON.stringify({
          NeutronError: { type: 'NetworkNotFound', message: 'Network x could not be found.', detail: '' },
        }),
      ),
      'Network x could not be found.',
    );
    assert.equal(
      errorMessage(
        JSON.stringify({ message: 'No image found with ID x', code: '404 Not Found', title: 'Not Found' }),
      ),
      'No image found with ID x',
    );
    assert.equal(errorMessage('<html><body><h1>502 Bad Gateway</h1>\n</body></html>'), '502 Bad Gateway');
    assert.equal(errorMessage('', 'Service Unavailable'), 'Service Unavailable');
    assert.equal(errorMessage('x'.repeat(1000)).length, 401);
  });
});

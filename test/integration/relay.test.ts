// `hatchery relay` (src/relay/) against a local smee-style channel (Server-Sent Events, each
// event a JSON object of headers and body) and a real service: a signed webhook whose body is
// not compact JSON arrives byte for byte and is accepted, a tampered one is refused (401), and
// the relay reconnects when the channel drops it, asking for what came after the last event.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { sign } from '../../src/crypto/hmac.ts';
import { silentLogger } from '../../src/log.ts';
import { Relay } from '../../src/relay/relay.ts';
import { AppService } from '../helpers/app-service.ts';

describe('relay from an SSE channel', () => {
  let app: AppService;
  let channel: http.Server;
  const seen: (string | undefined)[] = [];
  let second: http.ServerResponse | undefined;

  before(async () => {
    app = await AppService.start({
      pools: [{ name: 'linux', labels: ['linux'] }],
      installations: [{ id: 77, account: 'octo-org' }],
    });
  });
  after(async () => {
    second?.end();
    channel?.closeAllConnections();
    await new Promise((r) => channel?.close(r));
    await app?.stop();
  });

  const event = (id: number, headers: Record<string, string>, body: Record<string, string>) =>
    `id: ${id}\ndata: ${JSON.stringify({ ...headers, ...body, query: {}, timestamp: Date.now() })}\n\n`;

  it('forwards the exact bytes: signed → accepted, tampered → 401; reconnects with Last-Event-ID', async () => {
    // Indented JSON with a non-ASCII character: re-serializing it would change the bytes.
    const ping = JSON.stringify({ zen: 'Keep it logically awesome — é', hook_id: 7 }, null, 2);
    const job = JSON.stringify(
      {
        action: 'queued',
        workflow_job: { id: 6001, run_id: 1, run_attempt: 1, labels: ['linux'], runner_name: null },
        repository: { full_name: 'octo-org/app' },
        installation: { id: 77 },
      },
      null,
      4,
    );
    const headers = (eventName: string, body: string) => ({
      'content-type': 'application/json',
      'x-github-event': eventName,
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': sign('sha256', app.secret, body),
      host: 'smee.example', // not forwarded
    });
    const tampered = job.replace('"linux"', '"linuy"');
    channel = http.createServer((req, res) => {
      seen.push(req.headers['last-event-id'] as string | undefined);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('event: ready\ndata: {}\n\n: keep-alive\n\n');
      if (seen.length === 1) {
        // gosmee-style: the raw bytes in base64. Then the channel drops the connection.
        res.end(event(1, headers('ping', ping), { bodyB: Buffer.from(ping).toString('base64') }));
      } else {
        second = res;
        // CRLF line ends, as some servers send them; then a tampered body, then a good one.
        res.write(
          event(2, headers('workflow_job', job), { rawBody: tampered }).replace(/\n/g, '\r\n') +
            event(3, headers('workflow_job', job), { rawBody: job }),
        );
      }
    });
    await new Promise<void>((r) => channel.listen(0, '127.0.0.1', r));
    const relay = new Relay({
      source: `http://127.0.0.1:${(channel.address() as AddressInfo).port}/channel`,
      target: `${app.service.url}/hooks/github`,
      log: silentLogger(),
      minBackoffMs: 20,
      maxBackoffMs: 100,
    });
    relay.start();
    for (let i = 0; relay.forwarded.length < 3; i++) {
      assert.ok(i < 1000, `forwarded: ${JSON.stringify(relay.forwarded)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    await relay.stop();
    assert.deepEqual(
      relay.forwarded.map((f) => [f.event, f.status, f.body]),
      [
        ['ping', 200, 'bodyB'],
        ['workflow_job', 401, 'rawBody'],
        ['workflow_job', 200, 'rawBody'],
      ],
    );
    assert.equal(relay.connections, 2);
    assert.deepEqual(seen, [undefined, '1'], 'the reconnection names the last event it got');
    const stats = await app.api<{ bad_signature: number; events: Record<string, { handled: number }> }>(
      '/api/v1/webhooks',
    );
    assert.equal(stats.bad_signature, 1);
    assert.equal(stats.events.ping?.handled, 1);
    assert.equal(stats.events.workflow_job?.handled, 1);
    const jobRow = await app.service.store.getJob(6001);
    assert.deepEqual(jobRow?.labels, ['linux'], 'the accepted body, not the tampered one');
  });
});

// What an unauthenticated client can make the service spend (docs/adr/2026-12-02-request-limits.md):
// bodies over the limit are refused unread and their connections closed, requests must arrive
// within server.request_timeout / headers_timeout, long answers are not cut, and clients that
// give up mid-body cost one info line. Real sockets against the whole service; the worker is
// stopped, so no VM ever starts and every wait below ends on its own timeout.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { sign } from '../../src/crypto/hmac.ts';
import { RawConnection, requestHead } from '../helpers/raw-http.ts';
import { eventually, Stack } from '../helpers/stack.ts';

const MB = 1024 * 1024;
const LEGACY_SECRET = 'legacy-secret-for-limits';
// Generous per-test timeouts: on the old code these requests hang (it drains bodies, and its
// deadlines are Node's defaults of 300 s), so a test fails instead of blocking the suite.
const T = { timeout: 60_000 };

interface LogLine {
  level: number;
  msg: string;
  delivery?: string;
  expected?: number | null;
  read?: number;
  received?: number;
}

describe('request limits (real sockets, whole service)', () => {
  let stack: Stack;
  const logLines = (from = 0): LogLine[] =>
    readFileSync(stack.files.logFile, 'utf8')
      .slice(from)
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as LogLine);
  const logSize = (): number => readFileSync(stack.files.logFile, 'utf8').length;
  const open = (): Promise<RawConnection> => RawConnection.open(stack.service.url);

  before(async () => {
    stack = await Stack.start({
      legacy: {
        secret: LEGACY_SECRET,
        openssl_password: 'unused-here',
        wait_for_ready: true,
        wait_timeout: 2,
      },
      extra: {
        server: { host: '127.0.0.1', port: 0, body_limit: '64kb', request_timeout: 1, headers_timeout: 0.5 },
      },
    });
    // No VM may start: creates stay pending, so waits end on their timeouts, not on a boot.
    await stack.service.worker.stop();
  });
  after(async () => {
    await stack?.stop();
  });

  describe('body size', () => {
    it(
      'refuses a Content-Length over the limit with 413 before any body is sent, and closes',
      T,
      async () => {
        const c = await open();
        await c.write(
          requestHead('POST', '/hooks/control', {
            'content-type': 'application/json',
            'content-length': 100 * MB,
          }),
        );
        const closed = await c.closed; // nothing more is sent: only the server can end this
        assert.equal(closed.byServer, true);
        assert.deepEqual(c.statuses, [413], c.received);
        assert.equal(c.json?.error, 'too_large');
        assert.match(String(c.json?.message), /64kb \(server\.body_limit\)/);
        assert.deepEqual(await stack.service.store.listVms(), []);
      },
    );

    it(
      'reads a fraction of a 100 MB body sent at full speed: 413, then the connection is closed',
      T,
      async () => {
        const from = logSize();
        const total = 100 * MB + 1; // a size no other test uses, to find its log line
        const c = await open();
        await c.write(
          requestHead('POST', '/', { 'content-type': 'application/json', 'content-length': total }),
        );
        await c.blast(total);
        const closed = await c.closed;
        assert.equal(closed.byServer, true);
        assert.deepEqual(c.statuses, [413], c.received);
        assert.ok(c.written < total, `the client sent all ${c.written} bytes: the server read them`);
        // What the server itself read on that connection, headers included.
        const refused = await eventually(
          () => logLines(from).find((l) => l.msg.startsWith('request body refused') && l.expected === total),
          'the refusal log line',
        );
        assert.ok(refused.read! < MB, `the server read ${refused.read} bytes of a refused body`);
      },
    );

    it(
      'answers curl\'s "Expect: 100-continue" with 413 instead of 100 Continue: no body is uploaded',
      T,
      async () => {
        const file = path.join(stack.files.dir, 'big.json');
        writeFileSync(file, '');
        truncateSync(file, 100 * MB);
        // Asynchronously: the service answering curl runs in this process.
        const { stdout: out } = await promisify(execFile)('curl', [
          '-sS',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code} %{size_upload}',
          '-H',
          'content-type: application/json',
          '--data-binary',
          `@${file}`,
          `${stack.service.url}/hooks/control`,
        ]);
        const [code, uploaded] = out.split(' ').map(Number);
        assert.equal(code, 413, out);
        assert.equal(uploaded, 0, `curl uploaded ${uploaded} bytes`);
      },
    );

    it(
      'cuts a chunked body off once it exceeds the limit; a chunked body within it is served',
      T,
      async () => {
        const chunk = (s: string) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;
        const c = await open();
        await c.write(
          requestHead('POST', '/hooks/control', {
            'content-type': 'application/json',
            'transfer-encoding': 'chunked',
          }),
        );
        const piece = chunk('a'.repeat(16 * 1024));
        while (c.written < 100 * MB && (await c.write(piece)));
        assert.equal((await c.closed).byServer, true);
        assert.deepEqual(c.statuses, [413], c.received);
        assert.ok(c.written < 100 * MB, 'the whole chunked body was read');

        const body = JSON.stringify({
          action: 'create',
          repository: 'octo-org/limits',
          run_id: 1,
          run_attempt: 1,
          labels: ['linux'],
        });
        const ok = await open();
        await ok.write(
          requestHead('POST', '/hooks/control', {
            'content-type': 'application/json',
            'transfer-encoding': 'chunked',
            'x-hatchery-signature-256': stack.files.signControl(body),
            connection: 'close',
          }),
        );
        await ok.write(chunk(body.slice(0, 40)) + chunk(body.slice(40)) + '0\r\n\r\n');
        await ok.closed;
        assert.deepEqual(ok.statuses, [202], ok.received);
        await stack.client.control({ ...JSON.parse(body), action: 'destroy' });
      },
    );

    it(
      'refuses a compressed body (415) rather than inflate it: signatures cover the bytes sent',
      T,
      async () => {
        const c = await open();
        await c.write(
          requestHead('POST', '/hooks/control', { 'content-encoding': 'gzip', 'content-length': 20 }),
        );
        await c.closed;
        assert.deepEqual(c.statuses, [415], c.received);
        assert.equal(c.json?.error, 'unsupported_encoding');
      },
    );
  });

  describe('time to receive a request', () => {
    it('answers 408 and closes when a body trickles in slower than server.request_timeout', T, async () => {
      const from = logSize();
      const c = await open();
      await c.write(
        requestHead('POST', '/hooks/control', {
          'content-type': 'application/json',
          'content-length': 1000,
          'x-hatchery-delivery': 'slow-body',
        }),
      );
      await c.trickle(
        Array.from({ length: 1000 }, () => 'a'),
        100,
      ); // 100 s at this pace
      assert.equal((await c.closed).byServer, true);
      assert.deepEqual(c.statuses, [408], c.received);
      const lines = await eventually(() => {
        const l = logLines(from).filter((x) => x.delivery === 'slow-body');
        return l.length > 0 ? l : undefined;
      }, 'the cut-off log line');
      assert.equal(lines.length, 1, JSON.stringify(lines));
      assert.equal(lines[0]!.level, 30);
      assert.match(lines[0]!.msg, /request cut off: body not received within server\.request_timeout/);
    });

    it('cuts off a slowloris (headers trickling in) and a connection that sends nothing', T, async () => {
      const slowloris = await open();
      await slowloris.write('POST /hooks/control HTTP/1.1\r\nHost: localhost\r\n');
      await slowloris.trickle(
        (function* () {
          for (let i = 0; ; i++) yield `X-Padding-${i}: a\r\n`; // never ends: only the server can
        })(),
        100,
      );
      assert.equal((await slowloris.closed).byServer, true);
      assert.deepEqual(slowloris.statuses, [408], slowloris.received);

      const silent = await open();
      assert.equal((await silent.closed).byServer, true);
    });

    it('answers a long-poll after longer than server.request_timeout', T, async () => {
      const created = await stack.client.control({
        action: 'create',
        repository: 'octo-org/limits',
        run_id: 2,
        run_attempt: 1,
        labels: ['linux'],
      });
      assert.equal(created.status, 202);
      const name = created.json.vms[0]!.name;
      // 3 s of waiting, three times the server's request timeout: the API's own answer.
      const r = await stack.client.api<{ name: string; wait: string }>(
        'GET',
        `/api/v1/vms/${name}?wait=ready&timeout=3`,
      );
      assert.equal(r.status, 408);
      assert.equal(r.json.name, name);
      assert.equal(r.json.wait, 'timeout');
    });

    it("answers the legacy route's blocking create after longer than server.request_timeout", T, async () => {
      const body = JSON.stringify({
        repository: 'octo-org/limits',
        data: { ghcontrol: 'create', servers: 'linux', ID: '77_1' },
      });
      const r = await stack.client.request<{ success: string; info: string }>('POST', '/', body, {
        'content-type': 'application/json',
        'x-hub-signature-256': sign('sha256', LEGACY_SECRET, body),
      });
      // Its wait (legacy.wait_timeout = 2 s) ran out: the route's answer, not the server's 408.
      assert.notEqual(r.status, 408);
      assert.equal(r.json.success, 'false');
      assert.match(r.json.info, /not ready within 2 s/);
    });
  });

  it('logs 200 aborted uploads at info, one line each, and no error', T, async () => {
    const from = logSize();
    const n = 200;
    for (let batch = 0; batch < n; batch += 20) {
      await Promise.all(
        Array.from({ length: 20 }, async (_, k) => {
          const i = batch + k;
          const c = await open();
          await c.write(
            requestHead('POST', '/hooks/control', {
              'content-type': 'application/json',
              'content-length': 10_000,
              'x-hatchery-delivery': `abort-${i}`,
            }),
          );
          await c.write('a'.repeat(500));
          // Half stop sending (FIN, e.g. a client's timeout), half are killed (RST).
          if (i % 2) c.reset();
          else c.end();
          await c.closed;
        }),
      );
    }
    const lines = await eventually(() => {
      const l = logLines(from).filter((x) => x.delivery?.startsWith('abort-'));
      return l.length >= n ? l : undefined;
    }, `${n} abort lines`);
    assert.equal(lines.length, n);
    assert.equal(new Set(lines.map((l) => l.delivery)).size, n, 'one line per aborted request');
    for (const l of lines) {
      assert.equal(l.level, 30, JSON.stringify(l));
      assert.match(l.msg, /^request aborted: /);
      assert.equal(l.received, 500);
    }
    const loud = logLines(from).filter((l) => l.level >= 40);
    assert.deepEqual(loud, [], 'warnings or errors logged');
  });
});

// Ack latency: bursts of signed create webhooks fired at once at `hatchery serve` (its own
// process, as deployed, logging at info). Two views of each request:
//  - server-side: arrival → response finished, from the service's own `http` log lines (what a
//    sender such as GitHub, with its 10 s limit, waits for once its request is in);
//  - client-side: what a caller in this process observes, queueing in the burst included.
// The baseline is the same burst of GET /healthz against the same process, measured in the same
// rounds: the floor that HTTP, Express, logging and the client cost on this machine.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTerminal, STATES } from '../src/core/lifecycle.ts';
import { createRunnersApi } from '../src/github/runners.ts';
import { ServiceProcess, StackFiles } from '../test/helpers/stack.ts';
import { fmtMs, fmtRatio, percentile, progress } from './stats.ts';

export interface AckResult {
  concurrency: number;
  rounds: number;
  client: { create: number[]; health: number[] };
  server: { create: number[]; health: number[] };
  statuses: Record<string, number>;
}

function client(url: string, concurrency: number) {
  const u = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const request = (method: string, path: string, body?: string, headers: Record<string, string> = {}) =>
    new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          host: u.hostname,
          port: u.port,
          method,
          path,
          agent,
          headers:
            body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  return { request, close: () => agent.destroy() };
}

async function burst(
  n: number,
  one: (i: number) => Promise<number>,
): Promise<{ ms: number[]; statuses: number[] }> {
  const ms: number[] = [];
  const statuses: number[] = [];
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const started = performance.now();
      statuses.push(await one(i));
      ms.push(performance.now() - started);
    }),
  );
  return { ms, statuses };
}

interface HttpLine {
  method: string;
  path: string;
  ms: number;
  delivery?: string;
}

/** The service's `http` log lines, in log order. */
function httpLines(logFile: string): HttpLine[] {
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((line) => line.includes('"msg":"http"'))
    .map((line) => JSON.parse(line) as HttpLine);
}

/**
 * The handler times the service logged for the measured requests: the creates (by their
 * `bench-` delivery ids) and the /healthz bursts after the warm-up. The log reaches its file
 * through a pipe, so wait until every line is there rather than read a partial file.
 */
async function serverTimes(
  logFile: string,
  concurrency: number,
  rounds: number,
): Promise<AckResult['server']> {
  const until = Date.now() + 10_000;
  for (;;) {
    const lines = httpLines(logFile);
    const create = lines.filter((l) => l.delivery?.startsWith('bench-')).map((l) => l.ms);
    const health = lines.filter((l) => l.method === 'GET' && l.path === '/healthz').map((l) => l.ms);
    const want = rounds * concurrency;
    if (create.length === want && health.length === want + concurrency) {
      return { create, health: health.slice(concurrency) }; // the first burst was the warm-up
    }
    if (Date.now() > until) {
      throw new Error(
        `service log holds ${create.length}/${want} creates, ${health.length}/${want + concurrency} healthz lines`,
      );
    }
    await sleep(100);
  }
}

export async function benchAck(concurrency: number, rounds: number): Promise<AckResult> {
  // One VM at a time: the burst queues, as it would on a busy installation.
  const files = await StackFiles.create({
    pools: [{ name: 'linux', labels: ['linux'], max_vms: 1 }],
    maxVms: 1,
    logLevel: 'info', // as deployed: one line per request and per transition
  });
  const svc = new ServiceProcess(files);
  const res: AckResult = {
    concurrency,
    rounds,
    client: { create: [], health: [] },
    server: { create: [], health: [] },
    statuses: {},
  };
  try {
    await svc.start();
    const c = client(svc.url, concurrency);
    // Warm-up: the client's sockets, the handlers, and the stand-in GitHub's OpenAPI validators
    // (they live in this process: their first compile would stall the client, not the service).
    await burst(concurrency, () => c.request('GET', '/healthz'));
    const gh = createRunnersApi({ apiUrl: files.fake.url, token: files.opts.tokens![0]! });
    const warm = await gh.generateJitConfig('bench/ack', {
      name: 'warm-up',
      labels: ['warm-up'],
      runnerGroupId: 1,
    });
    await gh.listRunners('bench/ack');
    await gh.deleteRunner('bench/ack', warm.runnerId);

    const control = (action: string, runId: number, delivery?: string) => {
      const body = JSON.stringify({
        action,
        repository: 'bench/ack',
        run_id: runId,
        run_attempt: 1,
        labels: ['linux'],
      });
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'x-hatchery-signature-256': files.signControl(body),
      };
      if (delivery) headers['x-hatchery-delivery'] = delivery;
      return c.request('POST', '/hooks/control', body, headers);
    };
    for (let r = 0; r < rounds; r++) {
      const h = await burst(concurrency, () => c.request('GET', '/healthz'));
      const k = await burst(concurrency, (i) => control('create', r * 10_000 + i + 1, `bench-${r}-${i}`));
      res.client.health.push(...h.ms);
      res.client.create.push(...k.ms);
      for (const s of k.statuses) res.statuses[s] = (res.statuses[s] ?? 0) + 1;
      progress(
        `ack: round ${r + 1}/${rounds}: client-side creates p50 ${fmtMs(percentile(k.ms, 50))} p99 ${fmtMs(percentile(k.ms, 99))}, healthz p99 ${fmtMs(percentile(h.ms, 99))}`,
      );
      // Destroy everything before the next round (destroys are not measured).
      for (let i = 0; i < concurrency; i++) await control('destroy', r * 10_000 + i + 1);
      for (;;) {
        const live = await svc.read((s) =>
          s.listVms({
            states: STATES.filter((st) => !isTerminal(st)),
          }),
        );
        if (live.length === 0 && files.leftovers().qemu.length === 0) break;
        await sleep(200);
      }
    }
    res.server = await serverTimes(files.logFile, concurrency, rounds);
    c.close();
    return res;
  } finally {
    await svc.stop().catch(() => svc.kill9());
    await files.cleanup();
  }
}

export function reportAck(r: AckResult): string {
  const row = (label: string, v: number[]) =>
    `  ${label.padEnd(26)} p50 ${fmtMs(percentile(v, 50)).padStart(9)}   p99 ${fmtMs(percentile(v, 99)).padStart(9)}   max ${fmtMs(percentile(v, 100)).padStart(9)}`;
  const ratio = (a: number[], b: number[]) =>
    `p50 ${fmtRatio(percentile(a, 50) / percentile(b, 50))}, p99 ${fmtRatio(percentile(a, 99) / percentile(b, 99))}`;
  return [
    `ack latency: bursts of ${r.concurrency} concurrent signed creates × ${r.rounds} rounds against hatchery serve`,
    row('server-side creates', r.server.create) + '   (goal p99 ≤ 20 ms)',
    row('server-side GET /healthz', r.server.health) + '   (baseline)',
    `  ratio server-side          ${ratio(r.server.create, r.server.health)}`,
    row('client-side creates', r.client.create),
    row('client-side GET /healthz', r.client.health) + '   (baseline)',
    `  ratio client-side          ${ratio(r.client.create, r.client.health)}`,
    `  statuses                   ${Object.entries(r.statuses)
      .map(([s, n]) => `${s} × ${n}`)
      .join(', ')}`,
  ].join('\n');
}

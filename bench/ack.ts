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

export function client(url: string, concurrency: number) {
  const u = new URL(url);
  // Idle sockets are dropped after 4 s, before the server's keepAliveTimeout (5 s) closes them:
  // otherwise a burst may reuse a socket the server is closing at that moment (ECONNRESET), which
  // a loaded machine makes likely, since a burst can then last seconds.
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency, timeout: 4000 });
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
  // The agent stays usable after destroy(): later requests open new connections.
  return { request, close: () => agent.destroy() };
}

export async function burst(
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

export interface HttpLine {
  method: string;
  path: string;
  ms: number;
  delivery?: string;
}

/** The service's `http` log lines, in log order. */
export function httpLines(logFile: string): HttpLine[] {
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((line) => line.includes('"msg":"http"'))
    .map((line) => JSON.parse(line) as HttpLine);
}

/**
 * The handler times the service logged for the `want` requests `select` picks (creates by their
 * delivery ids, /healthz by path). The log reaches its file through a pipe, so wait until every
 * line is there rather than read a partial file.
 */
export async function serverTimes(
  logFile: string,
  select: (l: HttpLine) => boolean,
  want: number,
): Promise<number[]> {
  const until = Date.now() + 10_000;
  for (;;) {
    const ms = httpLines(logFile)
      .filter(select)
      .map((l) => l.ms);
    if (ms.length === want) return ms;
    if (Date.now() > until)
      throw new Error(`service log holds ${ms.length}/${want} of the requests measured`);
    await sleep(100);
  }
}

export const isHealthz = (l: HttpLine): boolean => l.method === 'GET' && l.path === '/healthz';

/** `hatchery serve` with one VM at a time (bursts queue, as on a busy installation), warmed up. */
export interface AckTarget {
  files: StackFiles;
  svc: ServiceProcess;
  /** A burst of `concurrency` GET /healthz. */
  healthz(): Promise<{ ms: number[]; statuses: number[] }>;
  /** A burst of `concurrency` signed creates, run ids from `runBase` + 1, delivery ids `<tag>-<i>`. */
  creates(tag: string, runBase: number): Promise<{ ms: number[]; statuses: number[] }>;
  /** Closes the client's kept-alive connections: the next burst connects anew. */
  dropConnections(): void;
  /** Destroys that burst's VMs (not measured) and waits until nothing is live or left. */
  destroyAll(runBase: number): Promise<void>;
  close(): Promise<void>;
}

export async function startAckTarget(concurrency: number): Promise<AckTarget> {
  const files = await StackFiles.create({
    pools: [{ name: 'linux', labels: ['linux'], max_vms: 1 }],
    maxVms: 1,
    logLevel: 'info', // as deployed: one line per request and per transition
  });
  const svc = new ServiceProcess(files);
  let c: ReturnType<typeof client> | null = null;
  const close = async () => {
    c?.close();
    await svc.stop().catch(() => svc.kill9());
    await files.cleanup();
  };
  try {
    await svc.start();
    c = client(svc.url, concurrency);
    const http = c;
    // Warm-up: the client's sockets, the handlers, and the stand-in GitHub's OpenAPI validators
    // (they live in this process: their first compile would stall the client, not the service).
    await burst(concurrency, () => http.request('GET', '/healthz'));
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
      return http.request('POST', '/hooks/control', body, headers);
    };
    return {
      files,
      svc,
      healthz: () => burst(concurrency, () => http.request('GET', '/healthz')),
      dropConnections: () => http.close(),
      creates: (tag, runBase) => burst(concurrency, (i) => control('create', runBase + i + 1, `${tag}-${i}`)),
      destroyAll: async (runBase) => {
        for (let i = 0; i < concurrency; i++) await control('destroy', runBase + i + 1);
        for (;;) {
          const live = await svc.read((s) => s.listVms({ states: STATES.filter((st) => !isTerminal(st)) }));
          if (live.length === 0 && files.leftovers().qemu.length === 0) return;
          await sleep(200);
        }
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

export async function benchAck(concurrency: number, rounds: number): Promise<AckResult> {
  const t = await startAckTarget(concurrency);
  const res: AckResult = {
    concurrency,
    rounds,
    client: { create: [], health: [] },
    server: { create: [], health: [] },
    statuses: {},
  };
  try {
    for (let r = 0; r < rounds; r++) {
      const h = await t.healthz();
      const k = await t.creates(`bench-${r}`, r * 10_000);
      res.client.health.push(...h.ms);
      res.client.create.push(...k.ms);
      for (const s of k.statuses) res.statuses[s] = (res.statuses[s] ?? 0) + 1;
      progress(
        `ack: round ${r + 1}/${rounds}: client-side creates p50 ${fmtMs(percentile(k.ms, 50))} p99 ${fmtMs(percentile(k.ms, 99))}, healthz p99 ${fmtMs(percentile(h.ms, 99))}`,
      );
      await t.destroyAll(r * 10_000);
    }
    const logFile = t.files.logFile;
    res.server.create = await serverTimes(
      logFile,
      (l) => l.delivery?.startsWith('bench-') ?? false,
      rounds * concurrency,
    );
    // The first burst of /healthz was the warm-up.
    res.server.health = (await serverTimes(logFile, isHealthz, (rounds + 1) * concurrency)).slice(
      concurrency,
    );
    return res;
  } finally {
    await t.close();
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

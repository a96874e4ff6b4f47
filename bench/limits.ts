// Request limits under load (docs/adr/2026-12-02-request-limits.md), against `hatchery serve`
// with its default limits (body_limit 256kb, request_timeout 30 s, headers_timeout 10 s):
//  - slow connections: bursts of signed creates with 3,000 slow connections held open (another
//    process, bench/slow-crowd.ts), against the same bursts without them, rounds interleaved;
//  - a 100 MB body sent at full speed: time to its 413 against a small request's 401 on the same
//    kind of connection, and how much of the body the server read (its own log says).
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { RawConnection, requestHead } from '../test/helpers/raw-http.ts';
import { ServiceProcess, StackFiles } from '../test/helpers/stack.ts';
import { serverTimes, startAckTarget } from './ack.ts';
import { fmtMs, fmtRatio, median, percentile, progress } from './stats.ts';

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
const CROWD = fileURLToPath(new URL('./slow-crowd.ts', import.meta.url));
const ROOT = path.dirname(path.dirname(CROWD));

/**
 * The crowd's and the service's sockets need file descriptors: raises this process's soft
 * limit (children inherit it) up to the hard limit when needed; says what it did.
 */
export function ensureFileLimit(needed: number): string {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'))!;
  const [soft, hard] = line
    .split(/\s{2,}/)
    .slice(1, 3)
    .map((v) => (v === 'unlimited' ? Infinity : Number(v))) as [number, number];
  if (soft >= needed) return `open files limit ${soft} (${needed} needed)`;
  if (hard < needed) {
    throw new Error(
      `needs ${needed} open files, the hard limit is ${hard}: raise it (e.g. prlimit --nofile=${needed} npm run bench)`,
    );
  }
  execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${needed}:${hard}`]);
  return `open files limit raised from ${soft} to ${needed} (prlimit; the service and the crowd inherit it)`;
}

/** CPU time (user + system, ms) `pid` used per second of wall time while `during` ran. */
async function cpuPerSecond(pid: number, during: () => Promise<unknown>): Promise<number> {
  const cpu = () => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  };
  const [c0, t0] = [cpu(), performance.now()];
  await during();
  return ((cpu() - c0) * 1000) / (performance.now() - t0);
}

interface CrowdStats {
  open: number;
  opened: number;
  cutOff: number;
}

/** bench/slow-crowd.ts as a child process; resolves once all `count` connections are open. */
async function startCrowd(url: string, count: number, everyMs: number, rampMs: number) {
  const args = [CROWD, url, String(count), String(everyMs), String(rampMs)];
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let latest: CrowdStats = { open: 0, opened: 0, cutOff: 0 };
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    latest = JSON.parse(line) as CrowdStats;
    waiters.splice(0).forEach((w) => w());
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const next = () =>
    Promise.race([
      new Promise<void>((r) => waiters.push(r)),
      exited.then(() => {
        throw new Error('the slow crowd exited');
      }),
    ]);
  while (latest.open < count) await next();
  return {
    get stats(): CrowdStats {
      return latest;
    },
    /** The next report (they come every second). */
    next,
    async stop(): Promise<void> {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export interface SlowResult {
  slow: number;
  concurrency: number;
  rounds: number;
  fileLimit: string;
  quiet: { server: number[]; client: number[] };
  crowded: { server: number[]; client: number[] };
  /** Crowd connections open at the start and end of each crowded burst. */
  open: number[];
  /** Crowd connections the server cut off (and the crowd reopened) during the crowded bursts. */
  cutOffDuringBursts: number;
  /** The service's CPU time per second between bursts (ms/s), without and with the crowd. */
  idleCpu: { quiet: number[]; crowded: number[] };
  statuses: Record<string, number>;
}

/** The headers timeout of the service under test (the default): the crowd's ramp. */
const HEADERS_TIMEOUT_MS = 10_000;

export async function benchSlowConnections(
  slow: number,
  concurrency: number,
  rounds: number,
): Promise<SlowResult> {
  // The crowd holds `slow` sockets, the service as many plus the bursts' and its own files.
  const fileLimit = ensureFileLimit(2 * slow + concurrency + 1024);
  const t = await startAckTarget(concurrency);
  const res: SlowResult = {
    slow,
    concurrency,
    rounds,
    fileLimit,
    quiet: { server: [], client: [] },
    crowded: { server: [], client: [] },
    open: [],
    cutOffDuringBursts: 0,
    idleCpu: { quiet: [], crowded: [] },
    statuses: {},
  };
  const count = (statuses: number[]) => {
    for (const s of statuses) res.statuses[s] = (res.statuses[s] ?? 0) + 1;
  };
  try {
    for (let r = 0; r < rounds; r++) {
      // Every burst connects anew, as webhook senders and curl do: connecting is part of what
      // a crowd could slow down.
      const quiet = async () => {
        res.idleCpu.quiet.push(await cpuPerSecond(t.svc.pid, () => sleep(2000)));
        t.dropConnections();
        const k = await t.creates(`quiet-${r}`, r * 20_000);
        res.quiet.client.push(...k.ms);
        count(k.statuses);
        await t.destroyAll(r * 20_000);
        return k.ms;
      };
      const crowded = async () => {
        // Opened over the headers timeout: by the time all are open, the first are being cut
        // off and reopened, a steady churn.
        const crowd = await startCrowd(t.svc.url, slow, 1000, HEADERS_TIMEOUT_MS);
        try {
          // What the crowd alone costs the service (two of the crowd's one-second reports).
          res.idleCpu.crowded.push(await cpuPerSecond(t.svc.pid, () => crowd.next().then(crowd.next)));
          const before = crowd.stats;
          t.dropConnections();
          const k = await t.creates(`crowd-${r}`, r * 20_000 + 10_000);
          await crowd.next();
          const after = crowd.stats;
          res.open.push(before.open, after.open);
          res.cutOffDuringBursts += after.cutOff - before.cutOff;
          res.crowded.client.push(...k.ms);
          count(k.statuses);
          return k.ms;
        } finally {
          await crowd.stop();
          await t.destroyAll(r * 20_000 + 10_000);
        }
      };
      // Alternate the order: the machine's drift then hits both alike.
      let q: number[];
      let c: number[];
      if (r % 2 === 0) {
        q = await quiet();
        c = await crowded();
      } else {
        c = await crowded();
        q = await quiet();
      }
      progress(
        `slow connections: round ${r + 1}/${rounds}: client-side creates p99 ${fmtMs(percentile(q, 99))} quiet, ${fmtMs(percentile(c, 99))} with ${slow} slow connections`,
      );
    }
    const log = t.files.logFile;
    const n = rounds * concurrency;
    res.quiet.server = await serverTimes(log, (l) => l.delivery?.startsWith('quiet-') ?? false, n);
    res.crowded.server = await serverTimes(log, (l) => l.delivery?.startsWith('crowd-') ?? false, n);
    return res;
  } finally {
    await t.close();
  }
}

export function reportSlowConnections(r: SlowResult): string {
  const row = (label: string, v: number[]) =>
    `  ${label.padEnd(34)} p50 ${fmtMs(percentile(v, 50)).padStart(9)}   p99 ${fmtMs(percentile(v, 99)).padStart(9)}   max ${fmtMs(percentile(v, 100)).padStart(9)}`;
  const ratio = (a: number[], b: number[]) =>
    `p50 ${fmtRatio(percentile(a, 50) / percentile(b, 50))}, p99 ${fmtRatio(percentile(a, 99) / percentile(b, 99))}`;
  return [
    `slow connections: bursts of ${r.concurrency} signed creates (new connections) × ${r.rounds} rounds against hatchery serve, with ${r.slow} slow connections open (1 byte/s each, half in their headers, half in a body; reopened when cut off) and without, interleaved`,
    row('server-side creates, quiet', r.quiet.server) + '   (baseline)',
    row(`server-side creates, ${r.slow} slow`, r.crowded.server),
    `  ratio server-side                  ${ratio(r.crowded.server, r.quiet.server)}   (goal p99 ≤ 1× + noise)`,
    row('client-side creates, quiet', r.quiet.client) + '   (baseline)',
    row(`client-side creates, ${r.slow} slow`, r.crowded.client),
    `  ratio client-side                  ${ratio(r.crowded.client, r.quiet.client)}`,
    `  slow connections open in bursts    min ${Math.min(...r.open)}, cut off by the server and reopened meanwhile: ${r.cutOffDuringBursts}`,
    `  service CPU between bursts         median ${median(r.idleCpu.quiet).toFixed(0)} ms/s quiet, ${median(r.idleCpu.crowded).toFixed(0)} ms/s with the slow connections`,
    `  statuses                           ${Object.entries(r.statuses)
      .map(([s, n]) => `${s} × ${n}`)
      .join(', ')}`,
    `  ${r.fileLimit}`,
  ].join('\n');
}

export interface BodyLimitResult {
  rounds: number;
  bodyBytes: number;
  /** Head sent → 413 status line received, for the 100 MB body sent at full speed. */
  refusedMs: number[];
  /** Head sent → 401 status line received, for a small unsigned body (the baseline). */
  smallMs: number[];
  /** Bytes the server read on each refused connection (its debug log line). */
  serverRead: number[];
  /** Bytes the client's socket accepted before the server closed (kernel buffers included). */
  clientSent: number[];
}

async function timedRequest(
  url: string,
  head: string,
  body: number | string,
): Promise<[RawConnection, number]> {
  const c = await RawConnection.open(url);
  const started = performance.now();
  await c.write(head);
  const sending = typeof body === 'number' ? c.blast(body) : c.write(body);
  await c.waitFor((x) => x.statuses.length > 0);
  const ms = performance.now() - started;
  await sending;
  return [c, ms];
}

export async function benchBodyLimit(rounds: number): Promise<BodyLimitResult> {
  const bodyBytes = 100 * 1024 * 1024;
  // Debug logging: the refusal's line carries the bytes the server read.
  const files = await StackFiles.create({ logLevel: 'debug' });
  const svc = new ServiceProcess(files);
  const res: BodyLimitResult = {
    rounds,
    bodyBytes,
    refusedMs: [],
    smallMs: [],
    serverRead: [],
    clientSent: [],
  };
  try {
    await svc.start();
    for (let r = 0; r <= rounds; r++) {
      const [big, bigMs] = await timedRequest(
        svc.url,
        requestHead('POST', '/hooks/control', {
          'content-type': 'application/json',
          'content-length': bodyBytes,
        }),
        bodyBytes,
      );
      await big.closed;
      const [small, smallMs] = await timedRequest(
        svc.url,
        requestHead('POST', '/hooks/control', { 'content-type': 'application/json', 'content-length': 2 }),
        '{}',
      );
      small.end();
      if (big.statuses[0] !== 413 || small.statuses[0] !== 401)
        throw new Error(`expected 413 and 401, got ${big.statuses[0]} and ${small.statuses[0]}`);
      if (r === 0) continue; // warm-up
      res.refusedMs.push(bigMs);
      res.smallMs.push(smallMs);
      res.clientSent.push(big.written);
    }
    const until = Date.now() + 10_000;
    while (res.serverRead.length < rounds + 1 && Date.now() < until) {
      res.serverRead = readFileSync(files.logFile, 'utf8')
        .split('\n')
        .filter((l) => l.includes('request body refused unread'))
        .map((l) => (JSON.parse(l) as { read: number }).read);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    res.serverRead = res.serverRead.slice(1);
    return res;
  } finally {
    await svc.stop().catch(() => svc.kill9());
    await files.cleanup();
  }
}

export function reportBodyLimit(r: BodyLimitResult): string {
  const kb = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
  const mb = r.bodyBytes / 1024 / 1024;
  return [
    `body limit: a ${mb} MB body sent at full speed to hatchery serve (body_limit 256kb) × ${r.rounds} rounds`,
    `  head sent → 413                    median ${fmtMs(median(r.refusedMs))}, max ${fmtMs(Math.max(...r.refusedMs))}`,
    `  head sent → 401 (small body)       median ${fmtMs(median(r.smallMs))}   (baseline)`,
    `  ratio                              ${fmtRatio(median(r.refusedMs) / median(r.smallMs))}`,
    `  read by the server                 median ${kb(median(r.serverRead))}, max ${kb(Math.max(...r.serverRead))} of ${mb} MB (${((100 * Math.max(...r.serverRead)) / r.bodyBytes).toFixed(2)}%); connection closed`,
    `  accepted by the client's socket    median ${kb(median(r.clientSent))} (kernel buffers) before the close`,
  ].join('\n');
}

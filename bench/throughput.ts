// Request throughput against a baseline in the same run: the same client, concurrency and count
// against Hatchery and against a bare Express app that only reads a POST's body and answers 202
// (bare-express.ts, its own process). Both servers' CPU is read from /proc, so the figures are
// requests/s and CPU ms per request for each. Used by control-plane.ts (signed creates) and
// webhooks.ts (signed GitHub webhooks).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ServiceProcess, type StackFiles } from '../test/helpers/stack.ts';
import { burst, type client } from './ack.ts';

const BARE = fileURLToPath(new URL('./bare-express.ts', import.meta.url));
export const TICKS = 100; // clock ticks per second in /proc/<pid>/stat (USER_HZ)

/** /proc/<pid>/stat's fields after the command name: [0] is field 3 (the state). */
export function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** User + system CPU of a process so far, in ms (/proc/<pid>/stat fields 14 and 15). */
export function cpuMs(pid: number): number {
  const fields = statFields(pid);
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
}

/**
 * The measured service. BENCH_PROFILE=<dir>: it writes a CPU profile there (node --cpu-prof) when
 * it stops; BENCH_NODE_ARGS: more node flags, after bin/hatchery.js's own (the last one wins).
 */
export function measuredService(files: StackFiles): ServiceProcess {
  const profile = process.env.BENCH_PROFILE;
  return new ServiceProcess(files, [
    ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean),
    ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(profile)}`] : []),
  ]);
}

export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN) / 1024;
}

/** A bare Express app answering 202 to any POST: the floor of an HTTP ack on this machine. */
export async function startBare(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', BARE], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()));
    child.once('exit', (code) => reject(new Error(`bare express exited ${code}`)));
  });
  return { url, child };
}

export interface Throughput {
  perS: number;
  cpuPerReqMs: number;
  /** How many requests got each status. */
  statuses: Record<number, number>;
}

/**
 * `n` requests, `concurrency` at a time in bursts, through `c`; `pid` is the server's process.
 * `one(i)` sends request i and resolves with its status.
 */
export async function throughput(
  c: ReturnType<typeof client>,
  pid: number,
  n: number,
  concurrency: number,
  one: (c: ReturnType<typeof client>, i: number) => Promise<number>,
): Promise<Throughput> {
  const statuses: Record<number, number> = {};
  const c0 = cpuMs(pid);
  const t0 = performance.now();
  for (let i = 0; i < n; i += concurrency) {
    const r = await burst(Math.min(concurrency, n - i), (k) => one(c, i + k));
    for (const s of r.statuses) statuses[s] = (statuses[s] ?? 0) + 1;
  }
  const s = (performance.now() - t0) / 1000;
  return { perS: n / s, cpuPerReqMs: (cpuMs(pid) - c0) / n, statuses };
}

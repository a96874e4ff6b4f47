// Compiled (dist/) against tsx on the sources, as `bin/hatchery.js` runs either
// (docs/adr/2026-12-02-compiled-dist.md): for each, the time `hatchery --help` takes to exit,
// the time `hatchery serve` takes to listen, and its resident memory once idle (VmRSS after
// BENCH_IDLE_S seconds, default 10; VmHWM is the peak, start-up included). `serve` runs the e2e
// tests' configuration (QEMU provider, no VM, the stand-in GitHub in this process). A bare
// `node` idling is measured alongside: what any Node process costs. Rounds alternate the order.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { BIN_NODE_FLAGS, StackFiles } from '../test/helpers/stack.ts';
import { fmtMs, fmtRatio, median, progress } from './stats.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = path.join(ROOT, 'bin/hatchery.js');
const WAYS = ['dist', 'tsx'] as const;
type Way = (typeof WAYS)[number];

interface Sample {
  helpMs: number;
  listenMs: number;
  rssMiB: number;
  hwmMiB: number;
}

export interface StartupResult {
  rounds: number;
  idleSeconds: number;
  samples: Record<Way, Sample[]>;
  /** A bare `node` process idling: VmRSS in MiB. */
  nodeRssMiB: number[];
}

/** bin/hatchery.js runs dist/ when current (just built), the sources through tsx when told to. */
const envFor = (way: Way): NodeJS.ProcessEnv => ({
  ...process.env,
  HATCHERY_CONFIG: '',
  HATCHERY_FROM_SOURCE: way === 'tsx' ? '1' : '',
});

function memory(pid: number): { rssMiB: number; hwmMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)![1]);
  return { rssMiB: kib('VmRSS') / 1024, hwmMiB: kib('VmHWM') / 1024 };
}

function help(way: Way): number {
  const t0 = performance.now();
  execFileSync(process.execPath, [BIN, '--help'], { env: envFor(way), stdio: 'ignore' });
  return performance.now() - t0;
}

async function serve(way: Way, files: StackFiles, idleSeconds: number) {
  const t0 = performance.now();
  const child = spawn(process.execPath, [...BIN_NODE_FLAGS, BIN, '--config', files.configFile, 'serve'], {
    cwd: files.dir,
    env: envFor(way),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let log = '';
  const listenMs = await new Promise<number>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('"msg":"listening"')) resolve(performance.now() - t0);
    });
    void exited.then(() => reject(new Error(`hatchery serve (${way}) exited before listening:\n${log}`)));
  });
  await sleep(idleSeconds * 1000);
  const mem = memory(child.pid!);
  child.kill('SIGTERM');
  await exited;
  return { listenMs, ...mem };
}

async function bareNode(idleSeconds: number): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await sleep(idleSeconds * 1000);
  const { rssMiB } = memory(child.pid!);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
  return rssMiB;
}

export async function benchStartup(rounds: number, idleSeconds: number): Promise<StartupResult> {
  progress('building dist/ (npm run build)');
  execFileSync(process.execPath, [path.join(ROOT, 'scripts/build.js')], { cwd: ROOT, stdio: 'inherit' });
  const files = await StackFiles.create({ logLevel: 'info' });
  const samples: Record<Way, Sample[]> = { dist: [], tsx: [] };
  const nodeRssMiB: number[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 ? [...WAYS].reverse() : WAYS;
      for (const way of order) {
        const helpMs = help(way);
        const s = await serve(way, files, idleSeconds);
        samples[way].push({ helpMs, ...s });
        progress(
          `round ${round + 1} ${way}: --help ${fmtMs(helpMs)}, serve listening after ${fmtMs(s.listenMs)}, ` +
            `idle RSS ${s.rssMiB.toFixed(1)} MiB (peak ${s.hwmMiB.toFixed(1)})`,
        );
      }
      nodeRssMiB.push(await bareNode(Math.min(idleSeconds, 2)));
    }
  } finally {
    await files.cleanup();
  }
  return { rounds, idleSeconds, samples, nodeRssMiB };
}

export function reportStartup(r: StartupResult): string {
  const med = (way: Way, key: keyof Sample) => median(r.samples[way].map((s) => s[key]));
  const mib = (v: number) => `${v.toFixed(1)} MiB`;
  const range = (way: Way, key: keyof Sample) => {
    const v = r.samples[way].map((s) => s[key]);
    return `${Math.min(...v).toFixed(1)}–${Math.max(...v).toFixed(1)}`;
  };
  const row = (what: string, key: keyof Sample, fmt: (v: number) => string) =>
    `  ${what.padEnd(26)} ${fmt(med('dist', key)).padStart(10)} ${fmt(med('tsx', key)).padStart(10)} ` +
    `${fmtRatio(med('dist', key) / med('tsx', key)).padStart(7)}`;
  return [
    `start-up and idle memory, dist/ vs tsx (${r.rounds} rounds, medians; idle ${r.idleSeconds} s)`,
    `  ${''.padEnd(26)} ${'dist'.padStart(10)} ${'tsx'.padStart(10)} ${'ratio'.padStart(7)}`,
    row('hatchery --help', 'helpMs', fmtMs),
    row('serve: listening after', 'listenMs', fmtMs),
    row('serve: idle RSS', 'rssMiB', mib),
    row('serve: peak RSS (VmHWM)', 'hwmMiB', mib),
    `  idle RSS range: dist ${range('dist', 'rssMiB')} MiB, tsx ${range('tsx', 'rssMiB')} MiB; ` +
      `a bare node process: ${mib(median(r.nodeRssMiB))}`,
  ].join('\n');
}

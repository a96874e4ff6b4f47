// Process checks for daemonized QEMU processes. They are not our children (they survive a
// service crash, to be adopted), so liveness is checked through /proc, and a pid only counts
// as ours if its command line names our VM directory (pids are reused).
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export async function isOurProcess(pid: number, marker: string): Promise<boolean> {
  if (!Number.isInteger(pid) || pid <= 1) return false;
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmdline.split('\0').some((arg) => arg.includes(marker))) return false;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // A zombie (state Z) has exited; its parent has not reaped it yet.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Waits until the process is gone; false on timeout. */
export async function waitGone(pid: number, marker: string, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!(await isOurProcess(pid, marker))) return true;
    await sleep(20);
  }
  return !(await isOurProcess(pid, marker));
}

export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/**
 * Live processes running one of `programs` (argv[0]'s base name) whose command line names
 * `marker`: a scan of /proc, for processes no pid file names (yet).
 */
export async function pidsNaming(marker: string, programs: readonly string[]): Promise<number[]> {
  const entries = await readdir('/proc').catch(() => [] as string[]);
  const pids = entries.filter((e) => /^\d+$/.test(e)).map(Number);
  const ours = await Promise.all(
    pids.map(async (pid) => {
      if (pid === process.pid || !(await isOurProcess(pid, marker))) return 0;
      const argv0 = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0')[0]!;
      return programs.includes(path.basename(argv0)) ? pid : 0;
    }),
  );
  return ours.filter((pid) => pid !== 0);
}

/**
 * SIGKILLs every such process, and any it forked meanwhile, until none is left; false if some
 * still run after timeoutMs.
 */
export async function killAllNaming(
  marker: string,
  programs: readonly string[],
  timeoutMs: number,
): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const pids = await pidsNaming(marker, programs);
    if (!pids.length) return true;
    if (Date.now() > until) return false;
    for (const pid of pids) signal(pid, 'SIGKILL');
    await sleep(20);
  }
}

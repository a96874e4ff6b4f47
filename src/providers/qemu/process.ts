// Process checks for daemonized QEMU processes. They are not our children (they survive a
// service crash, to be adopted), so liveness is checked through /proc, and a pid only counts
// as ours if its command line names our VM directory (pids are reused).
import { readFile } from 'node:fs/promises';
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

// Finding the processes a test started, by a marker in their command line (QEMU VMs are
// daemonized: they are nobody's children, so only /proc finds them).
import { readdirSync, readFileSync } from 'node:fs';

export function pidsWithArg(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
      if (cmdline.split('\0').some((a) => a.includes(marker))) pids.push(Number(entry));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids.filter((p) => p !== process.pid);
}

/** QEMU processes whose command line names a path under `dir` (`/x/vm-a` does not match `/x/vm-ab/…`). */
export function qemuPidsUnder(dir: string): number[] {
  return pidsWithArg(`${dir.replace(/\/+$/, '')}/`).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('qemu-system');
    } catch {
      return false;
    }
  });
}

/**
 * The VMs (their directories under `dir`) with a QEMU process running: one per VM, even while
 * `-daemonize` briefly shows a VM's parent and child process both.
 */
export function qemuVmsUnder(dir: string): string[] {
  const prefix = `${dir.replace(/\/+$/, '')}/`;
  const vms = new Set<string>();
  for (const pid of qemuPidsUnder(dir)) {
    try {
      for (const arg of readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')) {
        const at = arg.indexOf(prefix);
        if (at !== -1) vms.add(arg.slice(at + prefix.length).split('/')[0]!);
      }
    } catch {
      /* gone meanwhile */
    }
  }
  return [...vms];
}

export function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

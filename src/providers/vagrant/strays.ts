// `vagrant` commands left running in a VM's project dir by a service that died (kill -9, a
// crash): each command runs in a process group of its own (cli.ts), so it outlives the service,
// and `vagrant up` goes on to boot and provision the VM with the guest config the dead process
// gave it, holding Vagrant's machine lock meanwhile. Before the provider works on a project dir
// again it ends them: the provider runs one command at a time per VM, so any process working
// in that dir then is a stray. Found by their working directory (Vagrant, and the ssh and scp
// it starts, run in the project dir); SIGKILL, since a stray may be stopped, or ignore SIGTERM.
import { readdirSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Processes (other than this one) whose working directory is `dir` or under it. A few ms. */
export function processesIn(dir: string): number[] {
  const root = dir.replace(/\/+$/, '');
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cwd = readlinkSync(`/proc/${entry}/cwd`);
      if (cwd === root || cwd.startsWith(`${root}/`)) found.push(Number(entry));
    } catch {
      /* gone meanwhile, or not ours to read */
    }
  }
  return found;
}

/** Ends every process working in `dir`; resolves with their pids once they are gone (≤ 10 s). */
export async function endStrays(dir: string): Promise<number[]> {
  const ended = new Set<number>();
  for (let round = 0; round < 100; round++) {
    const pids = processesIn(dir);
    if (pids.length === 0) return [...ended];
    for (const pid of pids) {
      ended.add(pid);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await sleep(100);
  }
  throw new Error(`processes in ${dir} did not end: ${processesIn(dir).join(', ')}`);
}

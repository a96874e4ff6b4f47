// Console logs (the guest's serial port, written by QEMU into the project dir) outlive their
// VM for `hatchery vm logs`: moved to <state_dir>/.console/<name>.log on destroy, the newest
// `keep` of them kept.
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';

const DIR = '.console';
const TAIL = 256 * 1024;

/** The last 256 KiB of the first of `files` that exists, or null. */
export async function readTail(files: string[]): Promise<string | null> {
  for (const file of files) {
    try {
      const text = await readFile(file, 'utf8');
      return text.length > TAIL ? text.slice(-TAIL) : text;
    } catch {
      /* try the next one */
    }
  }
  return null;
}

export function keptConsole(stateDir: string, name: string): string {
  return path.join(stateDir, DIR, `${name}.log`);
}

export async function keepConsole(stateDir: string, name: string, file: string, keep: number): Promise<void> {
  if (keep <= 0) return;
  const dir = path.join(stateDir, DIR);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await rename(file, keptConsole(stateDir, name));
  } catch {
    return; // no console log (the domain never started)
  }
  const logs = await Promise.all(
    (await readdir(dir)).map(async (f) => ({
      f,
      at: (await stat(path.join(dir, f)).catch(() => null))?.mtimeMs ?? 0,
    })),
  );
  logs.sort((a, b) => b.at - a.at);
  for (const old of logs.slice(keep)) await rm(path.join(dir, old.f), { force: true });
}

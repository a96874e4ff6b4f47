// The debian-runner image (packer/debian-runner) for e2e tests and benchmarks, built by its own
// build.sh into the shared image cache as `debian-runner-<inputs hash>`: build.sh hashes every
// input (template, scripts, files, bootstrap, settings) and rebuilds only when one changed, so
// the ~4–5 min build runs once per change, not once per test run.
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { IMAGES_DIR } from './images.ts';

const BUILD = fileURLToPath(new URL('../../packer/debian-runner/build.sh', import.meta.url));

export interface DebianImage {
  /** The image name for a pool (`image = …`): a directory under IMAGES_DIR. */
  name: string;
  dir: string;
  /** False when build.sh found the image of these inputs already complete. */
  built: boolean;
  ms: number;
}

/** The name the image of the current inputs has (runs `build.sh --hash`: no build, no root). */
export function debianImageName(): string {
  const hash = execFileSync('sh', [BUILD, '--hash'], { encoding: 'utf8' }).trim();
  if (!/^[0-9a-f]{16}$/.test(hash)) throw new Error(`build.sh --hash printed ${JSON.stringify(hash)}`);
  return `debian-runner-${hash}`;
}

/**
 * Builds the image unless it is already in the cache. `nice`: other work on a shared machine
 * goes first. debootstrap needs root: a non-root run asks `sudo -n` (scripts/test.sh's user
 * has sudo). Its `==>` lines go to `onStep`; the whole output (Packer's lines carry timestamps)
 * to a log file kept only when the build fails, whose end is then in the error.
 */
export async function buildDebianImage(
  onStep: (line: string) => void = () => undefined,
): Promise<DebianImage> {
  const name = debianImageName();
  const dir = path.join(IMAGES_DIR, name);
  const log = path.join(tmpdir(), `hatchery-${name}.build.log`);
  const logStream = createWriteStream(log);
  const started = performance.now();
  const command = ['nice', '-n', '10', 'sh', BUILD, dir];
  if (process.getuid?.() !== 0) command.unshift('sudo', '-n');
  const child = spawn(command[0]!, command.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LC_ALL: 'C' },
  });
  const lines: string[] = [];
  let partial = '';
  const take = (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop() ?? '';
    for (const l of parts) {
      lines.push(l);
      if (lines.length > 200) lines.shift();
      if (l.startsWith('==>')) onStep(l);
    }
  };
  child.stdout.pipe(logStream, { end: false }); // ended below, once both streams are done
  child.stderr.pipe(logStream, { end: false });
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  const ms = performance.now() - started;
  await new Promise((resolve) => logStream.end(resolve));
  if (code !== 0) {
    throw new Error(
      `${BUILD} ${dir} exited ${code} (log: ${log}):\n${[...lines, partial].slice(-60).join('\n')}`,
    );
  }
  const built = !lines.some((l) => l.includes(' is up to date '));
  rmSync(log, { force: true });
  return { name, dir, built, ms };
}

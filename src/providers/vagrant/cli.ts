// Runs one `vagrant` command: our only way into Vagrant (docs/adr/2026-12-02-vagrant-provider.md
// says why the CLI and not node-vagrant). Every command runs in its own process group with
// `--machine-readable`, under a timeout and an AbortSignal that end the whole group (Vagrant
// starts ssh, scp, qemu-img …), and fails as a ProviderError carrying the lines that explain it.
import { spawn } from 'node:child_process';
import { ProviderError } from '../provider.ts';

export interface VagrantRecord {
  target: string;
  type: string;
  data: string[];
}

/**
 * `TIMESTAMP,TARGET,TYPE,DATA…` lines. In data, commas are written `%!(VAGRANT_COMMA)` and
 * newlines a literal `\n`; lines of other shapes (plugin warnings) are skipped.
 */
export function parseMachineReadable(stdout: string): VagrantRecord[] {
  const out: VagrantRecord[] = [];
  for (const line of stdout.split('\n')) {
    const fields = line.split(',');
    if (fields.length < 3 || !/^\d+$/.test(fields[0]!)) continue;
    out.push({
      target: fields[1]!,
      type: fields[2]!,
      data: fields.slice(3).map((f) => f.replaceAll('%!(VAGRANT_COMMA)', ',').replaceAll('\\n', '\n')),
    });
  }
  return out;
}

/** The machine's state from `vagrant status --machine-readable` (`running`, `shutoff`, `not_created` …). */
export function machineState(records: VagrantRecord[], machine: string): string | null {
  return records.find((r) => r.target === machine && r.type === 'state')?.data[0] ?? null;
}

// Vagrant's error classes whose cause a retry does not remove.
const PERMANENT = [
  'BoxNotFound',
  'VagrantfileLoadError',
  'VagrantfileSyntaxError',
  'ConfigInvalid',
  'ProviderNotUsable',
  'PluginLoadError',
];

/**
 * Why a command failed, in a few lines: Vagrant's `error-exit` record (class and message), else
 * the last non-empty stderr lines. `retryable` is false for errors a retry cannot fix.
 */
export function describeFailure(
  records: VagrantRecord[],
  stderr: string,
): { message: string; retryable: boolean } {
  const exit = records.find((r) => r.type === 'error-exit');
  const lines = (text: string) =>
    text
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  if (exit) {
    const [errorClass = '', text = ''] = exit.data;
    const body = lines(text).slice(0, 6).join(' | ');
    return {
      message: `${errorClass.replace(/^.*::/, '')}: ${body}`,
      retryable: !PERMANENT.some((p) => errorClass.endsWith(`::${p}`)),
    };
  }
  // An exception Vagrant did not handle (a Vagrantfile's trigger, a plugin bug) comes as a Ruby
  // backtrace: its first line holds the message, the `from …` lines only say where.
  const tail = lines(stderr)
    .filter((l) => !/^from \S+:\d+:in /.test(l))
    .slice(-4)
    .join(' | ');
  return { message: tail || 'no output', retryable: true };
}

export interface RunOptions {
  /** The `vagrant` executable. */
  binary: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Each stdout chunk as it arrives (progress for the log). */
  onOutput?: (chunk: string) => void;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  records: VagrantRecord[];
}

/** Grace between SIGTERM (Vagrant cleans up on it) and SIGKILL of the process group. */
const KILL_GRACE_MS = 5_000;
const MAX_OUTPUT = 4 * 1024 * 1024;

/**
 * Runs `vagrant <args> --machine-readable`. Rejects with a ProviderError when the command exits
 * non-zero, times out or is aborted (both retryable), or cannot be started.
 */
export function runVagrant(args: string[], opts: RunOptions): Promise<RunResult> {
  const what = `vagrant ${args[0] ?? ''}`.trim();
  if (opts.signal?.aborted) return Promise.reject(new ProviderError(`${what} aborted`, true));
  return new Promise((resolve, reject) => {
    const child = spawn(opts.binary, [...args, '--machine-readable'], {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group: a timeout ends Vagrant and everything it started
    });
    let stdout = '';
    let stderr = '';
    let ended: 'timeout' | 'aborted' | null = null;
    let killTimer: NodeJS.Timeout | undefined;
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, sig);
      } catch {
        /* already gone */
      }
    };
    const end = (why: 'timeout' | 'aborted') => {
      if (ended) return;
      ended = why;
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
    };
    const timer = setTimeout(() => end('timeout'), opts.timeoutMs);
    const onAbort = () => end('aborted');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      if (stdout.length < MAX_OUTPUT) stdout += d;
      opts.onOutput?.(d);
    });
    child.stderr.on('data', (d: string) => {
      if (stderr.length < MAX_OUTPUT) stderr += d;
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      reject(
        new ProviderError(
          e.code === 'ENOENT'
            ? `${opts.binary} not found: install the Debian packages vagrant vagrant-libvirt`
            : `${what}: ${e.message}`,
          e.code !== 'ENOENT',
        ),
      );
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      // Whatever the group left running (a stuck ssh) goes with it.
      killGroup('SIGKILL');
      if (killTimer) clearTimeout(killTimer);
      const records = parseMachineReadable(stdout);
      if (ended === 'aborted') return reject(new ProviderError(`${what} aborted`, true));
      if (ended === 'timeout')
        return reject(
          new ProviderError(`${what} timed out after ${Math.round(opts.timeoutMs / 1000)} s`, true),
        );
      if (code === 0) return resolve({ stdout, stderr, records });
      const { message, retryable } = describeFailure(records, stderr);
      reject(new ProviderError(`${what} failed (${code ?? sig}): ${message}`, retryable));
    });
  });
}

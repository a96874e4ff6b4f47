// Runs the operator's executable once: argv without a shell, the request on stdin, stdout
// collected (bounded), the tail of stderr kept. The executable leads its own process group, so a
// timeout or an abort kills it together with everything it started that did not leave the group
// (a VM the executable daemonized with setsid survives, as it must).
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RunOptions {
  argv: readonly string[];
  cwd: string;
  env: Record<string, string>;
  stdin: string;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Larger answers are refused (and the executable killed). */
  maxStdout?: number;
  /** How much of stderr's end is kept. */
  stderrTail?: number;
  /** Told each complete stderr line as it comes (progress of `prepare`). */
  onStderrLine?: (line: string) => void;
}

export type RunOutcome =
  /** The executable ran and exited (or died of a signal no one here sent). */
  | { kind: 'exited'; code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }
  /** Killed by us: over time, aborted by the caller, or answering more than maxStdout. */
  | { kind: 'killed'; reason: 'timeout' | 'aborted' | 'too-much-output'; stderr: string }
  /** It never ran: the caller had aborted already, or it could not be started (not found …). */
  | { kind: 'not-started'; error: NodeJS.ErrnoException | null };

const MAX_STDOUT = 16 * 1024 * 1024;
const STDERR_TAIL = 16 * 1024;
/** After SIGKILL, how long to wait for the group to disappear before giving up on it. */
const GROUP_GONE_MS = 5000;

export async function runOnce(opts: RunOptions): Promise<RunOutcome> {
  if (opts.signal?.aborted) return { kind: 'not-started', error: null };
  const [file, ...args] = opts.argv;
  const child = spawn(file!, args, {
    cwd: opts.cwd,
    env: opts.env,
    // A new session, hence a new process group whose id is the child's pid.
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  });

  const stdout: Buffer[] = [];
  let stdoutBytes = 0;
  const stderr = new TailBuffer(opts.stderrTail ?? STDERR_TAIL, opts.onStderrLine);
  let killedFor: 'timeout' | 'aborted' | 'too-much-output' | null = null;

  const killGroup = (reason: NonNullable<typeof killedFor>): void => {
    if (killedFor || child.pid === undefined) return;
    killedFor = reason;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* the group is gone already */
    }
    // A process that left the group may still hold our pipes open: stop reading them.
    child.stdout?.destroy();
    child.stderr?.destroy();
  };

  child.stdout!.on('data', (d: Buffer) => {
    stdoutBytes += d.length;
    if (stdoutBytes > (opts.maxStdout ?? MAX_STDOUT)) killGroup('too-much-output');
    else stdout.push(d);
  });
  child.stderr!.on('data', (d: Buffer) => stderr.push(d));
  // The executable may exit without reading its stdin (EPIPE): its answer still counts.
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(opts.stdin);

  const timer = setTimeout(() => killGroup('timeout'), opts.timeoutMs);
  const onAbort = () => killGroup('aborted');
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  try {
    const result = await new Promise<
      { ok: true; code: number | null; signal: NodeJS.Signals | null } | { ok: false; error: Error }
    >((resolve) => {
      child.once('error', (error) => resolve({ ok: false, error }));
      // 'close': exited, and stdout/stderr fully read (or destroyed by killGroup).
      child.once('close', (code, signal) => resolve({ ok: true, code, signal }));
    });
    if (!result.ok) {
      if (child.pid === undefined) return { kind: 'not-started', error: result.error };
      killGroup('aborted'); // an I/O error on our side: treat like an abort
    }
    if (killedFor) {
      if (child.pid !== undefined) await waitGroupGone(child.pid, GROUP_GONE_MS);
      return { kind: 'killed', reason: killedFor, stderr: stderr.text() };
    }
    const { code, signal } = result as { code: number | null; signal: NodeJS.Signals | null };
    stderr.flush();
    return {
      kind: 'exited',
      code,
      signal,
      stdout: Buffer.concat(stdout).toString('utf8'),
      stderr: stderr.text(),
    };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** Keeps the last `max` bytes; the first line of a cut buffer is dropped (it is partial). */
class TailBuffer {
  private chunks: Buffer[] = [];
  private bytes = 0;
  private cut = false;
  private pending = '';

  constructor(
    private readonly max: number,
    private readonly onLine?: (line: string) => void,
  ) {}

  push(d: Buffer): void {
    this.chunks.push(d);
    this.bytes += d.length;
    while (this.bytes - this.chunks[0]!.length >= this.max) {
      this.bytes -= this.chunks.shift()!.length;
      this.cut = true;
    }
    if (this.onLine) {
      const lines = (this.pending + d.toString('utf8')).split('\n');
      this.pending = lines.pop()!;
      for (const l of lines) this.onLine(l);
    }
  }

  /** Reports a last line that had no newline. */
  flush(): void {
    if (this.onLine && this.pending) this.onLine(this.pending);
    this.pending = '';
  }

  text(): string {
    let all = Buffer.concat(this.chunks);
    if (all.length > this.max) {
      all = all.subarray(all.length - this.max);
      this.cut = true;
    }
    const s = all.toString('utf8');
    return this.cut ? s.slice(s.indexOf('\n') + 1) : s;
  }
}

/**
 * Waits until no live process remains in the group. Zombies do not count: on hosts whose init
 * does not reap orphans they stay in the process table, dead.
 */
async function waitGroupGone(pgid: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      process.kill(-pgid, 0);
    } catch {
      return; // no member at all
    }
    if (!(await hasLiveMember(pgid))) return;
    await sleep(10);
  }
}

async function hasLiveMember(pgid: number): Promise<boolean> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // Fields after the command name (which may hold spaces): state ppid pgrp …
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') return true;
  }
  return false;
}

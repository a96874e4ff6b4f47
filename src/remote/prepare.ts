// The pool's `prepare` command (seed 000's board preparation): one command on a configured host,
// over SSH, before the VM is created. The host key must be the configured one. The VM's
// identifiers reach it as environment variables set through env(1), each validated here and
// quoted (shell.ts); the command's words come from the operator's config, quoted as well.
import { readFile } from 'node:fs/promises';
import { isVmName, LABEL, parseRepository } from '../core/naming.ts';
import type { PrepareConfig } from './config.ts';
import type { PrepareTarget } from './port.ts';
import { RemoteError } from './port.ts';
import { commandLine } from './shell.ts';
import { openSsh, runCommand, type RunResult } from './ssh.ts';

const POOL = /^[a-z0-9][a-z0-9-]{0,31}$/;
/** Lines of output kept in the audit trail (the whole tail is logged at debug). */
const NOTE_LINES = 10;
const NOTE_CHARS = 1500;

export function prepareEnv(t: PrepareTarget): Record<string, string> {
  const bad = (field: string) => new RemoteError(`prepare: invalid ${field} ${JSON.stringify(t)}`, false);
  if (!isVmName(t.vm)) throw bad('VM name');
  if (!POOL.test(t.pool)) throw bad('pool');
  if (!LABEL.test(t.label)) throw bad('label');
  try {
    parseRepository(t.repository);
  } catch {
    throw bad('repository');
  }
  return {
    HATCHERY_VM: t.vm,
    HATCHERY_POOL: t.pool,
    HATCHERY_REPOSITORY: t.repository,
    HATCHERY_LABEL: t.label,
  };
}

/** `exit 0`, `killed after 30 s`…, then the last lines of output. */
export function describeRun(r: RunResult, timeoutS: number): string {
  const status = r.timedOut
    ? `timed out after ${timeoutS} s (the command was killed)`
    : r.code !== null
      ? `exited ${r.code}`
      : `ended on signal ${r.signal ?? 'unknown'}`;
  const lines = r.output.lines(NOTE_LINES);
  let out = lines.length
    ? `; output${r.output.dropped || lines.length === NOTE_LINES ? ' (last lines)' : ''}: ${lines.join(' | ')}`
    : '; no output';
  if (out.length > NOTE_CHARS) out = `…${out.slice(-NOTE_CHARS)}`;
  return `${status}${out}`;
}

export async function runPrepare(
  cfg: PrepareConfig,
  target: PrepareTarget,
  signal: AbortSignal,
): Promise<string> {
  const env = prepareEnv(target);
  const where = `${cfg.user}@${cfg.host}:${cfg.port}`;
  const privateKey = await readFile(cfg.key).catch((e: NodeJS.ErrnoException) => {
    throw new RemoteError(`prepare: cannot read its key ${cfg.key} (${e.code ?? 'unreadable'})`, false);
  });
  const timeoutMs = cfg.timeout_seconds * 1000;
  let conn;
  try {
    conn = await openSsh(
      { host: cfg.host, port: cfg.port, user: cfg.user, privateKey },
      { expected: cfg.host_key, readyTimeoutMs: Math.min(30_000, timeoutMs), signal },
    );
  } catch (e) {
    const err = e as RemoteError;
    // An unreachable host may come back; a wrong host key will not.
    throw new RemoteError(`prepare: ${err.message}`, err.retryable && cfg.retryable);
  }
  try {
    const r = await runCommand(conn.client, commandLine(cfg.command, env), { timeoutMs, signal });
    const summary = `prepare on ${where} ${describeRun(r, cfg.timeout_seconds)}`;
    if (r.timedOut || r.code !== 0) throw new RemoteError(summary, cfg.retryable);
    return summary;
  } finally {
    conn.close();
  }
}

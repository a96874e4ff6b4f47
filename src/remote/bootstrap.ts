// The SSH bootstrap on the guest side of one connection: copy the bootstrap script and its
// config into a private directory and start the script detached, exactly once. "Once" is a
// marker directory the start command creates atomically (`mkdir started`): a provision step
// resumed after a crash, or two racing ones, find it and start nothing.
import type { SFTPWrapper } from 'ssh2';
import { shQuote } from './shell.ts';
import type { BootstrapSession } from './port.ts';
import { RemoteError } from './port.ts';
import { isNoSuchFile, openSftp, runCommand, sftpCall, type Connection } from './ssh.ts';

/** Exit status of the start command when the marker existed already. */
const ALREADY = 3;
/**
 * The most one session call may take: the worker does not bound a step, so a guest that stops
 * answering mid-copy must not hold the provision step (and its lease) forever.
 */
const CALL_MS = 60_000;

/**
 * Run in the directory: take the marker, then start `sh bootstrap.sh config` in its own session
 * (setsid), stdin from /dev/null and output to bootstrap.log, so it outlives this SSH session.
 * A login other than root starts it through `sudo -n` (the bootstrap mounts and powers off).
 */
export function startCommand(dir: string): string {
  const script = [
    `cd ${shQuote(dir)} || exit 2`,
    `mkdir started 2>/dev/null || exit ${ALREADY}`,
    `if [ "$(id -u)" -eq 0 ]; then s=; else s='sudo -n'; fi`,
    '$s setsid sh ./bootstrap.sh ./config </dev/null >>bootstrap.log 2>&1 &',
    'exit 0',
  ].join('\n');
  // Through sh, whatever the login shell is.
  return `sh -c ${shQuote(script)}`;
}

export class SshBootstrapSession implements BootstrapSession {
  private sftp: Promise<SFTPWrapper> | null = null;

  constructor(
    private readonly conn: Connection,
    /** On the guest; relative paths are in the login's home (SFTP and the shell start there). */
    private readonly dir: string,
    private readonly where: string,
  ) {}

  get hostKey(): string {
    return this.conn.hostKey;
  }

  private files(): Promise<SFTPWrapper> {
    this.sftp ??= openSftp(this.conn.client);
    return this.sftp;
  }

  /** Runs `f`; past CALL_MS the connection is dropped (failing what is pending) and it rejects. */
  private bounded<T>(what: string, f: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.conn.client.destroy();
        reject(new RemoteError(`${this.where}: ${what}: no answer within ${CALL_MS / 1000} s`, true));
      }, CALL_MS);
    });
    return Promise.race([f(), timeout]).finally(() => clearTimeout(timer));
  }

  started(): Promise<boolean> {
    return this.bounded('checking the marker', () => this.hasMarker());
  }

  start(files: { script: string; config: string }): Promise<boolean> {
    return this.bounded('starting the bootstrap', () => this.copyAndStart(files));
  }

  private async hasMarker(): Promise<boolean> {
    const sftp = await this.files();
    try {
      await sftpCall((cb) => sftp.stat(`${this.dir}/started`, cb));
      return true;
    } catch (e) {
      if (isNoSuchFile(e)) return false;
      throw new RemoteError(`${this.where}: cannot check ${this.dir}/started: ${(e as Error).message}`, true);
    }
  }

  private async copyAndStart(files: { script: string; config: string }): Promise<boolean> {
    const sftp = await this.files();
    const step = async (what: string, f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (e) {
        throw new RemoteError(`${this.where}: ${what}: ${(e as Error).message}`, true);
      }
    };
    await step(`mkdir ${this.dir}`, async () => {
      try {
        await sftpCall((cb) => sftp.mkdir(this.dir, { mode: 0o700 }, cb));
      } catch (e) {
        // It exists (an earlier attempt): it must be a directory; it is made private below.
        const st = await sftpCall<{ isDirectory(): boolean }>((cb) => sftp.stat(this.dir, cb)).catch(() => {
          throw e;
        });
        if (!st.isDirectory()) throw new Error('exists and is not a directory');
      }
      await sftpCall((cb) => sftp.chmod(this.dir, 0o700, cb));
    });
    for (const [name, data] of [
      ['bootstrap.sh', files.script],
      ['config', files.config],
    ] as const) {
      const file = `${this.dir}/${name}`;
      await step(`copy ${file}`, async () => {
        await sftpCall((cb) => sftp.writeFile(file, data, { mode: 0o600 }, cb));
        // A file left by an earlier attempt keeps its old mode on open: set it.
        await sftpCall((cb) => sftp.chmod(file, 0o600, cb));
      });
    }
    const r = await runCommand(this.conn.client, startCommand(this.dir), { timeoutMs: 30_000 });
    if (r.code === ALREADY) return false;
    if (r.code !== 0) {
      const why = r.timedOut ? 'timed out' : `exited ${r.code ?? r.signal}`;
      throw new RemoteError(
        `${this.where}: starting the bootstrap ${why}: ${r.output.lines(5).join(' | ') || 'no output'}`,
        true,
      );
    }
    return true;
  }

  close(): void {
    this.conn.close();
  }
}

// A thin layer over ssh2: log in with a key while checking the host key, run a command with a
// time limit and bounded output, and the few SFTP calls the bootstrap needs. No retries and no
// policy here (bootstrap.ts, prepare.ts); errors are RemoteErrors that say what failed.
import net from 'node:net';
import type { Client, ClientChannel, SFTPWrapper } from 'ssh2';
import { fingerprintOf, sameFingerprint } from './fingerprint.ts';
import { RemoteError } from './port.ts';
import { loadSsh2 } from './ssh2-module.ts';

export interface Login {
  host: string;
  port: number;
  user: string;
  /** OpenSSH private key text. Never logged, never in an error. */
  privateKey: Buffer | string;
}

export interface Connection {
  client: Client;
  /** The fingerprint of the host key the server presented (`SHA256:…`). */
  hostKey: string;
  close(): void;
}

const where = (l: Pick<Login, 'host' | 'port' | 'user'>) => `${l.user}@${l.host}:${l.port}`;

/**
 * Connects and authenticates. With `expected`, a server presenting another host key is refused
 * during the key exchange, before authentication: nothing is sent to it (non-retryable error).
 */
export async function openSsh(
  login: Login,
  opts: { expected?: string; readyTimeoutMs: number; signal?: AbortSignal },
): Promise<Connection> {
  const { Client } = await loadSsh2();
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) return reject(new RemoteError(`ssh ${where(login)}: aborted`, true));
    const client = new Client();
    let presented: string | null = null;
    let mismatch = false;
    let settled = false;
    const onAbort = () => fail(new RemoteError(`ssh ${where(login)}: aborted`, true));
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener('abort', onAbort);
      client.end();
      client.destroy();
      reject(e);
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    client.on('ready', () => {
      if (settled) return client.end();
      settled = true;
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({ client, hostKey: presented!, close: () => client.end() });
    });
    client.on('error', (e: Error & { level?: string }) => {
      if (mismatch) {
        return fail(
          new RemoteError(
            `ssh ${where(login)}: host key mismatch: expected ${opts.expected}, the server presented ` +
              `${presented}; refused before logging in, nothing was sent`,
            false,
          ),
        );
      }
      fail(new RemoteError(`ssh ${where(login)}: ${e.message}`, true));
    });
    client.on('close', () =>
      fail(new RemoteError(`ssh ${where(login)}: connection closed before login`, true)),
    );
    client.connect({
      host: login.host,
      port: login.port,
      username: login.user,
      privateKey: login.privateKey,
      readyTimeout: Math.max(1000, opts.readyTimeoutMs),
      // Only our key: never an agent's or a password.
      agent: undefined,
      tryKeyboard: false,
      hostVerifier: (key: Buffer) => {
        presented = fingerprintOf(key);
        if (opts.expected && !sameFingerprint(presented, opts.expected)) {
          mismatch = true;
          return false;
        }
        return true;
      },
    });
  });
}

/**
 * Resolves when a server at host:port sends an SSH identification line within `timeoutMs`, else
 * rejects (retryable). A port forward to a booting guest accepts the TCP connection and then
 * holds it silent until the guest's sshd answers: probing for the banner first, with a short
 * limit, keeps a login attempt from waiting out its whole time on such a connection.
 */
export function waitForBanner(host: string, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    let seen = '';
    const done = (e?: Error) => {
      clearTimeout(timer);
      sock.destroy();
      if (e) reject(new RemoteError(`${host}:${port}: ${e.message}`, true));
      else resolve();
    };
    const timer = setTimeout(() => done(new Error(`no SSH banner within ${timeoutMs} ms`)), timeoutMs);
    sock.on('data', (d: Buffer) => {
      seen += d.toString('latin1');
      if (seen.includes('\n')) {
        if (/^SSH-/m.test(seen)) done();
        else if (seen.length > 4096) done(new Error('not an SSH server'));
      }
    });
    sock.on('error', (e) => done(e));
    sock.on('end', () => done(new Error('connection closed before the SSH banner')));
  });
}

/** Keeps the last `max` bytes of a stream of text (the first ones are dropped, and counted). */
export class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  dropped = 0;
  constructor(private readonly max: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.max && this.chunks.length > 0) {
      const first = this.chunks[0]!;
      const over = this.size - this.max;
      if (first.length <= over) {
        this.chunks.shift();
        this.size -= first.length;
        this.dropped += first.length;
      } else {
        this.chunks[0] = first.subarray(over);
        this.size -= over;
        this.dropped += over;
      }
    }
  }

  /** The last `n` lines, without control characters (they go into notes and logs). */
  lines(n: number): string[] {
    const text = Buffer.concat(this.chunks).toString('utf8');
    return (
      text
        // eslint-disable-next-line no-control-regex
        .replace(/[\u0000-\u0009\u000b-\u001f\u007f]/g, '')
        .split('\n')
        .map((l) => l.trimEnd())
        .filter(Boolean)
        .slice(-n)
    );
  }
}

export interface RunResult {
  /** Exit status; null when it ended on a signal or was killed after the time limit. */
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  /** stdout and stderr as they arrived, the last `maxOutput` bytes. */
  output: Tail;
}

/** The first line a killable command prints: its process group (the login shell's pid). */
const PGID_MARK = 'hatchery-pgid';
/** After a kill, how long to wait for the server to close the channel before giving up on it. */
const CLOSE_GRACE_MS = 5000;

/**
 * Runs `command` (one string, parsed by the remote login shell: quote it with shell.ts) without
 * a terminal. With `timeoutMs`, the command runs as `exec <command>` after printing its process
 * group (sshd makes each session's shell a group leader), and past the limit (or on abort) that
 * whole group is killed: with a `signal` request (OpenSSH ≥ 7.9, not for root logins, where the
 * session runs in sshd's monitor) and with `kill -s KILL -- -<pgid>` on a second channel.
 */
export function runCommand(
  client: Client,
  command: string,
  opts: { timeoutMs: number; maxOutput?: number; signal?: AbortSignal },
): Promise<RunResult> {
  const output = new Tail(opts.maxOutput ?? 64 * 1024);
  const wrapped = `echo ${PGID_MARK} $$ && exec ${command}`;
  return new Promise((resolve, reject) => {
    client.exec(wrapped, (err, channel: ClientChannel) => {
      if (err) return reject(new RemoteError(`cannot start the command: ${err.message}`, true));
      let code: number | null = null;
      let sig: string | null = null;
      let timedOut = false;
      let pgid: number | null = null;
      let head: Buffer | null = Buffer.alloc(0);
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        resolve({ code: timedOut ? null : code, signal: sig, timedOut, output });
      };
      const kill = () => {
        channel.signal('KILL');
        if (pgid !== null) {
          client.exec(`kill -s KILL -- -${pgid}`, (e, ch) => {
            if (!e) ch.resume().on('close', () => undefined);
          });
        }
        setTimeout(() => {
          channel.close();
          finish(); // a server that never closes the channel must not hold the caller
        }, CLOSE_GRACE_MS).unref();
      };
      const timer = setTimeout(() => {
        timedOut = true;
        kill();
      }, opts.timeoutMs);
      const onAbort = () => kill();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      channel.on('data', (d: Buffer) => {
        if (head === null) return output.push(d);
        // The first line is ours (the process group), the rest is the command's.
        head = Buffer.concat([head, d]);
        const nl = head.indexOf(10);
        if (nl < 0 && head.length < 64) return;
        const first = head.subarray(0, nl < 0 ? head.length : nl).toString();
        const m = new RegExp(`^${PGID_MARK} (\\d{1,10})$`).exec(first);
        if (m) pgid = Number(m[1]);
        const rest = m ? head.subarray(nl + 1) : head;
        head = null;
        if (rest.length) output.push(rest);
      });
      channel.stderr.on('data', (d: Buffer) => output.push(d));
      channel.on('exit', (c: number | null, s?: string) => {
        code = typeof c === 'number' ? c : null;
        sig = s ?? null;
      });
      channel.on('close', finish);
    });
  });
}

export function openSftp(client: Client): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) =>
    client.sftp((err, sftp) =>
      err ? reject(new RemoteError(`cannot open SFTP: ${err.message}`, true)) : resolve(sftp),
    ),
  );
}

/** SFTP status 2 (no such file). */
export function isNoSuchFile(e: unknown): boolean {
  return (e as { code?: unknown }).code === 2;
}

export const sftpCall = <T>(f: (cb: (err: Error | null | undefined, v?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => f((err, v) => (err ? reject(err) : resolve(v as T))));

// A real OpenSSH sshd (Debian's openssh-server) for tests: on 127.0.0.1, a free port, its own
// host key and authorized_keys in a temp dir, started as `/usr/sbin/sshd -D -f <config> -p <port>`
// (never the system's service). Logging in as root: the tests' commands run in their temp dirs.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const SSHD = '/usr/sbin/sshd';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** `SHA256:…` of a public key file, as ssh-keygen prints it. */
export function fingerprintOfFile(pub: string): string {
  return execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', pub], { encoding: 'utf8' }).split(' ')[1]!;
}

/** A new ed25519 key pair in `dir`: the private key's path and its public line. */
export function makeKeyPair(dir: string, name: string): { key: string; pub: string } {
  const key = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', key]);
  return { key, pub: readFileSync(`${key}.pub`, 'utf8').trim() };
}

export class TestSshd {
  private child: ChildProcess | null = null;
  readonly hostKeyFile: string;
  readonly authorizedKeys: string;
  readonly log: string;

  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {
    this.hostKeyFile = path.join(dir, 'host_ed25519');
    this.authorizedKeys = path.join(dir, 'authorized_keys');
    this.log = path.join(dir, 'sshd.log');
  }

  static async start(): Promise<TestSshd> {
    const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-sshd-'));
    const sshd = new TestSshd(dir, await freePort());
    // sshd refuses to start without its privilege separation directory (the package's service
    // would create it at boot).
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    sshd.newHostKey();
    writeFileSync(sshd.authorizedKeys, '', { mode: 0o600 });
    writeFileSync(
      path.join(dir, 'sshd_config'),
      [
        'ListenAddress 127.0.0.1',
        `HostKey ${sshd.hostKeyFile}`,
        `PidFile ${path.join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${sshd.authorizedKeys}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'Subsystem sftp internal-sftp',
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    );
    await sshd.run();
    return sshd;
  }

  get hostKey(): string {
    return fingerprintOfFile(`${this.hostKeyFile}.pub`);
  }

  /** Replaces the host key (takes effect for new connections after restart()). */
  newHostKey(): void {
    rmSync(this.hostKeyFile, { force: true });
    rmSync(`${this.hostKeyFile}.pub`, { force: true });
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', this.hostKeyFile]);
  }

  authorize(publicKeyLine: string): void {
    appendFileSync(this.authorizedKeys, `${publicKeyLine}\n`);
  }

  private async run(): Promise<void> {
    const child = spawn(
      SSHD,
      ['-D', '-e', '-f', path.join(this.dir, 'sshd_config'), '-p', String(this.port)],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    this.child = child;
    child.stderr!.on('data', (d: Buffer) => appendFileSync(this.log, d));
    for (let i = 0; i < 100; i++) {
      if (child.exitCode !== null)
        throw new Error(`sshd exited ${child.exitCode}: ${readFileSync(this.log, 'utf8')}`);
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(this.port, '127.0.0.1', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      if (ok) return;
      await sleep(50);
    }
    throw new Error(`sshd did not listen on ${this.port}: ${readFileSync(this.log, 'utf8')}`);
  }

  async restart(): Promise<void> {
    await this.stopDaemon();
    await this.run();
  }

  private async stopDaemon(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    this.child = null;
  }

  /** Stops sshd and removes its files; returns whether it was still running (it should be). */
  async stop(): Promise<void> {
    await this.stopDaemon();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

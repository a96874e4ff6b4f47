// RemoteOps (port.ts) over ssh2: what the service hands to the core as `ctx.remote`.
import { setTimeout as sleep } from 'node:timers/promises';
import type { PoolConfig } from '../config/schema.ts';
import type { Logger } from '../log.ts';
import { SshBootstrapSession } from './bootstrap.ts';
import { VmKeys } from './keys.ts';
import type { BootstrapSession, PrepareTarget, RemoteOps, SshAddress } from './port.ts';
import { RemoteError } from './port.ts';
import { runPrepare } from './prepare.ts';
import { openSsh, waitForBanner } from './ssh.ts';

/** Between attempts to reach a booting guest's sshd. */
const RETRY_MS = 1000;
/** How long one probe waits for the sshd's banner (a booting guest's forward stays silent). */
const BANNER_MS = 2000;
/** One login's limit once the banner came (key exchange + authentication). */
const ATTEMPT_MS = 20_000;

export class SshRemote implements RemoteOps {
  readonly keys: VmKeys;

  constructor(
    stateDir: string,
    private readonly log: Logger,
  ) {
    this.keys = new VmKeys(stateDir);
  }

  async prepare(pool: PoolConfig, target: PrepareTarget, signal: AbortSignal): Promise<string> {
    if (!pool.prepare) throw new RemoteError(`pool ${pool.name} has no prepare command`, false);
    this.log.info({ vm: target.vm, host: pool.prepare.host }, 'running the prepare command');
    return runPrepare(pool.prepare, target, signal);
  }

  authorizedKey(vm: string): Promise<string> {
    return this.keys.authorizedKey(vm);
  }

  async connect(
    vm: string,
    pool: PoolConfig,
    address: SshAddress,
    trust: { expected?: string; onFirstUse: (fingerprint: string) => Promise<void> },
    deadline: number,
    signal: AbortSignal,
  ): Promise<BootstrapSession> {
    const privateKey = await this.keys.privateKey(vm);
    const login = { host: address.host, port: address.port, user: pool.ssh.user ?? address.user, privateKey };
    const where = `${login.user}@${login.host}:${login.port}`;
    let last = 'no attempt';
    for (let attempt = 1; ; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new RemoteError(
          `${vm}: no SSH login at ${where} in time (${attempt - 1} attempts; last: ${last})`,
          true,
        );
      }
      try {
        await waitForBanner(login.host, login.port, Math.min(left, BANNER_MS));
        const conn = await openSsh(login, {
          expected: trust.expected,
          readyTimeoutMs: Math.min(left, ATTEMPT_MS),
          signal,
        });
        this.log.info({ vm, ssh: where, attempts: attempt, hostKey: conn.hostKey }, 'SSH login to the VM');
        try {
          // Pinned before anything is copied: a reconnect (a resumed step) must see this key.
          if (!trust.expected) await trust.onFirstUse(conn.hostKey);
        } catch (e) {
          conn.close();
          throw e;
        }
        return new SshBootstrapSession(conn, pool.ssh.dir, `${vm} (${where})`);
      } catch (e) {
        if (!(e instanceof RemoteError) || !e.retryable || signal.aborted) throw e;
        // The guest is still booting (refused, reset, no key yet): try again.
        last = e.message;
        this.log.debug({ vm, ssh: where, attempt, err: e.message }, 'SSH not ready yet');
        await sleep(Math.min(RETRY_MS, Math.max(0, deadline - Date.now())), undefined, { signal }).catch(
          () => undefined,
        );
      }
    }
  }

  async forget(vm: string): Promise<void> {
    await this.keys.remove(vm);
  }

  async sweep(isGone: (vms: string[]) => Promise<string[]>): Promise<string[]> {
    await this.keys.removeStaleTemps();
    const gone = await isGone(await this.keys.list());
    for (const vm of gone) await this.keys.remove(vm);
    if (gone.length) this.log.info({ removed: gone.length }, 'removed the SSH keys of VMs that are gone');
    return gone;
  }
}

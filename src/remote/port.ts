// What the core needs from SSH (src/remote/): the pool's `prepare` command and the SSH bootstrap.
// Core sees this interface only (as it sees providers through provider.ts): no SSH library, no
// key files, no host keys beyond the fingerprint it records.
import type { PoolConfig } from '../config/schema.ts';

/** Where a VM's sshd answers, as its provider reports it (VmInfo.ssh). */
export interface SshAddress {
  host: string;
  port: number;
  user: string;
  /** The host key the provider expects the VM to present (`SHA256:…`), if it knows it. */
  hostKey?: string;
}

/** The VM identifiers a `prepare` command receives (as environment variables). */
export interface PrepareTarget {
  vm: string;
  pool: string;
  repository: string;
  label: string;
}

/** An open, authenticated and verified SSH session to a VM. */
export interface BootstrapSession {
  /** The host key fingerprint the VM presented (`SHA256:…`). */
  readonly hostKey: string;
  /** True when a bootstrap was started on this VM before (its marker exists). */
  started(): Promise<boolean>;
  /**
   * Copies the script and the guest config (0600, in a 0700 directory) and starts the script
   * detached, exactly once: false when another start got there first (the marker existed).
   */
  start(files: { script: string; config: string }): Promise<boolean>;
  close(): void;
}

export interface RemoteOps {
  /**
   * Runs the pool's `prepare` command before its VM is created; resolves to a note for the
   * audit trail (exit status and the last lines of output). Rejects with a RemoteError.
   */
  prepare(pool: PoolConfig, target: PrepareTarget, signal: AbortSignal): Promise<string>;
  /** The VM's public key (an authorized_keys line), its key pair made on first use. */
  authorizedKey(vm: string): Promise<string>;
  /**
   * Waits (until `deadline`, epoch ms) for the VM's sshd, retrying while it boots, and logs in
   * with the VM's key. The host key must be `expected` when given; otherwise it is trusted on
   * first use and `onFirstUse` records it (before anything is copied). A mismatch is refused.
   */
  connect(
    vm: string,
    pool: PoolConfig,
    address: SshAddress,
    trust: { expected?: string; onFirstUse: (fingerprint: string) => Promise<void> },
    deadline: number,
    signal: AbortSignal,
  ): Promise<BootstrapSession>;
  /** Removes the VM's key pair (destroy). Absent: nothing to do. */
  forget(vm: string): Promise<void>;
  /** Removes the key pairs of VMs for which `isGone` says so (start-up); returns their names. */
  sweep(isGone: (vms: string[]) => Promise<string[]>): Promise<string[]>;
}

export class RemoteError extends Error {
  constructor(
    message: string,
    /** Trying again may succeed (unreachable, timed out) or not (host key mismatch). */
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'RemoteError';
  }
}

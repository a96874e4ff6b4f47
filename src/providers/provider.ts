// The narrow interface every VM provider implements (garm-style): create, destroy, list.
// Providers hold no state of their own beyond what they can rediscover with list(): no store,
// no GitHub. Everything a VM needs (bootstrap script, guest config with its one-shot JIT
// runner config) is handed to create() as data.
import { isVmName } from '../core/naming.ts';

/**
 * Where the service reaches a VM's guest channel (docs/guest-protocol.md): a unix socket the
 * service connects to (QEMU's virtio-serial port), or HTTP, where the guest calls the service.
 */
export type ChannelAddress = { kind: 'unix'; path: string } | { kind: 'http' };

export interface VmSpec {
  /** Unique, validated by core/naming.ts: `[a-z0-9][a-z0-9-]{0,62}`. Idempotency key. */
  name: string;
  pool: string;
  /** Provider-specific image reference (QEMU: a name under the image directory). */
  image: string;
  cpus: number;
  memoryMiB: number;
  /** The bootstrap script run by the guest at boot; empty with `ssh` (the service copies it). */
  bootstrap: string;
  /** NAME=VALUE pairs for the guest (docs/guest-protocol.md); may hold the one-shot JIT config. */
  guestConfig: Record<string, string>;
  /**
   * The pool bootstraps over SSH (`bootstrap = "ssh"`): make the VM's sshd reachable (VmInfo.ssh)
   * and let this key log in. `bootstrap` and `guestConfig` are then empty: nothing to deliver.
   */
  ssh?: { authorizedKey: string };
  /** Ownership tags; list() returns only VMs carrying this provider's installation tag. */
  tags: Record<string, string>;
}

export interface VmInfo {
  name: string;
  /** `running`: the VM exists and executes; `stopped`: it exists (files, disk) but does not run. */
  status: 'running' | 'stopped';
  tags: Record<string, string>;
  createdAt: string;
  channel?: ChannelAddress;
  /**
   * Where the VM's sshd answers (for a spec with `ssh`), with the host key fingerprint
   * (`SHA256:…`) the provider expects it to present, when it knows it (else: trusted on first use).
   */
  ssh?: { host: string; port: number; user: string; hostKey?: string };
}

export interface Provider {
  readonly kind: string;
  /**
   * A guest channel of its own (QEMU: a virtio-serial port on a unix socket), returned by
   * create/get as `channel`; without one, guests use the service's HTTP channel.
   */
  readonly nativeChannel?: 'unix';
  /** create() honours VmSpec.ssh (pools with `bootstrap = "ssh"`) and reports VmInfo.ssh. */
  readonly sshBootstrap?: boolean;
  /**
   * destroy() runs the guest's teardown hook itself while the VM still runs (Vagrant: the
   * Vagrantfile's before-destroy trigger). The HTTP channel then asks the guest to shut down only
   * once a destroy attempt has failed (core/guest-inbox.ts).
   */
  readonly destroyRunsTeardown?: boolean;
  /**
   * Creates and starts the VM. Idempotent by name: if it already exists, returns it.
   * On failure nothing is left behind. Honours `signal` (aborts and cleans up).
   */
  create(spec: VmSpec, signal?: AbortSignal): Promise<VmInfo>;
  /** Stops and removes the VM and everything it owns. Absent VM → success. */
  destroy(name: string, signal?: AbortSignal): Promise<void>;
  /** Every VM this installation owns (by tag), running or not. */
  list(): Promise<VmInfo[]>;
  /** One VM of this installation by name (as list() would show it), or null. */
  get(name: string): Promise<VmInfo | null>;
  /**
   * Makes an image ready before the first VM needs it (build or fetch it, probe accelerators),
   * reporting progress; optional. Errors say what is missing.
   */
  prepare?(image: string, onProgress?: (message: string) => void): Promise<void>;
  /**
   * The VM's console output (for `hatchery vm logs`): the live VM's, or what was kept of a
   * destroyed one; null if there is none. Only for providers that keep one.
   */
  console?(name: string): Promise<string | null>;
  /** Releases resources held by the provider object itself (never destroys VMs). */
  close?(): Promise<void>;
}

/**
 * A provider's guard on every name it is handed: names reach file paths, domain and server
 * names and command lines, so anything but a VM name (core/naming.ts) is refused, not retried.
 */
export function checkVmName(name: string): void {
  if (!isVmName(name)) throw new ProviderError(`invalid VM name ${JSON.stringify(name)}`, false);
}

export class ProviderError extends Error {
  constructor(
    message: string,
    /** Retrying the same call may succeed (transient) or not (bad image, bad spec). */
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'ProviderError';
  }
}

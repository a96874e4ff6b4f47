// The narrow interface every VM provider implements (garm-style): create, destroy, list.
// Providers hold no state of their own beyond what they can rediscover with list(): no store,
// no GitHub. Everything a VM needs (bootstrap script, guest config with its one-shot JIT
// runner config) is handed to create() as data.

/** Where the service reaches a VM's guest channel (see docs/guest-protocol.md). */
export type ChannelAddress = { kind: 'unix'; path: string };

export interface VmSpec {
  /** Unique, validated by core/naming.ts: `[a-z0-9][a-z0-9-]{0,62}`. Idempotency key. */
  name: string;
  pool: string;
  /** Provider-specific image reference (QEMU: a name under the image directory). */
  image: string;
  cpus: number;
  memoryMiB: number;
  /** The bootstrap script run by the guest at boot. */
  bootstrap: string;
  /** NAME=VALUE pairs for the guest (docs/guest-protocol.md); may hold the one-shot JIT config. */
  guestConfig: Record<string, string>;
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
}

export interface Provider {
  readonly kind: string;
  /**
   * Creates and starts the VM. Idempotent by name: if it already exists, returns it.
   * On failure nothing is left behind. Honours `signal` (aborts and cleans up).
   */
  create(spec: VmSpec, signal?: AbortSignal): Promise<VmInfo>;
  /** Stops and removes the VM and everything it owns. Absent VM → success. */
  destroy(name: string, signal?: AbortSignal): Promise<void>;
  /** Every VM this installation owns (by tag), running or not. */
  list(): Promise<VmInfo[]>;
  /** The VM's console output so far (for `hatchery vm logs`), if the provider keeps one. */
  console?(name: string): Promise<string>;
  /** Releases resources held by the provider object itself (never destroys VMs). */
  close?(): Promise<void>;
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

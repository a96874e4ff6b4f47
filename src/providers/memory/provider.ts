// An in-memory provider: VMs are records in a backend map, nothing boots. It exists for
// scale tests and benchmarks of the control plane (thousands of VMs, no hypervisor), and as the
// smallest complete example of the provider contract. The backend may be shared by several
// instances, like a hypervisor shared by installations: ownership is the instance tag.
import { setTimeout as sleep } from 'node:timers/promises';
import { checkVmName, ProviderError, type Provider, type VmInfo, type VmSpec } from '../provider.ts';

export interface MemoryVm {
  info: VmInfo;
  instanceId: string;
  spec: VmSpec;
}

/** What a "hypervisor" holds: every VM of every instance using it. */
export type MemoryBackend = Map<string, MemoryVm>;

const sharedBackend: MemoryBackend = new Map();

export interface MemoryProviderOptions {
  instanceId: string;
  /** Image names that "exist"; any other fails create (not retryable). */
  images: readonly string[];
  /** How long a create takes (ms): lets tests abort one in flight. */
  createMs?: number;
  backend?: MemoryBackend;
  /** The VMs' guests offer a unix-socket channel (an emulator's). */
  nativeChannel?: 'unix';
  /** Told of each VM created and destroyed (e.g. to start an emulated guest). */
  onCreated?: (vm: MemoryVm) => Promise<Partial<VmInfo> | void> | Partial<VmInfo> | void;
  onDestroyed?: (name: string) => Promise<void> | void;
}

export class MemoryProvider implements Provider {
  readonly kind = 'memory';
  readonly backend: MemoryBackend;

  /** With an emulator of guests, they may speak over a unix socket, like QEMU's. */
  readonly nativeChannel?: 'unix';

  constructor(private readonly opts: MemoryProviderOptions) {
    this.backend = opts.backend ?? sharedBackend;
    if (opts.nativeChannel) this.nativeChannel = opts.nativeChannel;
  }

  private ours(name: string): MemoryVm | null {
    const vm = this.backend.get(name);
    return vm && vm.instanceId === this.opts.instanceId ? vm : null;
  }

  async create(spec: VmSpec, signal?: AbortSignal): Promise<VmInfo> {
    checkVmName(spec.name);
    const existing = this.ours(spec.name);
    if (existing) return existing.info;
    if (this.backend.has(spec.name))
      throw new ProviderError(`VM ${spec.name} belongs to another installation`, false);
    if (!this.opts.images.includes(spec.image))
      throw new ProviderError(`image ${spec.image}: not one of ${this.opts.images.join(', ')}`, false);
    const vm: MemoryVm = {
      info: {
        name: spec.name,
        status: 'running',
        tags: { ...spec.tags },
        createdAt: new Date().toISOString(),
      },
      instanceId: this.opts.instanceId,
      spec,
    };
    // Recorded at once, as a hypervisor would, so that an abort has something to clean up.
    this.backend.set(spec.name, vm);
    try {
      if (this.opts.createMs) await sleep(this.opts.createMs, undefined, { signal });
      signal?.throwIfAborted();
      const extra = await this.opts.onCreated?.(vm);
      if (extra) vm.info = { ...vm.info, ...extra };
      return vm.info;
    } catch (e) {
      await this.destroy(spec.name);
      if (signal?.aborted) throw new ProviderError(`create ${spec.name} aborted`, true);
      throw e instanceof ProviderError
        ? e
        : new ProviderError(`create ${spec.name}: ${(e as Error).message}`, true);
    }
  }

  async destroy(name: string): Promise<void> {
    checkVmName(name);
    const vm = this.backend.get(name);
    if (!vm) return;
    if (vm.instanceId !== this.opts.instanceId)
      throw new ProviderError(`VM ${name} belongs to another installation (${vm.instanceId})`, false);
    // The hook first: if it fails, the VM is still listed and the destroy is retried.
    await this.opts.onDestroyed?.(name);
    this.backend.delete(name);
  }

  async list(): Promise<VmInfo[]> {
    const out: VmInfo[] = [];
    for (const vm of this.backend.values()) if (vm.instanceId === this.opts.instanceId) out.push(vm.info);
    return out;
  }

  async get(name: string): Promise<VmInfo | null> {
    checkVmName(name);
    return this.ours(name)?.info ?? null;
  }
}

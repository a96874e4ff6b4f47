// Vagrant provider: one Vagrant project dir per VM under the state dir, each driving a copy of
// the project's Vagrantfile on vagrant-libvirt (docs/providers.md, docs/adr/2026-12-02-vagrant-
// provider.md). The project dirs are the provider's only state: after a restart list() finds
// every VM of this installation there (ownership: the instance id in .hatchery/meta.json).
// Commands for one VM run one at a time, in the order they were asked for. A VM counts as
// created once its `vagrant up` succeeded (.hatchery/up-done): one whose `up` was cut short by
// the service's death is never adopted, but destroyed and created again (strays.ts).
import { copyFile, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isVmName } from '../../core/naming.ts';
import { PerNameQueue } from '../per-name-queue.ts';
import { checkVmName, ProviderError, type Provider, type VmInfo, type VmSpec } from '../provider.ts';
import { renderGuestConfig } from '../qemu/command-line.ts';
import { buildTinyBox } from './box.ts';
import { machineState, runVagrant, type RunResult } from './cli.ts';
import { keepConsole, keptConsole, readTail } from './consoles.ts';
import { boxSlug, boxVolumeName, domainStates, hasBoxVolume, removeDomain } from './libvirt.ts';
import { PortAllocator, type PortRange } from './ports.ts';
import { endStrays } from './strays.ts';
import {
  projectFiles,
  readMeta,
  vagrantBaseEnv,
  vagrantEnv,
  writeMeta,
  type GuestNetwork,
  type Meta,
} from './project.ts';

export interface VagrantProviderOptions {
  /** Absolute: one project dir per VM, and VAGRANT_HOME (`vagrant.d`). */
  stateDir: string;
  /** Where the `tiny` box is built (next to the QEMU provider's tiny image it extends). */
  imagesDir: string;
  /** Ownership: only VMs whose meta carries this instance id are listed and touched. */
  instanceId: string;
  libvirtUri: string;
  /** The Vagrantfile copied into every project dir. */
  vagrantfile: string;
  sshPorts: PortRange;
  /** The `vagrant` executable (default `vagrant`). */
  vagrant?: string;
  /** The guest's network per pool; default restricted with no forwards. */
  network?: (pool: string) => GuestNetwork;
  timeouts?: { upMs?: number; destroyMs?: number; statusMs?: number; boxAddMs?: number };
  /** How many destroyed VMs' console logs to keep (default 200). */
  keepConsoleLogs?: number;
  /** Progress for the service log. */
  onEvent?: (fields: Record<string, unknown>, message: string) => void;
}

const BOX_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?:\/[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$/;
/** QEMU's refusal when the SSH port was taken after we checked it. */
const PORT_TAKEN = /Could not set up host forwarding rule/;
const PORT_ATTEMPTS = 3;

export class VagrantProvider implements Provider {
  readonly kind = 'vagrant';
  /** `vagrant destroy` runs the teardown trigger of the project's Vagrantfile. */
  readonly destroyRunsTeardown = true;
  private readonly vagrantHome: string;
  private readonly ports: PortAllocator;
  /** One `vagrant` command at a time per VM (per project dir), in the order asked. */
  private readonly serial = new PerNameQueue();
  private tinyBox: Promise<string> | null = null;
  /** Boxes whose libvirt volume exists: `up`s of them may run in parallel. */
  private readonly warmBoxes = new Set<string>();
  private readonly warming = new Map<string, Promise<unknown>>();

  constructor(private readonly opts: VagrantProviderOptions) {
    if (!path.isAbsolute(opts.stateDir))
      throw new Error(`vagrant state_dir must be absolute: ${opts.stateDir}`);
    this.vagrantHome = path.join(opts.stateDir, 'vagrant.d');
    this.ports = new PortAllocator(opts.sshPorts);
  }

  private event(fields: Record<string, unknown>, message: string): void {
    this.opts.onEvent?.(fields, message);
  }

  // -------------------------------------------------------------------------------------------
  // Boxes

  /** Builds and adds the `tiny` box, or checks that a box of that name was added. */
  async prepare(image: string, onProgress?: (message: string) => void): Promise<void> {
    await this.resolveBox(image, onProgress);
  }

  /** The box name for an image: `tiny` is built and added on first use; other names must be added boxes. */
  private async resolveBox(image: string, onProgress?: (message: string) => void): Promise<string> {
    if (image === 'tiny') {
      this.tinyBox ??= this.addTinyBox(onProgress).catch((e: unknown) => {
        this.tinyBox = null; // a later call retries (e.g. after installing a missing package)
        throw e;
      });
      return this.tinyBox;
    }
    if (!BOX_NAME.test(image) || image.includes('..'))
      throw new ProviderError(`invalid box name ${JSON.stringify(image)}`, false);
    if (!(await this.boxAdded(image))) {
      throw new ProviderError(
        `image ${image}: no such box in ${this.vagrantHome} (add it with ` +
          `VAGRANT_HOME=${this.vagrantHome} vagrant box add --name ${image} FILE.box)`,
        false,
      );
    }
    return image;
  }

  /** Where Vagrant keeps the box's versions in this provider's VAGRANT_HOME. */
  private boxDir(box: string): string {
    return path.join(this.vagrantHome, 'boxes', boxSlug(box));
  }

  /** The libvirt volume the box's image goes to (its newest version's), or null if not added. */
  private async boxVolume(box: string): Promise<string | null> {
    const dir = this.boxDir(box);
    const newestFirst = (await readdir(dir).catch(() => [] as string[])).sort((a, b) =>
      b.localeCompare(a, 'en', { numeric: true }),
    );
    for (const version of newestFirst) {
      const image = await stat(path.join(dir, version, 'libvirt', 'box.img')).catch(() => null);
      if (image?.isFile()) return boxVolumeName(box, version, image.mtimeMs);
    }
    return null;
  }

  private async boxAdded(box: string): Promise<boolean> {
    const dir = this.boxDir(box);
    try {
      for (const version of await readdir(dir)) {
        if ((await stat(path.join(dir, version, 'libvirt', 'metadata.json')).catch(() => null))?.isFile())
          return true;
      }
    } catch {
      /* no such box */
    }
    return false;
  }

  private async addTinyBox(onProgress?: (message: string) => void): Promise<string> {
    let box;
    try {
      box = await buildTinyBox({ imagesDir: this.opts.imagesDir, onProgress });
    } catch (e) {
      throw new ProviderError(`image tiny: ${(e as Error).message}`, false);
    }
    if (await this.boxAdded(box.name)) return box.name;
    onProgress?.(`adding the box ${box.name} to ${this.vagrantHome}`);
    await mkdir(this.vagrantHome, { recursive: true, mode: 0o700 });
    await runVagrant(['box', 'add', '--name', box.name, '--provider', 'libvirt', box.file], {
      binary: this.opts.vagrant ?? 'vagrant',
      cwd: this.opts.stateDir,
      // No Vagrantfile: Vagrant would otherwise load the first one it finds above the cwd.
      env: {
        ...vagrantBaseEnv(process.env, this.vagrantHome),
        VAGRANT_VAGRANTFILE: '.hatchery-no-vagrantfile',
      },
      timeoutMs: this.opts.timeouts?.boxAddMs ?? 300_000,
    });
    return box.name;
  }

  /**
   * Runs the first `up` of a box alone: vagrant-libvirt uploads the box volume on first use
   * under an in-process lock only, and a parallel `up` may use a half-uploaded volume.
   */
  private async warmFirst<T>(box: string, up: () => Promise<T>): Promise<T> {
    if (!this.warmBoxes.has(box)) {
      // This very box's volume, not one of an earlier add of the same name (its name differs).
      const volume = await this.boxVolume(box);
      if (volume && (await hasBoxVolume(this.opts.libvirtUri, volume))) this.warmBoxes.add(box);
    }
    while (!this.warmBoxes.has(box)) {
      const pending = this.warming.get(box);
      if (!pending) {
        const first = up().then((r) => {
          this.warmBoxes.add(box);
          return r;
        });
        const settled = first.catch(() => undefined).finally(() => this.warming.delete(box));
        this.warming.set(box, settled);
        return first;
      }
      await pending;
    }
    return up();
  }

  // -------------------------------------------------------------------------------------------
  // Commands

  private vagrant(
    name: string,
    args: string[],
    meta: Meta,
    timeoutMs: number,
    signal?: AbortSignal,
    guestConfig?: string,
  ): Promise<RunResult> {
    const files = projectFiles(this.opts.stateDir, name);
    return runVagrant(args, {
      binary: this.opts.vagrant ?? 'vagrant',
      cwd: files.dir,
      env: vagrantEnv({
        base: process.env,
        vagrantHome: this.vagrantHome,
        libvirtUri: this.opts.libvirtUri,
        meta,
        network: this.opts.network?.(meta.pool) ?? { mode: 'restricted', forwards: [] },
        bootstrap: files.bootstrap,
        guestConfig,
      }),
      timeoutMs,
      signal,
    });
  }

  async create(spec: VmSpec, signal?: AbortSignal): Promise<VmInfo> {
    checkVmName(spec.name);
    return this.serial.run(spec.name, () => this.createNow(spec, signal));
  }

  private async createNow(spec: VmSpec, signal?: AbortSignal): Promise<VmInfo> {
    if (signal?.aborted) throw new ProviderError(`create ${spec.name} aborted`, true);
    const files = projectFiles(this.opts.stateDir, spec.name);
    const existing = await readMeta(files.meta);
    if (existing && existing.instanceId !== this.opts.instanceId)
      throw new ProviderError(
        `VM ${spec.name} belongs to another installation (${existing.instanceId})`,
        false,
      );
    if (existing) {
      const up = await this.upDone(spec.name);
      const state = up ? await this.vagrantState(existing, signal).catch(() => null) : null;
      if (state === 'running') return this.info(existing, 'running');
      // A create interrupted during `vagrant up` (its guest may be running, never provisioned),
      // or a VM that powered off: start over.
      await this.destroyNow(spec.name);
    }

    let guestConfig: string;
    let box: string;
    try {
      guestConfig = renderGuestConfig({ HATCHERY_VM: spec.name, ...spec.guestConfig });
      box = await this.resolveBox(spec.image);
    } catch (e) {
      throw e instanceof ProviderError
        ? e
        : new ProviderError(`create ${spec.name}: ${(e as Error).message}`, false);
    }

    await mkdir(this.opts.stateDir, { recursive: true, mode: 0o700 });
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      const port = await this.ports.take(await this.usedPorts());
      const meta: Meta = {
        name: spec.name,
        instanceId: this.opts.instanceId,
        pool: spec.pool,
        image: spec.image,
        box,
        cpus: spec.cpus,
        memoryMiB: spec.memoryMiB,
        sshPort: port,
        tags: { ...spec.tags },
        createdAt: new Date().toISOString(),
      };
      try {
        await mkdir(files.state, { recursive: true, mode: 0o700 });
        await writeMeta(files.meta, meta);
        await copyFile(this.opts.vagrantfile, files.vagrantfile);
        await writeFile(files.bootstrap, spec.bootstrap, { mode: 0o600 });
        this.event({ vm: spec.name, box, sshPort: port }, 'vagrant up');
        await this.warmFirst(box, () =>
          this.vagrant(
            spec.name,
            ['up', '--provider', 'libvirt'],
            meta,
            this.opts.timeouts?.upMs ?? 600_000,
            signal,
            guestConfig,
          ),
        );
        // The guest has its config; the one-shot JIT config it may hold has no business on disk.
        await rm(files.guestConfig, { force: true });
        await writeFile(files.upDone, `${new Date().toISOString()}\n`, { mode: 0o600 });
        this.event({ vm: spec.name, ms: Date.now() - started }, 'vagrant up done');
        return this.info(meta, 'running');
      } catch (e) {
        const err =
          e instanceof ProviderError
            ? e
            : new ProviderError(`create ${spec.name}: ${(e as Error).message}`, true);
        await this.destroyNow(spec.name).catch((cleanup: Error) =>
          this.event({ vm: spec.name, err: cleanup.message }, 'cleanup after a failed vagrant up failed'),
        );
        if (signal?.aborted) throw new ProviderError(`create ${spec.name} aborted`, true);
        if (PORT_TAKEN.test(err.message) && attempt < PORT_ATTEMPTS) continue; // lost a race for the port
        throw new ProviderError(`create ${spec.name}: ${err.message}`, err.retryable);
      } finally {
        this.ports.release(port);
      }
    }
  }

  /** `vagrant status` of the VM's project: `running`, `shutoff`, `not_created` … */
  private async vagrantState(meta: Meta, signal?: AbortSignal): Promise<string | null> {
    const result = await this.vagrant(
      meta.name,
      ['status'],
      meta,
      this.opts.timeouts?.statusMs ?? 120_000,
      signal,
    );
    return machineState(result.records, meta.name);
  }

  async destroy(name: string, signal?: AbortSignal): Promise<void> {
    checkVmName(name);
    return this.serial.run(name, () => this.destroyNow(name, signal));
  }

  /**
   * `vagrant destroy -f` (its trigger runs the guest's teardown hook), then whatever an
   * interrupted `up` left before Vagrant recorded the machine, then the project dir. A failure
   * keeps the project dir, so that a retry finds the VM again.
   */
  private async destroyNow(name: string, signal?: AbortSignal): Promise<void> {
    const files = projectFiles(this.opts.stateDir, name);
    const meta = await readMeta(files.meta);
    if (!meta) {
      // No meta: nothing of ours, or the first steps of a create (a dir without meta).
      await rm(files.dir, { recursive: true, force: true });
      return;
    }
    if (meta.instanceId !== this.opts.instanceId)
      throw new ProviderError(`VM ${name} belongs to another installation (${meta.instanceId})`, false);
    // A `vagrant` command a dead service left running here holds the machine's lock, and an
    // `up` would go on provisioning the guest: none of ours runs now (serial), so it is a stray.
    const strays = await endStrays(files.dir);
    if (strays.length > 0)
      this.event({ vm: name, pids: strays }, 'ended vagrant processes a dead service left');
    if (await stat(files.machineId).catch(() => null)) {
      await this.vagrant(name, ['destroy', '-f'], meta, this.opts.timeouts?.destroyMs ?? 300_000, signal);
    }
    await removeDomain(this.opts.libvirtUri, name, signal);
    await keepConsole(this.opts.stateDir, name, files.console, this.opts.keepConsoleLogs ?? 200);
    await rm(files.dir, { recursive: true, force: true });
  }

  /**
   * `running` when the domain runs and its `vagrant up` succeeded; a VM whose `up` never
   * finished counts as stopped: it exists, but was never handed over, so nothing may adopt it.
   */
  async list(): Promise<VmInfo[]> {
    const metas = await this.ourMetas();
    if (metas.length === 0) return [];
    const domains = await domainStates(this.opts.libvirtUri);
    return Promise.all(metas.map(async (m) => this.info(m, await this.status(m.name, domains))));
  }

  async get(name: string): Promise<VmInfo | null> {
    checkVmName(name);
    const meta = await readMeta(projectFiles(this.opts.stateDir, name).meta);
    if (!meta || meta.instanceId !== this.opts.instanceId) return null;
    return this.info(meta, await this.status(name, await domainStates(this.opts.libvirtUri)));
  }

  private async status(name: string, domains: Map<string, string>): Promise<VmInfo['status']> {
    return domains.get(name) === 'running' && (await this.upDone(name)) ? 'running' : 'stopped';
  }

  private async upDone(name: string): Promise<boolean> {
    return (await stat(projectFiles(this.opts.stateDir, name).upDone).catch(() => null)) !== null;
  }

  async console(name: string): Promise<string | null> {
    checkVmName(name);
    return readTail([projectFiles(this.opts.stateDir, name).console, keptConsole(this.opts.stateDir, name)]);
  }

  private info(meta: Meta, status: VmInfo['status']): VmInfo {
    // No channel yet: the service's HTTP guest channel reaches it (the guest calls the service).
    return { name: meta.name, status, tags: meta.tags, createdAt: meta.createdAt };
  }

  /** Metas of every project dir (any installation sharing the state dir). */
  private async allMetas(): Promise<Meta[]> {
    let names: string[];
    try {
      names = await readdir(this.opts.stateDir);
    } catch {
      return [];
    }
    const metas = await Promise.all(
      names.filter(isVmName).map((n) => readMeta(projectFiles(this.opts.stateDir, n).meta)),
    );
    return metas.filter((m): m is Meta => m !== null);
  }

  private async ourMetas(): Promise<Meta[]> {
    return (await this.allMetas()).filter((m) => m.instanceId === this.opts.instanceId);
  }

  private async usedPorts(): Promise<Set<number>> {
    return new Set((await this.allMetas()).map((m) => m.sshPort));
  }
}

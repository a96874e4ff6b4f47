// QEMU provider: one daemonized qemu-system-x86_64 per VM, its files in <stateDir>/<name>/.
// The VM's directory is the provider's only state, so after a service restart list() finds
// (adopts) every VM it started: meta.json for identity and tags, qemu.pid + the QMP socket for
// control. Processes are daemonized so that they outlive a crashed service.
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { isVmName } from '../../core/naming.ts';
import { checkVmName, ProviderError, type Provider, type VmInfo, type VmSpec } from '../provider.ts';
import {
  qemuArgs,
  renderGuestConfig,
  vmFiles,
  type BootImage,
  type NetworkSpec,
  qemuGuestConfig,
} from './command-line.ts';
import type { ImageResolver } from './images/resolve.ts';
import { probeKvm, type KvmProbe } from './kvm.ts';
import { connectQmp } from './qmp.ts';
import { isOurProcess, killAllNaming, signal, waitGone } from './process.ts';

const run = promisify(execFile);

/** A loopback port free right now, for a VM's SSH forward (a clash fails the create: retried). */
async function freeLoopbackPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface QemuProviderOptions {
  stateDir: string;
  /** Ownership: only VMs whose meta carries this instance id are listed and touched. */
  instanceId: string;
  binary?: string;
  accel?: 'auto' | 'kvm' | 'tcg';
  /** Resolves an image name to boot files (see ./images). */
  resolveImage: ImageResolver;
  /** Network per pool; default restricted with no forwards. */
  network?: (pool: string) => NetworkSpec;
  /** argv prefix of the per-connection forwarder; host address and port are appended. */
  forwardCommand?: string[];
  /** How many destroyed VMs' console logs to keep (default 200; 0: none). */
  keepConsoleLogs?: number;
  /** Told the outcome of the KVM probe (`accel = auto`), for the log. */
  onProbe?: (probe: KvmProbe) => void;
}

interface Meta {
  name: string;
  instanceId: string;
  pool: string;
  image: string;
  tags: Record<string, string>;
  createdAt: string;
  /** bootstrap = "ssh": the host port forwarded to the guest's sshd. */
  sshPort?: number;
}

const UNIX_PATH_MAX = 107;
const CONSOLE_DIR = '.console';
const CONSOLE_TAIL = 256 * 1024;

/**
 * A VM's console output (its last 256 KiB): the live VM's, else the log kept when it was
 * destroyed; null if there is neither. `name` must be validated (isVmName) by the caller.
 */
export async function readConsole(stateDir: string, name: string): Promise<string | null> {
  for (const file of [vmFiles(stateDir, name).console, path.join(stateDir, CONSOLE_DIR, `${name}.log`)]) {
    try {
      const s = await stat(file);
      const text = await readFile(file, 'utf8');
      return s.size > CONSOLE_TAIL ? text.slice(-CONSOLE_TAIL) : text;
    } catch {
      /* try the next place */
    }
  }
  return null;
}

export class QemuProvider implements Provider {
  readonly kind = 'qemu';
  readonly nativeChannel = 'unix';
  readonly sshBootstrap = true;
  private readonly binary: string;
  private accel: Promise<'kvm' | 'tcg'> | undefined;

  constructor(private readonly opts: QemuProviderOptions) {
    this.binary = opts.binary ?? 'qemu-system-x86_64';
    if (!path.isAbsolute(opts.stateDir)) throw new Error(`qemu state_dir must be absolute: ${opts.stateDir}`);
  }

  /**
   * The accelerator in use; `auto` probes KVM once with a short test boot. The probe's verdict
   * is kept in the state dir for the host's current boot (a failed probe costs ~4 s, and a
   * restarted service must not pay it again before its first VM).
   */
  async accelerator(kernelForProbe?: string): Promise<'kvm' | 'tcg'> {
    const want = this.opts.accel ?? 'auto';
    if (want !== 'auto') return want;
    if (!kernelForProbe) return this.accel ?? 'tcg';
    this.accel ??= this.probeOnce(kernelForProbe).catch(() => 'tcg' as const);
    return this.accel;
  }

  private async probeOnce(kernel: string): Promise<'kvm' | 'tcg'> {
    const cacheFile = path.join(this.opts.stateDir, '.kvm-probe.json');
    const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim();
    const key = { bootId, binary: this.binary };
    try {
      const cached = JSON.parse(await readFile(cacheFile, 'utf8')) as typeof key & { usable: boolean };
      if (bootId && cached.bootId === bootId && cached.binary === this.binary)
        return cached.usable ? 'kvm' : 'tcg';
    } catch {
      /* no verdict yet */
    }
    const probe = await probeKvm(this.binary, kernel);
    this.opts.onProbe?.(probe);
    await mkdir(this.opts.stateDir, { recursive: true, mode: 0o700 });
    await writeFile(cacheFile, JSON.stringify({ ...key, usable: probe.usable, reason: probe.reason }));
    return probe.usable ? 'kvm' : 'tcg';
  }

  /** Builds (or finds) the image and runs the KVM probe now, not in the first create. */
  async prepare(image: string, onProgress?: (message: string) => void): Promise<void> {
    const boot = await this.opts.resolveImage(image, onProgress);
    if (boot.kernel) await this.accelerator(boot.kernel);
  }

  async get(name: string): Promise<VmInfo | null> {
    checkVmName(name);
    return this.inspect(name);
  }

  async create(spec: VmSpec, signal_?: AbortSignal): Promise<VmInfo> {
    checkVmName(spec.name);
    const files = vmFiles(this.opts.stateDir, spec.name);
    if (files.channel.length > UNIX_PATH_MAX || files.qmp.length > UNIX_PATH_MAX) {
      throw new ProviderError(
        `qemu state_dir ${this.opts.stateDir} is too long for unix socket paths`,
        false,
      );
    }
    const existing = await this.inspect(spec.name);
    if (existing?.status === 'running') return existing;
    // A leftover of an interrupted create (or nothing): start over. destroy() refuses to touch
    // another installation's VM of the same name.
    await this.destroy(spec.name);

    let image: BootImage;
    try {
      image = await this.opts.resolveImage(spec.image);
    } catch (e) {
      throw new ProviderError(`image ${spec.image}: ${(e as Error).message}`, false);
    }
    const accel = await this.accelerator(image.kernel);
    const net = this.opts.network?.(spec.pool) ?? { mode: 'restricted', forwards: [] };
    const guestConfig = qemuGuestConfig(spec, image);
    const sshPort = spec.ssh ? await freeLoopbackPort() : undefined;
    const meta: Meta = {
      name: spec.name,
      instanceId: this.opts.instanceId,
      pool: spec.pool,
      image: spec.image,
      tags: { ...spec.tags },
      createdAt: new Date().toISOString(),
      ...(sshPort !== undefined ? { sshPort } : {}),
    };

    try {
      await mkdir(this.opts.stateDir, { recursive: true, mode: 0o700 });
      await mkdir(files.dir, { mode: 0o700 });
      await writeFile(path.join(files.dir, 'meta.json'), JSON.stringify(meta, null, 2));
      if (spec.ssh) {
        // Nothing else to hand over: the service copies the bootstrap over SSH.
        await writeFile(files.authorizedKeys, `${spec.ssh.authorizedKey}\n`, { mode: 0o600 });
      } else {
        // The config may hold the one-shot JIT config: owner-only, and deleted once QEMU has read it.
        await writeFile(files.config, renderGuestConfig(guestConfig), { mode: 0o600 });
        await writeFile(files.bootstrap, spec.bootstrap, { mode: 0o600 });
      }
      if (image.disk) {
        await run(
          'qemu-img',
          ['create', '-q', '-f', 'qcow2', '-b', path.resolve(image.disk), '-F', 'qcow2', files.overlay],
          {
            signal: signal_,
          },
        );
      }
      const args = qemuArgs(spec, image, files, net, {
        accel,
        forwardCommand: this.opts.forwardCommand ?? ['busybox', 'nc'],
        ...(sshPort !== undefined ? { sshPort } : {}),
      });
      // -daemonize: the first process exits once the VM is set up (0) or failed to start (≠ 0).
      await run(this.binary, args, { signal: signal_, timeout: 60_000 });
      await rm(files.config, { force: true });
      const info = await this.inspect(spec.name);
      if (info?.status !== 'running') throw new Error('QEMU started but is not running (see console.log)');
      // Aborted after all: the caller will not record this VM, so it must not stay.
      signal_?.throwIfAborted();
      return info;
    } catch (e) {
      const err = e as Error & { stderr?: string };
      // An abort or a timeout only SIGTERMs the first QEMU process, and returns before it is gone;
      // the VM process it forked is not in qemu.pid until it writes it. Kill every process that
      // names this VM's directory before the directory goes, or one could outlive it unseen.
      const programs = [path.basename(this.binary), 'qemu-img'];
      const gone = await killAllNaming(`${files.dir}/`, programs, 5000);
      await this.destroy(spec.name).catch(() => undefined);
      if (!gone) throw new ProviderError(`create ${spec.name} failed and its QEMU does not exit`, true);
      if (signal_?.aborted) throw new ProviderError(`create ${spec.name} aborted`, true);
      const detail =
        (err.stderr ?? '').trim().split('\n').filter(Boolean).slice(-2).join('; ') || err.message;
      throw new ProviderError(`create ${spec.name}: ${detail}`, true);
    }
  }

  async destroy(name: string): Promise<void> {
    checkVmName(name);
    const files = vmFiles(this.opts.stateDir, name);
    const meta = await this.readMeta(name);
    if (meta && meta.instanceId !== this.opts.instanceId) {
      throw new ProviderError(`VM ${name} belongs to another installation (${meta.instanceId})`, false);
    }
    const pid = await this.readPid(name);
    if (pid && (await isOurProcess(pid, files.dir))) {
      // Ask QEMU to quit (immediate, clean), then insist.
      try {
        const qmp = await connectQmp(files.qmp, 2000);
        await qmp.execute('quit').catch(() => undefined);
        qmp.close();
      } catch {
        /* QMP unreachable: fall through to signals */
      }
      if (!(await waitGone(pid, files.dir, 3000))) {
        signal(pid, 'SIGKILL');
        if (!(await waitGone(pid, files.dir, 5000))) {
          throw new ProviderError(`VM ${name}: QEMU (pid ${pid}) does not exit`, true);
        }
      }
    }
    await this.keepConsole(name);
    await rm(files.dir, { recursive: true, force: true });
  }

  /**
   * Keeps the console log of a destroyed VM (the first thing to read when one failed) in
   * `<state_dir>/.console/`, the newest `keepConsoleLogs` of them.
   */
  private async keepConsole(name: string): Promise<void> {
    const keep = this.opts.keepConsoleLogs ?? 200;
    if (keep <= 0) return;
    const dir = path.join(this.opts.stateDir, CONSOLE_DIR);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await rename(vmFiles(this.opts.stateDir, name).console, path.join(dir, `${name}.log`));
    } catch {
      return; // no console log (the VM never started): nothing to keep
    }
    const logs = await Promise.all(
      (await readdir(dir)).map(async (f) => ({
        f,
        at: (await stat(path.join(dir, f)).catch(() => null))?.mtimeMs ?? 0,
      })),
    );
    logs.sort((a, b) => b.at - a.at);
    for (const old of logs.slice(keep)) await rm(path.join(dir, old.f), { force: true });
  }

  async list(): Promise<VmInfo[]> {
    let names: string[];
    try {
      names = await readdir(this.opts.stateDir);
    } catch {
      return [];
    }
    const infos = await Promise.all(names.filter(isVmName).map((n) => this.inspect(n)));
    return infos.filter((i): i is VmInfo => i !== null);
  }

  async console(name: string): Promise<string | null> {
    checkVmName(name);
    return readConsole(this.opts.stateDir, name);
  }

  /** Our VM by name, or null if absent or another installation's. */
  private async inspect(name: string): Promise<VmInfo | null> {
    const meta = await this.readMeta(name);
    if (!meta || meta.instanceId !== this.opts.instanceId) return null;
    const files = vmFiles(this.opts.stateDir, name);
    const pid = await this.readPid(name);
    const running = pid !== null && (await isOurProcess(pid, files.dir));
    return {
      name,
      status: running ? 'running' : 'stopped',
      tags: meta.tags,
      createdAt: meta.createdAt,
      ...(running ? { channel: { kind: 'unix' as const, path: files.channel } } : {}),
      ...(running && meta.sshPort !== undefined
        ? { ssh: { host: '127.0.0.1', port: meta.sshPort, user: 'root' } }
        : {}),
    };
  }

  private async readMeta(name: string): Promise<Meta | null> {
    try {
      return JSON.parse(
        await readFile(path.join(vmFiles(this.opts.stateDir, name).dir, 'meta.json'), 'utf8'),
      ) as Meta;
    } catch {
      return null;
    }
  }

  private async readPid(name: string): Promise<number | null> {
    try {
      const pid = Number((await readFile(vmFiles(this.opts.stateDir, name).pidfile, 'utf8')).trim());
      return Number.isInteger(pid) && pid > 1 ? pid : null;
    } catch {
      return null;
    }
  }
}

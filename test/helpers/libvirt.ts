// A private libvirtd for one test file (scripts/libvirt.sh: its own mount namespace, every file
// under one directory), what runs in it, and what the vagrant provider needs on top of it: a
// `[providers.vagrant]` section for the Stack, the traces a Vagrant VM can leave, and a
// `vagrant destroy` that fails once. Shared by the vagrant provider's integration test and the
// end-to-end tests on Vagrant pools.
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { processesIn } from '../../src/providers/vagrant/strays.ts';
import { IMAGES_DIR } from './images.ts';
import { killAll } from './processes.ts';

const LIBVIRT_SH = fileURLToPath(new URL('../../scripts/libvirt.sh', import.meta.url));

const pids = (): number[] =>
  readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map(Number);

const cmdline = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
};

/** What stop() found: each list must be empty for a test file that cleaned up after itself. */
export interface LibvirtdLeftovers {
  /** Domains still defined when the test file ended. */
  domains: string[];
  /** Processes (libvirtd, QEMU, helpers) still in the namespace after `libvirt.sh stop` (then killed). */
  survivors: number[];
  /** libvirtd itself, if it outlived stop. */
  libvirtd: number[];
}

export class PrivateLibvirtd {
  /** The URI of this libvirtd (for virsh, the provider's `libvirt_uri`). */
  readonly uri: string;
  /** Its mount namespace (`mnt:[…]`): every process it starts, QEMU included, is in it. */
  private readonly ns: string;
  private readonly pid: number;

  private constructor(readonly dir: string) {
    this.uri = execFileSync(LIBVIRT_SH, ['start', dir], { encoding: 'utf8' }).trim();
    this.ns = readFileSync(path.join(dir, 'ns.mnt'), 'utf8').trim();
    this.pid = Number(readFileSync(path.join(dir, 'ns.pid'), 'utf8'));
  }

  /** Starts a libvirtd whose files all live under `dir` (created). */
  static start(dir: string): PrivateLibvirtd {
    return new PrivateLibvirtd(dir);
  }

  static shellcheck(): void {
    execFileSync('shellcheck', ['-s', 'sh', LIBVIRT_SH]); // throws with its findings
  }

  virsh(...args: string[]): string {
    return execFileSync('virsh', ['-q', '-c', this.uri, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'], // its complaints go into the error, not the test's output
    });
  }

  private running(): boolean {
    return existsSync(path.join(this.dir, 'run', 'libvirt-sock'));
  }

  /** Every domain it has, running or not. */
  domains(): string[] {
    if (!this.running()) return [];
    return this.virsh('list', '--all', '--name')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  }

  /** The volumes of its `default` pool (box images, VM disks `<name>.img`). */
  volumes(): string[] {
    if (!this.running()) return [];
    let out: string;
    try {
      out = this.virsh('vol-list', 'default');
    } catch {
      return []; // no pool yet: no Vagrant VM was ever created
    }
    return out
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0] ?? '')
      .filter(Boolean);
  }

  /** Processes in its mount namespace: never another test file's. */
  members(): number[] {
    return pids().filter((p) => {
      try {
        return readlinkSync(`/proc/${p}/ns/mnt`) === this.ns;
      } catch {
        return false;
      }
    });
  }

  /** Its QEMU processes; with `name`, only that VM's (other test files name their VMs alike). */
  qemu(name?: string): number[] {
    return this.members().filter((p) => {
      const args = cmdline(p).split('\0');
      return (
        args[0]?.startsWith('qemu-system') === true &&
        (name === undefined || args.some((a) => a.startsWith(`guest=${name},`)))
      );
    });
  }

  /**
   * `libvirt.sh stop` (destroys every domain, stops libvirtd, ends what is left in its
   * namespace), then kills whatever survived. Returns what was left, for the caller to assert on.
   */
  stop(): LibvirtdLeftovers {
    const domains = this.domains();
    execFileSync(LIBVIRT_SH, ['stop', this.dir]);
    const survivors = this.members();
    killAll(survivors); // only processes of our namespace
    return { domains, survivors, libvirtd: existsSync(`/proc/${this.pid}`) ? [this.pid] : [] };
  }
}

// ---------------------------------------------------------------------------------------------
// Vagrant on it

/** SSH ports for the e2e tests' Vagrant VMs (the integration test uses 42200-42299). */
export const E2E_SSH_PORTS = '42300-42399';

/**
 * A `[providers.<name>]` section of kind vagrant on this libvirtd. `stateDir` may be relative to
 * the config file's directory (a Stack's own directory): the Stack then removes it.
 */
export function vagrantSection(
  libvirtd: PrivateLibvirtd,
  stateDir: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    kind: 'vagrant',
    state_dir: stateDir,
    images_dir: IMAGES_DIR,
    libvirt_uri: libvirtd.uri,
    ssh_ports: E2E_SSH_PORTS,
    ...extra,
  };
}

/** VM names among a state dir's entries (not `vagrant.d`, `.console`). */
const vmEntries = (stateDir: string): string[] =>
  existsSync(stateDir) ? readdirSync(stateDir).filter((d) => d.startsWith('hatchery-')) : [];

/**
 * Everything Vagrant VMs of a vagrant provider with state dir `stateDir` can leave: project
 * dirs, libvirt domains and disk volumes, QEMU processes, vagrant processes. For the Stack's
 * `leftovers` (all of the libvirtd's domains count: one test file, one libvirtd).
 */
export function vagrantLeftovers(libvirtd: PrivateLibvirtd, stateDir: string): Record<string, unknown[]> {
  return {
    vagrantProjects: vmEntries(stateDir),
    domains: libvirtd.domains(),
    diskVolumes: libvirtd.volumes().filter((v) => !v.includes('_vagrant_box_image_')),
    libvirtQemu: libvirtd.qemu(),
    vagrantProcesses: processesIn(stateDir),
  };
}

/** The marks the Vagrantfile's teardown trigger writes on the VM's serial console. */
export function teardownMarks(consoleLog: string, name: string): number {
  return consoleLog.split('\n').filter((l) => l.includes(`HATCHERY_TEARDOWN ${name}`)).length;
}

const FAIL_ONCE = 'fail-destroy-once';

/**
 * Makes the next `vagrant destroy` of the VM in `projectDir` fail, after its teardown trigger
 * ran: a second before-destroy trigger, appended to that VM's copy of the Vagrantfile, raises
 * while a marker file exists and removes it. Returns the marker's path.
 */
export function failNextDestroy(projectDir: string): string {
  const marker = path.join(projectDir, '.hatchery', FAIL_ONCE);
  writeFileSync(marker, '');
  appendFileSync(
    path.join(projectDir, 'Vagrantfile'),
    `
Vagrant.configure("2") do |config|
  config.trigger.before :destroy do |t|
    t.name = "test: fail once"
    t.ruby do |_env, _machine|
      marker = File.join(__dir__, ".hatchery", "${FAIL_ONCE}")
      if File.exist?(marker)
        File.delete(marker)
        raise "injected destroy failure"
      end
    end
  end
end
`,
  );
  return marker;
}

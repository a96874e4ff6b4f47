// One Vagrant project dir per VM, <state_dir>/<name>/: a copy of the project's Vagrantfile, and
// in .hatchery/ our meta (ownership: the instance id; tags, pool, SSH port), the bootstrap, and
// what the Vagrantfile and QEMU write (settings.json, guest-config, console.log). The dir is the
// provider's only state: a restarted service finds its VMs there. Pure apart from meta I/O.
import { readFile, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';

export interface ProjectFiles {
  dir: string;
  vagrantfile: string;
  state: string;
  meta: string;
  bootstrap: string;
  guestConfig: string;
  console: string;
  /**
   * Written by the provider once `vagrant up` succeeded: the VM booted and was provisioned.
   * A project without it is a create that never finished (the service died during `up`).
   */
  upDone: string;
  /** Written by vagrant-libvirt once the domain exists: its UUID. */
  machineId: string;
}

export function projectFiles(stateDir: string, name: string): ProjectFiles {
  const dir = path.join(stateDir, name);
  const state = path.join(dir, '.hatchery');
  return {
    dir,
    vagrantfile: path.join(dir, 'Vagrantfile'),
    state,
    meta: path.join(state, 'meta.json'),
    bootstrap: path.join(state, 'bootstrap.sh'),
    guestConfig: path.join(state, 'guest-config'),
    console: path.join(state, 'console.log'),
    upDone: path.join(state, 'up-done'),
    machineId: path.join(dir, '.vagrant', 'machines', name, 'libvirt', 'id'),
  };
}

export interface Meta {
  name: string;
  instanceId: string;
  pool: string;
  image: string;
  box: string;
  cpus: number;
  memoryMiB: number;
  sshPort: number;
  tags: Record<string, string>;
  createdAt: string;
}

export async function readMeta(file: string): Promise<Meta | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Meta;
  } catch {
    return null;
  }
}

export async function writeMeta(file: string, meta: Meta): Promise<void> {
  await writeFile(`${file}.tmp`, `${JSON.stringify(meta, null, 2)}\n`, { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

export interface GuestNetwork {
  mode: 'restricted' | 'open';
  forwards: { guest: string; host: string }[];
}

/**
 * The environment of every `vagrant` command: the inherited one without any HATCHERY_* variable
 * (the service's own settings and secrets stay out of Vagrant and the Vagrantfile), a private
 * VAGRANT_HOME, and no network calls home (version checks, box updates).
 */
export function vagrantBaseEnv(base: NodeJS.ProcessEnv, vagrantHome: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) if (!k.startsWith('HATCHERY_')) env[k] = v;
  return {
    ...env,
    VAGRANT_HOME: vagrantHome,
    VAGRANT_CHECKPOINT_DISABLE: '1',
    VAGRANT_BOX_UPDATE_CHECK_DISABLE: '1',
    VAGRANT_NO_COLOR: '1',
    VAGRANT_DEFAULT_PROVIDER: 'libvirt',
  };
}

/**
 * The environment of a `vagrant` command for one VM: the base one plus the Vagrantfile's inputs;
 * the guest config only for `up` (it may hold the one-shot JIT config).
 */
export function vagrantEnv(opts: {
  base: NodeJS.ProcessEnv;
  vagrantHome: string;
  libvirtUri: string;
  meta: Meta;
  network: GuestNetwork;
  bootstrap: string;
  guestConfig?: string;
}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...vagrantBaseEnv(opts.base, opts.vagrantHome),
    HATCHERY_VM_NAME: opts.meta.name,
    HATCHERY_BOX: opts.meta.box,
    HATCHERY_CPUS: String(opts.meta.cpus),
    HATCHERY_MEMORY: String(opts.meta.memoryMiB),
    HATCHERY_SSH_PORT: String(opts.meta.sshPort),
    HATCHERY_LIBVIRT_URI: opts.libvirtUri,
    HATCHERY_NETWORK: opts.network.mode,
    HATCHERY_FORWARDS: opts.network.forwards.map((f) => `${f.guest}=${f.host}`).join(' '),
    HATCHERY_BOOTSTRAP: opts.bootstrap,
  };
  if (opts.guestConfig !== undefined) env.HATCHERY_GUEST_CONFIG = opts.guestConfig;
  return env;
}

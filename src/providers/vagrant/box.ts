// The vagrant provider's own box, `tiny`: the QEMU provider's tiny guest (Debian kernel as a PVH
// vmlinux, busybox, virtio modules; src/providers/qemu/images/tiny.ts) plus an initramfs layer
// with dropbear (and the libraries `ldd` names), OpenSSH's scp (Vagrant uploads files with
// `scp -t`), a `sudo` shim and an init that brings up the slirp network and sshd. All from
// Debian packages (dropbear-bin, openssh-client), no downloads. Booted by kernel + initrd, so
// box.img is only the empty disk a libvirt box must have. Root logs in with a key pair made at
// build time (kept in the box, mode 0600).
//
// Content-addressed like the tiny image: <imagesDir>/vagrant-tiny-<hash>/hatchery.box, the hash
// over the tiny image's hash and every file added; built in a temp dir renamed into place.
import { execFile } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { TINY_APPEND } from '../qemu/images/resolve.ts';
import { busyboxInit, layerEntries, withLibraries, type CpioEntry } from '../qemu/images/layer.ts';
import { buildTinyImage, cpioNewc, type TinyImageSources } from '../qemu/images/tiny.ts';

const exec = promisify(execFile);
const gzipAsync = promisify(gzip);

export const BOX_BUILDER_VERSION = 'hatchery-vagrant-tiny/1';
const BOX_FILE = 'hatchery.box';
const MANIFEST = 'manifest.json';

export interface BoxSources extends TinyImageSources {
  dropbear?: string;
  scp?: string;
}

export interface TinyBox {
  /** The box name to add and use: `hatchery-tiny-<hash>`. */
  name: string;
  file: string;
  hash: string;
}

/** The guest's /init: mounts, modules, then busybox init (reaps orphans, runs the rc below). */
export function boxInit(): string {
  return busyboxInit(
    "Hatchery's vagrant box (src/providers/vagrant/box.ts; part of the box hash)",
    'hatchery-box',
  );
}

/** Run once by busybox init: slirp's fixed addresses (no DHCP round trip), then sshd. */
export function boxRc(): string {
  return `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
echo 'nameserver 10.0.2.3' >/etc/resolv.conf
mkdir -p /etc/dropbear
# -R: host keys made on first use; -s: keys only.
dropbear -R -s -p 22 -P /run/dropbear.pid
read -r up _ </proc/uptime
echo "hatchery-box: sshd started (up $up s)"
`;
}

/** Vagrant runs its commands through sudo; root needs none: drop sudo's options, run the rest. */
const SUDO_SHIM = `#!/bin/sh
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    -u | -g | -p | -C) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
exec "$@"
`;

export function boxVagrantfile(kernel: string): string {
  return `# The box's own settings (src/providers/vagrant/box.ts).
Vagrant.configure("2") do |config|
  config.ssh.username = "root"
  config.ssh.private_key_path = File.join(__dir__, "vagrant_key")
  config.ssh.insert_key = false
  config.ssh.shell = "sh" # busybox: no bash
  config.vm.guest = :linux # skips guest detection (~25 SSH round trips)
  config.vm.provider :libvirt do |lv|
    lv.kernel = File.join(__dir__, "${kernel}")
    lv.initrd = File.join(__dir__, "initrd.gz")
    lv.cmd_line = "${TINY_APPEND}"
  end
end
`;
}

interface Inputs {
  tiny: { hash: string; kernel: string; initrd: string };
  entries: CpioEntry[];
  hash: string;
}

async function gatherInputs(imagesDir: string, sources: BoxSources, onProgress?: (m: string) => void) {
  const tiny = await buildTinyImage({ imagesDir, sources, onProgress });
  const dropbear = sources.dropbear ?? '/usr/sbin/dropbear';
  const scp = sources.scp ?? '/usr/bin/scp';
  const files = await withLibraries([
    { from: dropbear, at: 'usr/sbin/dropbear', pkg: 'dropbear-bin' },
    { from: scp, at: 'usr/bin/scp', pkg: 'openssh-client' },
  ]);
  const text = (at: string, body: string, mode = 0o644) => files.push({ at, data: Buffer.from(body), mode });
  text('init', boxInit(), 0o755);
  text('etc/hatchery-box.rc', boxRc(), 0o755);
  text('etc/inittab', '::sysinit:/etc/hatchery-box.rc\n::shutdown:/bin/sync\n');
  text('etc/shells', '/bin/sh\n');
  text('usr/bin/sudo', SUDO_SHIM, 0o755);

  const entries = layerEntries(files, ['root', 'root/.ssh', 'etc/dropbear'], (d) => d.startsWith('root'));

  const h = createHash('sha256');
  h.update(`${BOX_BUILDER_VERSION}\0tiny ${tiny.hash}\0${boxVagrantfile(path.basename(tiny.kernel))}\0`);
  for (const e of [...entries].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    h.update(`${e.name}\0${e.mode}\0`);
    if (e.data) h.update(createHash('sha256').update(e.data).digest('hex'));
  }
  const inputs: Inputs = { tiny, entries, hash: h.digest('hex').slice(0, 16) };
  return inputs;
}

async function isComplete(dir: string, hash: string): Promise<boolean> {
  try {
    const m = JSON.parse(await readFile(path.join(dir, MANIFEST), 'utf8')) as { hash: string; size: number };
    return m.hash === hash && (await stat(path.join(dir, BOX_FILE))).size === m.size;
  } catch {
    return false;
  }
}

/** Builds (or finds) the `tiny` box; returns its name and file. */
export async function buildTinyBox(opts: {
  imagesDir: string;
  sources?: BoxSources;
  onProgress?: (message: string) => void;
}): Promise<TinyBox> {
  const progress = opts.onProgress ?? (() => undefined);
  const imagesDir = path.resolve(opts.imagesDir);
  const inputs = await gatherInputs(imagesDir, opts.sources ?? {}, opts.onProgress);
  const name = `hatchery-tiny-${inputs.hash}`;
  const dir = path.join(imagesDir, `vagrant-tiny-${inputs.hash}`);
  const box: TinyBox = { name, file: path.join(dir, BOX_FILE), hash: inputs.hash };
  if (await isComplete(dir, inputs.hash)) return box;

  const started = Date.now();
  progress(`building the vagrant box ${name} in ${imagesDir}`);
  const tmp = path.join(
    imagesDir,
    `.tmp-vagrant-tiny-${inputs.hash}-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
  await mkdir(tmp, { recursive: true });
  try {
    const work = path.join(tmp, 'work');
    await mkdir(work, { mode: 0o700 });
    await exec('ssh-keygen', [
      '-q',
      '-t',
      'ed25519',
      '-N',
      '',
      '-C',
      name,
      '-f',
      path.join(work, 'vagrant_key'),
    ]);
    const pub = await readFile(path.join(work, 'vagrant_key.pub'));
    const layer = cpioNewc([
      ...inputs.entries,
      { name: 'root/.ssh/authorized_keys', mode: 0o100600, data: pub },
    ]);
    // The kernel unpacks concatenated archives in order: this layer's /init replaces the tiny one's.
    const initrd = Buffer.concat([await readFile(inputs.tiny.initrd), await gzipAsync(layer, { level: 9 })]);
    await writeFile(path.join(work, 'initrd.gz'), initrd);
    await writeFile(
      path.join(work, 'metadata.json'),
      JSON.stringify({ provider: 'libvirt', format: 'qcow2', virtual_size: 1 }),
    );
    await writeFile(path.join(work, 'Vagrantfile'), boxVagrantfile(path.basename(inputs.tiny.kernel)));
    await exec('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(work, 'box.img'), '1G']);
    await exec('tar', [
      '-cf',
      path.join(tmp, BOX_FILE),
      '--owner=0',
      '--group=0',
      '-C',
      work,
      'metadata.json',
      'Vagrantfile',
      'box.img',
      'initrd.gz',
      'vagrant_key',
      '-C',
      path.dirname(inputs.tiny.kernel),
      path.basename(inputs.tiny.kernel),
    ]);
    await rm(work, { recursive: true });
    const size = (await stat(path.join(tmp, BOX_FILE))).size;
    await writeFile(path.join(tmp, MANIFEST), `${JSON.stringify({ hash: inputs.hash, size }, null, 2)}\n`);
    if (await isComplete(dir, inputs.hash)) return box; // someone else finished first
    await rm(dir, { recursive: true, force: true }); // an incomplete leftover
    await rename(tmp, dir).catch(async (e: NodeJS.ErrnoException) => {
      if (!(await isComplete(dir, inputs.hash))) throw e; // else: someone else finished first
    });
    progress(`built ${name} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return box;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

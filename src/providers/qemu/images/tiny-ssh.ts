// `tiny-ssh`: the tiny guest (tiny.ts) for pools with `bootstrap = "ssh"`. It stands in for an
// image without fw_cfg or cloud-init support for a bootstrap: all it takes from the hypervisor
// is a login key (fw_cfg `opt/hatchery/authorized_keys`, as a cloud's metadata service would
// hand one over), then it brings up the slirp network and dropbear, and waits for Hatchery to
// copy and start the bootstrap over SSH/SFTP. Its host key is made at first boot (dropbear -R):
// Hatchery pins it on first use. An initramfs layer on the tiny one, all from Debian packages:
// dropbear (dropbear-bin) and OpenSSH's sftp-server (openssh-sftp-server), with their libraries.
//
// Content-addressed like the tiny image: <imagesDir>/tiny-ssh-<hash>/initrd.gz, the hash over
// the tiny image's and every file added; built in a temp dir renamed into place.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { busyboxInit, layerEntries, withLibraries } from './layer.ts';
import { buildTinyImage, cpioNewc, type TinyImage, type TinyImageSources } from './tiny.ts';

const gzipAsync = promisify(gzip);

export const TINY_SSH_BUILDER_VERSION = 'hatchery-tiny-ssh/1';
const MANIFEST = 'manifest.json';

/** Where the hypervisor hands over the login key (QEMU: -fw_cfg). */
export const AUTHORIZED_KEYS_FW_CFG = 'opt/hatchery/authorized_keys';

export interface TinySshSources extends TinyImageSources {
  dropbear?: string;
  sftpServer?: string;
}

export interface TinySshImage {
  tiny: TinyImage;
  initrd: string;
  hash: string;
}

/** Run once by busybox init: network (slirp's fixed addresses), the login key, then sshd. */
export function tinySshRc(): string {
  return `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
KEYS=/sys/firmware/qemu_fw_cfg/by_name/${AUTHORIZED_KEYS_FW_CFG}/raw
if [ -r "$KEYS" ]; then
  (umask 077 && cat "$KEYS" >/root/.ssh/authorized_keys)
else
  echo "hatchery-tiny-ssh: no login key in fw_cfg (${AUTHORIZED_KEYS_FW_CFG}): nobody can log in"
fi
# -R: host key made now (first boot); -s: keys only.
dropbear -R -s -p 22 -P /run/dropbear.pid
read -r up _ </proc/uptime
echo "hatchery-tiny-ssh: sshd started (up $up s)"
`;
}

async function gatherLayer(sources: TinySshSources) {
  const files = await withLibraries([
    { from: sources.dropbear ?? '/usr/sbin/dropbear', at: 'usr/sbin/dropbear', pkg: 'dropbear-bin' },
    // Where Debian's dropbear looks for an SFTP server.
    {
      from: sources.sftpServer ?? '/usr/lib/openssh/sftp-server',
      at: 'usr/lib/sftp-server',
      pkg: 'openssh-sftp-server',
    },
  ]);
  const text = (at: string, body: string, mode = 0o644) => files.push({ at, data: Buffer.from(body), mode });
  text(
    'init',
    busyboxInit(
      "Hatchery's tiny-ssh guest (src/providers/qemu/images/tiny-ssh.ts; part of the image hash)",
      'hatchery-ssh',
    ),
    0o755,
  );
  text('etc/hatchery-ssh.rc', tinySshRc(), 0o755);
  text('etc/inittab', '::sysinit:/etc/hatchery-ssh.rc\n::shutdown:/bin/sync\n');
  text('etc/shells', '/bin/sh\n');
  // Image defaults for the bootstrap (docs/guest-protocol.md): the tiny guest's work disk.
  text('etc/hatchery/image.conf', 'HATCHERY_WORK_DISK=/dev/vda\n');
  return layerEntries(files, ['root', 'root/.ssh', 'etc/dropbear'], (d) => d.startsWith('root'));
}

async function isComplete(dir: string, hash: string): Promise<boolean> {
  try {
    const m = JSON.parse(await readFile(path.join(dir, MANIFEST), 'utf8')) as { hash: string; size: number };
    return m.hash === hash && (await stat(path.join(dir, 'initrd.gz'))).size === m.size;
  } catch {
    return false;
  }
}

/** Builds (or finds) the tiny-ssh initrd; the kernel and work disk are the tiny image's. */
export async function buildTinySshImage(opts: {
  imagesDir: string;
  sources?: TinySshSources;
  onProgress?: (message: string) => void;
}): Promise<TinySshImage> {
  const imagesDir = path.resolve(opts.imagesDir);
  const tiny = await buildTinyImage({ imagesDir, sources: opts.sources, onProgress: opts.onProgress });
  const entries = await gatherLayer(opts.sources ?? {});
  const h = createHash('sha256');
  h.update(`${TINY_SSH_BUILDER_VERSION}\0tiny ${tiny.hash}\0`);
  for (const e of [...entries].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    h.update(`${e.name}\0${e.mode}\0`);
    if (e.data) h.update(createHash('sha256').update(e.data).digest('hex'));
  }
  const hash = h.digest('hex').slice(0, 16);
  const dir = path.join(imagesDir, `tiny-ssh-${hash}`);
  const image: TinySshImage = { tiny, initrd: path.join(dir, 'initrd.gz'), hash };
  if (await isComplete(dir, hash)) return image;

  const started = Date.now();
  opts.onProgress?.(`building tiny-ssh-${hash} (tiny-${tiny.hash} + dropbear, sftp-server) in ${imagesDir}`);
  const tmp = path.join(imagesDir, `.tmp-tiny-ssh-${hash}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp, { recursive: true });
  try {
    // The kernel unpacks concatenated archives in order: this layer's /init replaces the tiny one's.
    const initrd = Buffer.concat([
      await readFile(tiny.initrd),
      await gzipAsync(cpioNewc(entries), { level: 9 }),
    ]);
    await writeFile(path.join(tmp, 'initrd.gz'), initrd);
    await writeFile(path.join(tmp, MANIFEST), `${JSON.stringify({ hash, size: initrd.length }, null, 2)}\n`);
    if (await isComplete(dir, hash)) return image; // someone else finished first
    await rm(dir, { recursive: true, force: true }); // an incomplete leftover
    await rename(tmp, dir).catch(async (e: NodeJS.ErrnoException) => {
      if (!(await isComplete(dir, hash))) throw e;
    });
    opts.onProgress?.(`built tiny-ssh-${hash} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return image;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

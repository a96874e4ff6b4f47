// Pieces shared by the images built on top of the tiny guest (tiny-ssh here, the vagrant box):
// an initramfs layer holding host binaries with the libraries `ldd` names, and an /init that
// hands over to busybox init (which reaps orphans and runs an rc script).
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { TINY_MODULES, type cpioNewc } from './tiny.ts';

const exec = promisify(execFile);

export type CpioEntry = Parameters<typeof cpioNewc>[0][number];
export interface LayerFile {
  at: string;
  data: Buffer;
  mode: number;
}

/** The shared libraries a dynamically linked binary loads (absolute paths, sorted). */
export async function lddPaths(binary: string): Promise<string[]> {
  const { stdout } = await exec('ldd', [binary]);
  const paths = new Set<string>();
  for (const line of stdout.split('\n')) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m) paths.add(m[1]!);
  }
  return [...paths].sort();
}

/** A host file for the layer; a missing one names the Debian package that provides it. */
export async function hostFile(file: string, pkg: string): Promise<Buffer> {
  return readFile(file).catch(() => {
    throw new Error(`${file} not found: install the Debian package ${pkg}`);
  });
}

/** Binaries at their places in the guest, plus every library they need, each once. */
export async function withLibraries(bins: { from: string; at: string; pkg: string }[]): Promise<LayerFile[]> {
  const files: LayerFile[] = [];
  const libs = new Set<string>();
  for (const b of bins) {
    files.push({ at: b.at, data: await hostFile(b.from, b.pkg), mode: 0o755 });
    for (const lib of await lddPaths(b.from)) libs.add(lib);
  }
  for (const lib of [...libs].sort())
    files.push({ at: lib.slice(1), data: await readFile(lib), mode: 0o755 });
  return files;
}

/** cpio entries for `files`, with every parent directory (`private` ones 0700, others 0755). */
export function layerEntries(files: LayerFile[], extraDirs: string[], isPrivate: (dir: string) => boolean) {
  const dirs = new Set<string>(extraDirs);
  for (const f of files) {
    for (let d = path.posix.dirname(f.at); d !== '.'; d = path.posix.dirname(d)) dirs.add(d);
  }
  const entries: CpioEntry[] = [
    ...[...dirs].map((d) => ({ name: d, mode: 0o040000 | (isPrivate(d) ? 0o700 : 0o755) })),
    ...files.map((f) => ({ name: f.at, mode: 0o100000 | f.mode, data: f.data })),
  ];
  return entries;
}

/** The guest's /init: mounts, modules, then busybox init (reaps orphans, runs /etc/inittab). */
export function busyboxInit(what: string, hostname: string): string {
  return `#!/bin/sh
# /init of ${what}.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
exec </dev/console >/dev/console 2>&1
for m in ${TINY_MODULES.join(' ')}; do
  [ -e "/lib/modules/$m.ko" ] && insmod "/lib/modules/$m.ko"
done
hostname ${hostname}
exec /sbin/init
`;
}

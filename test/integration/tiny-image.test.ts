// The tiny test guest: built from the host's Debian packages, cached by content hash,
// reproducible, and it boots under TCG and powers itself off when it has no bootstrap.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import {
  buildTinyImage,
  planTinyImage,
  TINY_MODULES,
  type TinyImage,
} from '../../src/providers/qemu/images/tiny.ts';
import { killAll, qemuPidsUnder } from '../helpers/processes.ts';

const root = mkdtempSync(path.join(os.tmpdir(), 'hatchery-tiny-test-'));
const imagesDir = path.join(root, 'images');
let image: TinyImage;

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Names in a newc cpio archive. */
function cpioNames(archive: Buffer): string[] {
  const names: string[] = [];
  let off = 0;
  while (off + 110 <= archive.length && archive.toString('latin1', off, off + 6) === '070701') {
    const field = (i: number) => parseInt(archive.toString('latin1', off + 6 + i * 8, off + 14 + i * 8), 16);
    const size = field(6);
    const nameSize = field(11);
    const name = archive.toString('utf8', off + 110, off + 110 + nameSize - 1);
    if (name === 'TRAILER!!!') break;
    names.push(name);
    off += Math.ceil((110 + nameSize) / 4) * 4;
    off += Math.ceil(size / 4) * 4;
  }
  return names;
}

interface Boot {
  code: number | null;
  ms: number;
  console: string;
}

/** Boots the image with no bootstrap (the command line of the brief), waits for QEMU to exit. */
function bootWithoutBootstrap(img: TinyImage, dir: string): Promise<Boot> {
  const consoleLog = path.join(dir, 'console.log');
  // prettier-ignore
  const args = [
    '-accel', 'tcg,tb-size=32',
    '-m', '128M',
    '-smp', '1',
    '-nographic',
    '-no-reboot',
    '-kernel', img.kernel,
    '-initrd', img.initrd,
    '-append', 'console=ttyS0 quiet',
    '-serial', `file:${consoleLog}`,
    '-display', 'none',
    '-monitor', 'none',
  ];
  const started = performance.now();
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  qemu.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      qemu.kill('SIGKILL');
      reject(new Error(`the VM did not power off within 90 s; console:\n${readConsole(consoleLog)}`));
    }, 90_000);
    qemu.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    qemu.on('exit', (code) => {
      clearTimeout(timer);
      const ms = performance.now() - started;
      if (stderr.trim()) process.stderr.write(`qemu: ${stderr}`);
      resolve({ code, ms, console: readConsole(consoleLog) });
    });
  });
}

function readConsole(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

describe('tiny image', () => {
  before(() => {
    assert.ok(existsSync(root));
  });

  after(() => {
    const left = qemuPidsUnder(root);
    killAll(left);
    rmSync(root, { recursive: true, force: true });
    assert.deepEqual(left, [], 'a QEMU started by this test was still running');
    assert.ok(!existsSync(root), 'temp files left behind');
  });

  it('builds from Debian packages: vmlinux (ELF), initrd with busybox, /init and the modules, a qcow2 disk', async (t) => {
    const progress: string[] = [];
    const started = performance.now();
    image = await buildTinyImage({ imagesDir, onProgress: (m) => progress.push(m) });
    const ms = performance.now() - started;
    t.diagnostic(`build: ${(ms / 1000).toFixed(2)} s, ${image.dir}`);

    assert.match(image.hash, /^[0-9a-f]{16}$/);
    assert.equal(image.dir, path.join(imagesDir, `tiny-${image.hash}`));
    assert.ok(
      progress.some((m) => /extracting/.test(m)),
      progress.join('\n'),
    );
    assert.ok(progress.some((m) => /initramfs/.test(m)));
    assert.ok(progress.some((m) => /work disk/.test(m)));

    const kernel = readFileSync(image.kernel);
    assert.equal(path.basename(image.kernel), 'vmlinux');
    assert.deepEqual([...kernel.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], 'vmlinux is an ELF file');

    const names = cpioNames(gunzipSync(readFileSync(image.initrd)));
    for (const n of ['init', 'bin/busybox', 'bin/sh', 'dev/console'])
      assert.ok(names.includes(n), `initrd has ${n}`);
    for (const m of TINY_MODULES) assert.ok(names.includes(`lib/modules/${m}.ko`), `initrd has ${m}.ko`);

    const qcow = readFileSync(image.disk).subarray(0, 4);
    assert.equal(qcow.toString('latin1'), 'QFI\xfb', 'disk is qcow2');
    // Nothing but the image in the images dir: the temp build dir is gone.
    assert.deepEqual(readdirSync(imagesDir), [path.basename(image.dir)]);
  });

  it('returns the cached image on the second call (same hash, no build step, untouched)', async (t) => {
    const before = statSync(image.initrd).mtimeMs;
    const progress: string[] = [];
    const started = performance.now();
    const again = await buildTinyImage({ imagesDir, onProgress: (m) => progress.push(m) });
    const ms = performance.now() - started;
    t.diagnostic(`cache hit: ${ms.toFixed(0)} ms`);
    assert.deepEqual(again, image);
    assert.deepEqual(progress, [], 'no build step on a cache hit');
    assert.equal(statSync(image.initrd).mtimeMs, before);

    const plan = await planTinyImage({ imagesDir });
    assert.equal(plan.ready, true);
    assert.equal(plan.hash, image.hash);
    assert.equal(plan.kernel, image.kernel);
  });

  it('rebuilds an incomplete image directory', async () => {
    rmSync(path.join(image.dir, 'manifest.json'));
    assert.equal((await planTinyImage({ imagesDir })).ready, false);
    const rebuilt = await buildTinyImage({ imagesDir });
    assert.deepEqual(rebuilt, image);
    assert.equal((await planTinyImage({ imagesDir })).ready, true);
    assert.deepEqual(readdirSync(imagesDir), [path.basename(image.dir)]);
  });

  it('is reproducible: two clean builds, even concurrent ones, give the same hash and bytes', async () => {
    const otherDir = path.join(root, 'images-2');
    // Two builders racing for the same directory: both succeed with the same image.
    const [a, b] = await Promise.all([
      buildTinyImage({ imagesDir: otherDir }),
      buildTinyImage({ imagesDir: otherDir }),
    ]);
    assert.deepEqual(a, b);
    assert.equal(a.hash, image.hash);
    for (const f of ['vmlinux', 'initrd.gz', 'disk.qcow2', 'manifest.json']) {
      assert.equal(
        sha256(path.join(a.dir, f)),
        sha256(path.join(image.dir, f)),
        `${f} differs between builds`,
      );
    }
    assert.deepEqual(readdirSync(otherDir), [path.basename(a.dir)], 'no temp dir left');
  });

  it('names the missing Debian package', async () => {
    const empty = path.join(root, 'empty');
    await assert.rejects(
      buildTinyImage({ imagesDir: path.join(root, 'x'), sources: { bootDir: empty } }),
      /linux-image-amd64/,
    );
    await assert.rejects(
      buildTinyImage({ imagesDir: path.join(root, 'x'), sources: { busybox: path.join(empty, 'busybox') } }),
      /busybox-static/,
    );
    // A dynamically linked binary is no use in the initramfs.
    await assert.rejects(
      buildTinyImage({ imagesDir: path.join(root, 'x'), sources: { busybox: process.execPath } }),
      /dynamically linked.*busybox-static/,
    );
    assert.ok(!existsSync(path.join(root, 'x')), 'nothing written when an input is missing');
  });

  it('boots under TCG and powers itself off when there is no bootstrap', async (t) => {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const dir = mkdtempSync(path.join(root, 'boot-'));
      const boot = await bootWithoutBootstrap(image, dir);
      assert.equal(boot.code, 0, `QEMU exit code; console:\n${boot.console}`);
      assert.match(boot.console, /hatchery-init: no bootstrap in fw_cfg/);
      assert.match(boot.console, /reboot: Power down/);
      times.push(boot.ms);
      const up = /no bootstrap.*\(up ([\d.]+) s\)/.exec(boot.console)?.[1];
      t.diagnostic(
        `boot ${i + 1}: QEMU start → exit ${(boot.ms / 1000).toFixed(2)} s (guest uptime at /init's message: ${up} s)`,
      );
    }
    times.sort((a, b) => a - b);
    t.diagnostic(`median QEMU start → power off: ${(times[1]! / 1000).toFixed(2)} s`);
    assert.deepEqual(qemuPidsUnder(root), []);
  });
});

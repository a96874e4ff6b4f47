// Image names → boot files. `tiny` is the project's own test guest, built on first use from
// Debian packages (tiny.ts) and cached by content hash; `tiny-ssh` is the same guest waiting
// for an SSH bootstrap (tiny-ssh.ts). Any other name is a
// directory under the images dir holding some of: vmlinux | bzImage (kernel), initrd.gz,
// disk.qcow2 (base disk, each VM gets an overlay), append (kernel command line).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { BootImage } from '../command-line.ts';
import { buildTinyImage } from './tiny.ts';
import { buildTinySshImage } from './tiny-ssh.ts';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

// The tiny guest's kernel command line. Under TCG, boot-time initcalls dominate; measured with
// initcall_debug: the crypto self-tests (~0.6 s) and IPv6 set-up (~0.15 s), neither of which a
// throwaway IPv4-only test guest needs. Init was reached in 2.6–3.2 s instead of 3.5–4.0 s.
export const TINY_APPEND = 'console=ttyS0 quiet panic=-1 cryptomgr.notests ipv6.disable=1';

export type ImageResolver = (name: string, onProgress?: (msg: string) => void) => Promise<BootImage>;

/** Progress of a tiny-image build goes to the caller that started it. */
export function imageResolver(imagesDir: string): ImageResolver {
  let tiny: Promise<BootImage> | null = null;
  let tinySsh: Promise<BootImage> | null = null;
  return async (name, onProgress) => {
    if (!NAME.test(name) || name.includes('..'))
      throw new Error(`invalid image name ${JSON.stringify(name)}`);
    if (name === 'tiny') {
      tiny ??= buildTinyImage({ imagesDir, onProgress }).then(
        (img) => ({
          kernel: img.kernel,
          initrd: img.initrd,
          disk: img.disk,
          append: TINY_APPEND,
        }),
        (e: unknown) => {
          tiny = null; // let a later call retry (e.g. after installing a missing package)
          throw e;
        },
      );
      return tiny;
    }
    if (name === 'tiny-ssh') {
      // The tiny guest with dropbear, for pools with bootstrap = "ssh" (tiny-ssh.ts).
      tinySsh ??= buildTinySshImage({ imagesDir, onProgress }).then(
        (img) => ({ kernel: img.tiny.kernel, initrd: img.initrd, disk: img.tiny.disk, append: TINY_APPEND }),
        (e: unknown) => {
          tinySsh = null;
          throw e;
        },
      );
      return tinySsh;
    }
    const dir = path.join(imagesDir, name);
    const pick = (...files: string[]) => files.map((f) => path.join(dir, f)).find((f) => existsSync(f));
    const image: BootImage = {
      kernel: pick('vmlinux', 'bzImage', 'kernel'),
      initrd: pick('initrd.gz', 'initrd.img', 'initrd'),
      disk: pick('disk.qcow2'),
    };
    const appendFile = pick('append');
    if (appendFile) image.append = (await readFile(appendFile, 'utf8')).trim();
    if (!image.kernel && !image.disk) {
      throw new Error(`image ${name}: ${dir} has neither a kernel (vmlinux) nor a disk (disk.qcow2)`);
    }
    return image;
  };
}

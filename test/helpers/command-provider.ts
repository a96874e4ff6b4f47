// The sample executable of the `command` provider (examples/command-provider/qemu-vm.sh) and an
// images directory it can boot the tiny test guest from.
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { imageResolver } from '../../src/providers/qemu/images/resolve.ts';
import { IMAGES_DIR } from './images.ts';

export const SAMPLE = fileURLToPath(new URL('../../examples/command-provider/qemu-vm.sh', import.meta.url));

/**
 * `<dir>/images/tiny/`: the tiny guest (built, or found in the shared cache, as the qemu provider
 * does) in the layout the sample reads: vmlinux, initrd.gz, disk.qcow2, append.
 */
export async function sampleImages(dir: string): Promise<string> {
  const tiny = await imageResolver(IMAGES_DIR)('tiny');
  const images = path.join(dir, 'images');
  const target = path.join(images, 'tiny');
  mkdirSync(target, { recursive: true });
  symlinkSync(tiny.kernel!, path.join(target, 'vmlinux'));
  symlinkSync(tiny.initrd!, path.join(target, 'initrd.gz'));
  symlinkSync(tiny.disk!, path.join(target, 'disk.qcow2'));
  writeFileSync(path.join(target, 'append'), `${tiny.append}\n`);
  return images;
}

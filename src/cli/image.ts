import type { Command } from 'commander';
import { buildTinyImage } from '../images/tiny.ts';
import { configFrom } from './common.ts';

export function registerImageCommands(program: Command): void {
  const image = program.command('image').description('guest images');
  image
    .command('build')
    .description('build the tiny test guest from Debian packages (cached by content hash)')
    .action(async (_opts, cmd: Command) => {
      const { config } = configFrom(cmd);
      const started = Date.now();
      const img = await buildTinyImage({
        imagesDir: config.qemu.images_dir,
        onProgress: (msg) => process.stderr.write(`  ${msg}\n`),
      });
      process.stdout.write(
        `tiny image ${img.hash} in ${img.dir} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
      );
    });
}

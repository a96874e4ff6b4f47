// `hatchery image build` — makes every pool's image ready (the providers build or find it, e.g.
// QEMU's tiny test guest from Debian packages, cached by content hash), showing progress.
import type { Command } from 'commander';
import { createLogger } from '../log.ts';
import { Providers } from '../providers/build.ts';
import { configFrom } from './common.ts';

export function registerImageCommands(program: Command): void {
  const image = program.command('image').description('guest images');
  image
    .command('build')
    .description("build (or find cached) every pool's image, e.g. the tiny test guest")
    .option('-p, --pool <pool>', 'only this pool')
    .action(async (opts: { pool?: string }, cmd: Command) => {
      const { config } = configFrom(cmd);
      const pools = config.pools.filter((p) => !opts.pool || p.name === opts.pool);
      if (pools.length === 0) throw new Error(`no pool named ${opts.pool}`);
      const providers = Providers.build(config, createLogger({ level: 'warn' }));
      try {
        for (const pool of pools) {
          const provider = providers.forPool(pool.name);
          const started = Date.now();
          process.stderr.write(`pool ${pool.name}: image ${pool.image} (${provider.kind})\n`);
          if (!provider.prepare) {
            process.stdout.write(`pool ${pool.name}: ${provider.kind} has no images to build\n`);
            continue;
          }
          await provider.prepare(pool.image, (msg) => process.stderr.write(`  ${msg}\n`));
          process.stdout.write(
            `pool ${pool.name}: image ${pool.image} ready (${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
          );
        }
      } finally {
        await providers.close();
      }
    });
}

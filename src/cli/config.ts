import type { Command } from 'commander';
import { maskSecrets } from '../config/load.ts';
import { vmWeight } from '../core/quota.ts';
import { configFrom } from './common.ts';

export function registerConfigCommands(program: Command): void {
  const config = program.command('config').description('inspect the configuration');
  config
    .command('check')
    .description('validate the configuration and print the effective values (secrets masked)')
    .action((_opts, cmd: Command) => {
      const loaded = configFrom(cmd);
      process.stdout.write(`# config file: ${loaded.file ?? '(none: defaults)'}\n`);
      for (const [name, key] of Object.entries(loaded.fromEnv))
        process.stdout.write(`# ${key} from env ${name}\n`);
      for (const w of loaded.warnings) process.stderr.write(`hatchery: warning: ${w}\n`);
      const tenants = loaded.config.limits.tenants;
      if (tenants) {
        // What a quota buys: the weight of each pool's VM (core/quota.ts).
        const weights = loaded.config.pools.map(
          (p) => `${p.name} ${Math.round(vmWeight(p.memory, tenants.weight_exponent) * 1000) / 1000}`,
        );
        process.stdout.write(
          `# limits.tenants: a tenant is ${tenants.by === 'owner' ? "a repository's owner" : 'a repository'}; a VM weighs ${weights.join(', ')}\n`,
        );
      }
      process.stdout.write(`${JSON.stringify(maskSecrets(loaded.config), null, 2)}\n`);
    });
}

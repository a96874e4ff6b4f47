import type { Command } from 'commander';
import { maskSecrets } from '../config/load.ts';
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
      process.stdout.write(`${JSON.stringify(maskSecrets(loaded.config), null, 2)}\n`);
    });
}

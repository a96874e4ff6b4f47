// `hatchery` — the command-line entry point. One file per command group; each loads the config
// once and passes it down.
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/load.ts';
import { registerConfigCommands } from './config.ts';
import { registerDemoCommand } from './demo.ts';
import { registerEncryptTokenCommand } from './encrypt-token.ts';
import { registerImageCommands } from './image.ts';
import { registerRelayCommand } from './relay.ts';
import { registerServeCommand } from './serve.ts';
import { registerVmCommands } from './vm.ts';

const program = new Command()
  .name('hatchery')
  .description('A fresh VM for every GitHub Actions workflow or job, destroyed afterwards.')
  .option('-c, --config <file>', 'config file (default: $HATCHERY_CONFIG or ./hatchery.toml)')
  .showHelpAfterError()
  .exitOverride();

registerServeCommand(program);
registerVmCommands(program);
registerConfigCommands(program);
registerEncryptTokenCommand(program);
registerImageCommands(program);
registerDemoCommand(program);
registerRelayCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  if (e instanceof ConfigError) {
    process.stderr.write(`hatchery: ${e.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`hatchery: ${(e as Error).message}\n`);
  process.exit(1);
}

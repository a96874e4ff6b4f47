import type { Command } from 'commander';
import { HatcheryService } from '../service.ts';
import { configFrom } from './common.ts';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the service: webhooks in, VMs out')
    .action(async (_opts, cmd: Command) => {
      const { config } = configFrom(cmd);
      const service = await HatcheryService.start({ config });
      let stopping = false;
      const stop = async (signal: string): Promise<void> => {
        if (stopping) return;
        stopping = true;
        service.log.info({ signal }, 'shutting down; running VMs are kept and adopted at the next start');
        await service.stop();
        process.exit(0);
      };
      process.on('SIGTERM', () => void stop('SIGTERM'));
      process.on('SIGINT', () => void stop('SIGINT'));
    });
}

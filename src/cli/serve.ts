import type { Command } from 'commander';
import { HatcheryService } from '../service.ts';
import { configFrom } from './common.ts';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the service: webhooks in, VMs out')
    .action(async (_opts, cmd: Command) => {
      const { config, warnings } = configFrom(cmd);
      let service: HatcheryService | null = null;
      let stopping = false;
      // Installed before start-up (which may build the tiny image or probe KVM for seconds), so
      // that SIGTERM is never the default "die at once". A stop during start-up waits for it to
      // finish, then shuts down: no step is left half-done by us (a crash would be safe too).
      const stop = async (signal: string): Promise<void> => {
        if (stopping) return;
        stopping = true;
        if (!service) return; // start-up still running: it sees `stopping` when it ends
        service.log.info({ signal }, 'shutting down; running VMs are kept and adopted at the next start');
        await service.stop();
        process.exit(0);
      };
      process.on('SIGTERM', () => void stop('SIGTERM'));
      process.on('SIGINT', () => void stop('SIGINT'));
      // HATCHERY_TEST_CRASH_AT: tests kill the service at a named dangerous moment.
      service = await HatcheryService.start({
        config,
        warnings,
        crashAt: process.env.HATCHERY_TEST_CRASH_AT,
      });
      if (stopping) {
        stopping = false;
        await stop('signal during start-up');
      }
    });
}

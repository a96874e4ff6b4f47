import type { Command } from 'commander';
import { createLogger } from '../log.ts';
import { Relay } from '../relay/relay.ts';

function httpUrl(value: string, what: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new Error(`${what}: not a URL: ${JSON.stringify(value)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`${what}: expected an http(s) URL`);
  return u.toString();
}

export function registerRelayCommand(program: Command): void {
  program
    .command('relay')
    .description(
      'forward webhooks from a smee-style channel (Server-Sent Events) to the service, bytes unchanged',
    )
    .requiredOption('--source <url>', 'the channel, e.g. https://smee.io/<channel>')
    .option('--target <url>', "the service's webhook URL", 'http://127.0.0.1:8080/hooks/github')
    .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
    .action((opts: { source: string; target: string; logLevel: string }) => {
      const relay = new Relay({
        source: httpUrl(opts.source, '--source'),
        target: httpUrl(opts.target, '--target'),
        log: createLogger({ level: opts.logLevel }),
      });
      relay.start();
      const stop = () => void relay.stop().then(() => process.exit(0));
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
}

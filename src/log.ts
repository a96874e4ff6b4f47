// Structured logs (pino). Secrets are redacted by key wherever they appear in a log object;
// code never interpolates a secret into a message string in the first place.
import { pino, type Logger } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'token',
  'secret',
  'password',
  'credential',
  'encodedJitConfig',
  'jitConfig',
  'authorization',
  'privateKey',
  '*.token',
  '*.secret',
  '*.password',
  '*.openssl_password',
  '*.credential',
  '*.encodedJitConfig',
  '*.jitConfig',
  '*.HATCHERY_JITCONFIG',
  '*.authorization',
  '*.privateKey',
  '*.headers.authorization',
  '*.headers["x-hatchery-signature-256"]',
  '*.headers["x-hub-signature-256"]',
  '*.headers["x-hub-signature"]',
];

export function createLogger(
  opts: { level?: string; destination?: NodeJS.WritableStream | pino.DestinationStream } = {},
): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      base: undefined,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    // Buffered: lines go out together, 4 KiB at a time or every 250 ms (one write per line was
    // ~8% of the service's CPU in a burst), asynchronously. pino flushes what is left when the
    // process exits; a kill -9 loses at most the last 250 ms of lines.
    (opts.destination as pino.DestinationStream | undefined) ??
      pino.destination({ dest: 2, sync: false, minLength: 4096, periodicFlush: 250 }),
  );
}

export const silentLogger = (): Logger => pino({ level: 'silent' });

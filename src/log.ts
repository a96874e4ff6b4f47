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
    // Asynchronous: a line is written at once when no write is in flight, and lines logged
    // meanwhile go out together in the next write (one syscall per line was ~8% of the service's
    // CPU in a burst). pino flushes what is left synchronously when the process exits; a kill -9
    // loses at most the lines of the write in flight, as it would lose them from any buffer.
    (opts.destination as pino.DestinationStream | undefined) ?? pino.destination({ dest: 2, sync: false }),
  );
}

export const silentLogger = (): Logger => pino({ level: 'silent' });

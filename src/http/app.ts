// The Express app: routes take the raw body (signatures cover exact bytes), read within the
// limits of ./limits.ts; errors become typed JSON answers, and nothing slow runs in a handler
// except explicit long-polls.
import express, { type NextFunction, type Request, type Response } from 'express';
import type { GuestInbox } from '../core/guest-inbox.ts';
import { parseByteSize } from '../config/bytes.ts';
import type { Intake } from '../core/intake.ts';
import type { JobIntake } from '../core/jobs.ts';
import type { Notifier } from '../core/notifier.ts';
import type { Logger } from '../log.ts';
import type { Store } from '../store/store.ts';
import { toRequestError } from './errors.ts';
import { readBody } from './limits.ts';
import { WebhookStats } from './webhook-stats.ts';
import { apiRoutes } from './routes/api.ts';
import { controlRoutes } from './routes/control.ts';
import { githubRoutes, type InstallationCache } from './routes/github.ts';
import { guestRoutes } from './routes/guest.ts';
import { jobsApiRoutes } from './routes/jobs-api.ts';
import { legacyRoutes, type LegacyOptions } from './routes/legacy.ts';
import type { QueueView } from './views.ts';

export interface AppDeps {
  intake: Intake;
  inbox: GuestInbox;
  store: Store;
  notifier: Notifier;
  log: Logger;
  clock: () => number;
  baseUrl: () => string;
  apiToken?: string;
  controlSecret?: string;
  /** GitHub App webhooks (POST /hooks/github); without a secret the route answers 503. */
  github: { secret?: string; jobs: JobIntake; installations?: InstallationCache };
  /** Absent: the legacy route is off (404). */
  legacy?: LegacyOptions;
  /** A size such as "256kb" (server.body_limit). */
  bodyLimit: string;
  health: () => Promise<Record<string, unknown>>;
  /** Queue positions of pending VMs, shown by the API (core/admission.ts). */
  queue?: QueueView;
}

export function createApp(deps: AppDeps): express.Express {
  const maxBytes = parseByteSize(deps.bodyLimit);
  if (maxBytes === null) throw new Error(`server.body_limit: not a size: ${JSON.stringify(deps.bodyLimit)}`);
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  // Timed from the request's arrival, body reading included: this is the ack latency.
  app.use((req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      deps.log.info(
        {
          method: req.method,
          path: req.path,
          status: res.statusCode,
          ms: Number(process.hrtime.bigint() - started) / 1e6,
          delivery: req.get('x-github-delivery') ?? req.get('x-hatchery-delivery'),
        },
        'http',
      );
    });
    next();
  });
  app.use(readBody({ maxBytes, text: deps.bodyLimit, log: deps.log }));

  app.get('/healthz', async (_req, res) => {
    try {
      await deps.store.ping();
      res.json({ status: 'ok', ...(await deps.health()) });
    } catch (e) {
      res.status(503).json({ status: 'unavailable', error: (e as Error).message });
    }
  });
  app.use(controlRoutes({ ...deps, secret: deps.controlSecret }));
  const stats = new WebhookStats();
  app.use(githubRoutes({ ...deps.github, store: deps.store, stats, clock: deps.clock }));
  app.use(guestRoutes(deps));
  app.use(apiRoutes({ ...deps, token: deps.apiToken }));
  app.use(jobsApiRoutes({ store: deps.store, stats, token: deps.apiToken, queue: deps.queue }));
  if (deps.legacy) app.use(legacyRoutes({ ...deps, opts: deps.legacy }));

  app.use((req, res) => {
    res.status(404).json({ error: 'not_found', message: `no route ${req.method} ${req.path}` });
  });
  // Express 5 forwards rejected promises from async handlers here.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const known = toRequestError(err);
    if (known) {
      res
        .status(known.status)
        .json({ error: known.code, message: known.message, ...(known.field ? { field: known.field } : {}) });
      return;
    }
    deps.log.error(
      { err: (err as Error).message, stack: (err as Error).stack, path: req.path },
      'request failed',
    );
    if (!res.headersSent)
      res.status(500).json({ error: 'internal', message: 'internal error (see the service log)' });
  });
  return app;
}

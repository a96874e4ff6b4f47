// POST /hooks/github — the GitHub App's webhooks. Verified with @octokit/webhooks on the raw
// bytes (X-Hub-Signature-256, constant time) before anything is read; a delivery id seen before
// is answered at once and changes nothing; then `ping`, `installation*` and `workflow_job` are
// handled and every other event is answered 202 and counted as ignored. Fast: rows only, no VM
// work (the worker does that). The delivery id is recorded after its event is applied, so a
// crash in between means a redelivery is applied again, which converges (core/jobs.ts).
import { Webhooks } from '@octokit/webhooks';
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import type { JobEvent, JobIntake } from '../../core/jobs.ts';
import { parsePositiveInt, parseRepository } from '../../core/naming.ts';
import type { Store } from '../../store/store.ts';
import { rawBody } from '../auth.ts';
import { badRequest, parseJson, RequestError } from '../errors.ts';
import type { WebhookStats } from '../webhook-stats.ts';

/** What the route tells the GitHub App about installations (src/github/app.ts implements it). */
export interface InstallationCache {
  remember(repository: string, installationId: number): void;
  forgetInstallation(installationId: number): void;
  forgetRepositories(repositories: string[]): void;
}

const DELIVERY = /^[A-Za-z0-9._:-]{1,128}$/;
const EVENT = /^[a-z_]{1,64}$/;
const JOB_ACTIONS = ['queued', 'waiting', 'in_progress', 'completed'] as const;

const workflowJobSchema = z.object({
  action: z.string(),
  workflow_job: z.object({
    id: z.unknown(),
    run_id: z.unknown(),
    run_attempt: z.unknown().optional(),
    labels: z.array(z.string().max(200)).max(100),
    runner_name: z.string().max(200).nullable().optional(),
  }),
  repository: z.object({ full_name: z.unknown() }),
  installation: z.object({ id: z.number().int().positive() }).optional(),
});

const installationSchema = z.object({
  action: z.string(),
  installation: z.object({ id: z.number().int().positive() }),
  repositories: z.array(z.object({ full_name: z.string() })).optional(),
  repositories_added: z.array(z.object({ full_name: z.string() })).optional(),
  repositories_removed: z.array(z.object({ full_name: z.string() })).optional(),
});

export function parseWorkflowJob(payload: unknown): JobEvent | { ignored: string } {
  const p = workflowJobSchema.parse(payload);
  if (!(JOB_ACTIONS as readonly string[]).includes(p.action)) return { ignored: `action ${p.action}` };
  const job = p.workflow_job;
  return {
    action: p.action as JobEvent['action'],
    jobId: parsePositiveInt(job.id, 'workflow_job.id'),
    runId: parsePositiveInt(job.run_id, 'workflow_job.run_id'),
    // Older payloads (GHES) have no run_attempt: the first.
    runAttempt:
      job.run_attempt === undefined ? 1 : parsePositiveInt(job.run_attempt, 'workflow_job.run_attempt'),
    repository: parseRepository(p.repository.full_name, 'repository.full_name').full,
    labels: job.labels,
    runnerName: job.runner_name ? job.runner_name : null,
    installationId: p.installation?.id ?? null,
  };
}

export function githubRoutes(deps: {
  secret?: string;
  jobs: JobIntake;
  store: Store;
  stats: WebhookStats;
  installations?: InstallationCache;
  clock: () => number;
}) {
  const router = Router();
  const webhooks = deps.secret ? new Webhooks({ secret: deps.secret }) : null;

  router.post('/hooks/github', async (req: Request, res: Response) => {
    if (!webhooks) {
      res.status(503).json({
        error: 'github_disabled',
        message: 'set github.app.webhook_secret (HATCHERY_GITHUB_APP_WEBHOOK_SECRET) to enable',
      });
      return;
    }
    // GitHub signs the bytes it sends (UTF-8 JSON): verified before anything is parsed.
    const raw = rawBody(req).toString('utf8');
    const signature = req.get('x-hub-signature-256');
    const valid = Boolean(signature && raw) && (await webhooks.verify(raw, signature!).catch(() => false));
    if (!valid) {
      deps.stats.badSignature++;
      res.status(401).json({
        error: 'bad_signature',
        message: 'X-Hub-Signature-256 is missing or does not match the body and the webhook secret',
      });
      return;
    }
    const name = req.get('x-github-event') ?? '';
    const id = req.get('x-github-delivery') ?? '';
    try {
      if (!EVENT.test(name)) throw badRequest('X-GitHub-Event', 'missing or not an event name');
      if (!DELIVERY.test(id)) throw badRequest('X-GitHub-Delivery', 'missing, or not a delivery id');
      if (await deps.store.deliverySeen('github', id)) {
        deps.stats.count(name, 'duplicate');
        res.status(200).json({ delivery: id, event: name, duplicate: true });
        return;
      }
      const payload = parseJson(rawBody(req));
      const answer = await handle(name, payload);
      await deps.store.recordDelivery('github', id, deps.clock());
      deps.stats.count(name, answer.status === 202 ? 'ignored' : 'handled');
      res.status(answer.status).json({ delivery: id, event: name, duplicate: false, ...answer.body });
    } catch (e) {
      if (e instanceof RequestError || e instanceof z.ZodError) deps.stats.invalid++;
      throw e;
    }
  });

  async function handle(
    name: string,
    payload: unknown,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    switch (name) {
      case 'ping':
        return { status: 200, body: { result: 'pong' } };
      case 'installation':
      case 'installation_repositories': {
        const p = installationSchema.parse(payload);
        const id = p.installation.id;
        const added = [...(p.repositories ?? []), ...(p.repositories_added ?? [])].map((r) => r.full_name);
        if (name === 'installation' && ['deleted', 'suspend'].includes(p.action)) {
          deps.installations?.forgetInstallation(id);
        } else {
          for (const r of added) deps.installations?.remember(r, id);
          deps.installations?.forgetRepositories((p.repositories_removed ?? []).map((r) => r.full_name));
        }
        return { status: 200, body: { action: p.action, installation: id } };
      }
      case 'workflow_job': {
        const e = parseWorkflowJob(payload);
        if ('ignored' in e) return { status: 202, body: { result: 'ignored', note: e.ignored } };
        if (e.installationId !== null) deps.installations?.remember(e.repository, e.installationId);
        const out = await deps.jobs.handle(e);
        return {
          status: 200,
          body: {
            action: e.action,
            job: e.jobId,
            result: out.result,
            vms_created: out.created,
            vms_destroyed: out.destroyed,
            ...(out.note ? { note: out.note } : {}),
          },
        };
      }
      default:
        return { status: 202, body: { result: 'ignored' } };
    }
  }
  return router;
}

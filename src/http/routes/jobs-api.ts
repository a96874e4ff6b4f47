// /api/v1/jobs and /api/v1/webhooks — what GitHub App autoscaling saw: the GitHub jobs, each with
// its status, pool (or why none serves it) and VM; webhook counts by event. Bearer-authenticated.
import { Router, type Request, type Response } from 'express';
import type { JobStatus, Store, WorkflowJob } from '../../store/store.ts';
import { bearerAuth } from '../auth.ts';
import { badRequest } from '../errors.ts';
import type { QueueView } from '../views.ts';
import type { WebhookStats } from '../webhook-stats.ts';

const STATUSES: readonly JobStatus[] = ['waiting', 'queued', 'in_progress', 'completed'];

/** `position`: its VM's place in the admission queue, while that VM waits for capacity. */
export function jobView(j: WorkflowJob, position?: number) {
  return {
    job_id: j.jobId,
    repository: j.repository,
    run_id: j.runId,
    run_attempt: j.runAttempt,
    labels: j.labels,
    status: j.status,
    pool: j.pool,
    vm: j.vm,
    runner_name: j.runnerName,
    vms_created: j.vmsCreated,
    note: j.note,
    updated_at: new Date(j.updatedAt).toISOString(),
    ...(position !== undefined ? { queue_position: position } : {}),
  };
}

export function jobsApiRoutes(deps: {
  store: Store;
  stats: WebhookStats;
  token?: string;
  queue?: QueueView;
}) {
  const router = Router();
  router.get('/api/v1/jobs', bearerAuth(deps.token), async (req: Request, res: Response) => {
    const statuses = typeof req.query.status === 'string' ? req.query.status.split(',') : undefined;
    for (const s of statuses ?? [])
      if (!STATUSES.includes(s as JobStatus))
        throw badRequest('status', `unknown status ${JSON.stringify(s)} (one of ${STATUSES.join(', ')})`);
    const limit = req.query.limit === undefined ? 100 : Number(req.query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
      throw badRequest('limit', 'an integer between 1 and 1000');
    const jobs = await deps.store.listJobs({ statuses: statuses as JobStatus[] | undefined, limit });
    // Only queued jobs wait for a VM; their VMs' positions, if any of those VMs is pending.
    const waiting = jobs.some((j) => j.status === 'queued' && j.vm !== null);
    const positions = waiting && deps.queue ? await deps.queue.positions() : new Map<string, number>();
    res.json({ jobs: jobs.map((j) => jobView(j, j.vm === null ? undefined : positions.get(j.vm))) });
  });
  router.get('/api/v1/webhooks', bearerAuth(deps.token), (_req: Request, res: Response) => {
    res.json(deps.stats.snapshot());
  });
  return router;
}

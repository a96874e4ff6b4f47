// The stand-in's webhook deliveries: what GitHub posts to a GitHub App's webhook URL when a job
// is queued, starts and completes. Each payload is built from GitHub's own example
// (@octokit/webhooks-examples) with the job's values, checked against the event's schema in
// GitHub's description (`webhook-workflow-job-<action>`), signed (X-Hub-Signature-256) and
// posted one after another, like GitHub: one attempt, 10 s, no retry. Every delivery is kept
// (status code, payload) for tests, and for listing and redelivery later.
import { createHmac, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import type { FakeJob, JobEventAction } from './state.ts';

export interface WebhookTarget {
  url: string;
  secret: string;
  /** The installation a repository's events name (omitted when undefined). */
  installationFor?: (repository: string) => number | undefined;
  /** Tests: a delivery for which this holds is recorded as failed and never posted (a lost webhook). */
  drop?: (event: string, payload: Record<string, unknown>) => boolean;
}

export interface Delivery {
  id: number;
  guid: string;
  event: string;
  action: string;
  installationId: number | null;
  /** HTTP status of the answer; 0: no answer (refused, timed out, dropped). */
  statusCode: number;
  /** GitHub's description of the outcome ("OK", "failed to connect", "Invalid HTTP Response: 401"). */
  status: string;
  durationS: number;
  deliveredAt: string;
  redelivery: boolean;
  /** The exact bytes posted. */
  body: string;
}

type Json = Record<string, unknown>;

let templates: Record<string, Json> | undefined;
/** GitHub's example workflow_job payloads, by action (dev dependency: loaded on first use). */
function template(action: JobEventAction): Json {
  if (!templates) {
    const all = createRequire(import.meta.url)('@octokit/webhooks-examples/api.github.com/index.json') as {
      name: string;
      examples: Json[];
    }[];
    templates = {};
    for (const ex of all.find((e) => e.name === 'workflow_job')!.examples) {
      // The first example of each action, preferring one an App received (with an installation).
      const had = templates[ex.action as string];
      if (!had || (!had.installation && ex.installation)) templates[ex.action as string] = ex;
    }
  }
  return structuredClone(templates[action]!);
}

/** The run a stand-in job belongs to (jobs are queued one by one, each its own run). */
export const runIdOf = (jobId: number): number => 500_000 + jobId;

export function workflowJobPayload(
  action: JobEventAction,
  job: FakeJob,
  runner: { id: number; groupId: number } | null,
  installationId: number | undefined,
): Json {
  const p = template(action);
  const [owner, name] = job.repository.split('/') as [string, string];
  const repo = p.repository as Json;
  Object.assign(repo, { name, full_name: job.repository, html_url: `https://github.com/${job.repository}` });
  Object.assign(repo.owner as Json, { login: owner });
  const runId = runIdOf(job.id);
  const wj = p.workflow_job as Json;
  Object.assign(wj, {
    id: job.id,
    run_id: runId,
    run_attempt: 1,
    name: job.name,
    labels: [...job.labels],
    status: job.status,
    conclusion: job.conclusion,
    created_at: job.createdAt,
    started_at: job.startedAt ?? job.createdAt,
    completed_at: job.completedAt,
    runner_id: runner?.id ?? null,
    runner_name: job.runnerName,
    runner_group_id: runner ? runner.groupId : null,
    runner_group_name: runner ? 'Default' : null,
    run_url: `https://api.github.com/repos/${job.repository}/actions/runs/${runId}`,
    url: `https://api.github.com/repos/${job.repository}/actions/jobs/${job.id}`,
    html_url: `https://github.com/${job.repository}/actions/runs/${runId}/job/${job.id}`,
    check_run_url: `https://api.github.com/repos/${job.repository}/check-runs/${job.id}`,
    steps: action === 'queued' ? [] : (wj.steps ?? []),
  });
  if (installationId === undefined) delete p.installation;
  else
    p.installation = {
      id: installationId,
      node_id: Buffer.from(`04:Installation${installationId}`).toString('base64'),
    };
  return p;
}

export class WebhookSender {
  readonly deliveries: Delivery[] = [];
  private chain: Promise<void> = Promise.resolve();
  private nextId = 90_000_001;

  constructor(
    private readonly target: WebhookTarget,
    private readonly check: (component: string, value: unknown) => string[],
    private readonly violation: (message: string) => void,
  ) {}

  /** Queues a delivery after those before it; resolves once it was attempted. */
  send(event: string, action: string, payload: Json): Promise<void> {
    const schema = event === 'workflow_job' ? `webhook-workflow-job-${action.replace('_', '-')}` : undefined;
    for (const problem of schema ? this.check(schema, payload) : [])
      this.violation(`stand-in GitHub built an invalid ${event}.${action} webhook: ${problem}`);
    const installation = (payload.installation as { id?: number } | undefined)?.id ?? null;
    return this.enqueue(
      { event, action, guid: randomUUID(), installationId: installation },
      JSON.stringify(payload),
      payload,
    );
  }

  /** Sends a delivery again (POST /app/hook/deliveries/{id}/attempts): same guid and bytes, a new id. */
  redeliver(d: Delivery): Promise<void> {
    return this.enqueue({ ...d, redelivery: true }, d.body, JSON.parse(d.body) as Json);
  }

  private enqueue(
    d: Pick<Delivery, 'event' | 'action' | 'guid' | 'installationId'> & { redelivery?: boolean },
    body: string,
    payload: Json,
  ): Promise<void> {
    const run = this.chain.then(() => this.post(d, body, payload));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves once every queued delivery was attempted. */
  idle(): Promise<void> {
    return this.chain;
  }

  private async post(
    what: Pick<Delivery, 'event' | 'action' | 'guid' | 'installationId'> & { redelivery?: boolean },
    body: string,
    payload: Json,
  ): Promise<void> {
    const started = Date.now();
    const d: Delivery = {
      id: this.nextId++,
      guid: what.guid,
      event: what.event,
      action: what.action,
      installationId: what.installationId,
      statusCode: 0,
      status: 'failed to connect',
      durationS: 0,
      deliveredAt: new Date().toISOString(),
      redelivery: what.redelivery ?? false,
      body,
    };
    // Listed once attempted, as GitHub lists them (an attempt in flight is not a failure yet).
    if (!d.redelivery && this.target.drop?.(d.event, payload)) {
      this.deliveries.push(d);
      return;
    }
    try {
      const res = await fetch(this.target.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'GitHub-Hookshot/stand-in',
          'x-github-event': d.event,
          'x-github-delivery': d.guid,
          'x-github-hook-installation-target-type': 'integration',
          'x-hub-signature-256': `sha256=${createHmac('sha256', this.target.secret).update(body).digest('hex')}`,
        },
        body,
        signal: AbortSignal.timeout(10_000),
      });
      await res.arrayBuffer();
      d.statusCode = res.status;
      d.status = res.status >= 200 && res.status < 300 ? 'OK' : `Invalid HTTP Response: ${res.status}`;
    } catch {
      d.statusCode = 0;
    }
    d.durationS = (Date.now() - started) / 1000;
    this.deliveries.push(d);
  }

  find(id: number): Delivery | undefined {
    return this.deliveries.find((d) => d.id === id);
  }
}

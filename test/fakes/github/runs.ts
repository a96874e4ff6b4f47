// Workflow runs and their jobs, as the queued-job poller reads them: every stand-in job is its
// own run (webhooks.ts: runIdOf). Objects are GitHub's own examples with the job's values, so
// they match the description; the server checks them like every reply.
import { notFound, type RestHandler, type RestReply } from './rest.ts';
import type { FakeJob } from './state.ts';
import { runIdOf } from './webhooks.ts';

type Json = Record<string, unknown>;

function ofRepo(jobs: FakeJob[], owner: string, repo: string): FakeJob[] {
  const full = `${owner}/${repo}`.toLowerCase();
  return jobs.filter((j) => j.repository.toLowerCase() === full);
}

function page<T>(all: T[], query: RestRequestQuery): T[] {
  const n = (v: unknown, d: number) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : d);
  const perPage = Math.min(Math.max(n(query.per_page, 30), 1), 100);
  const p = Math.max(n(query.page, 1), 1);
  return all.slice((p - 1) * perPage, p * perPage);
}
type RestRequestQuery = Record<string, string | string[] | undefined>;

function runJson(job: FakeJob, template: Json): Json {
  const runId = runIdOf(job.id);
  const [owner, name] = job.repository.split('/') as [string, string];
  const run = structuredClone(template);
  const repo = run.repository as Json;
  Object.assign(repo, { name, full_name: job.repository });
  Object.assign(repo.owner as Json, { login: owner });
  // Where the run's code comes from: the repository itself, or a fork (a pull request from it).
  const [headOwner, headName] = job.headRepository.split('/') as [string, string];
  const head = run.head_repository as Json;
  Object.assign(head, { name: headName, full_name: job.headRepository });
  Object.assign(head.owner as Json, { login: headOwner });
  Object.assign(run, {
    id: runId,
    event: job.event,
    name: job.name,
    run_number: job.id,
    status: job.status,
    conclusion: job.conclusion,
    run_attempt: 1,
    created_at: job.createdAt,
    updated_at: job.completedAt ?? job.startedAt ?? job.createdAt,
    url: `https://api.github.com/repos/${job.repository}/actions/runs/${runId}`,
    jobs_url: `https://api.github.com/repos/${job.repository}/actions/runs/${runId}/jobs`,
  });
  return run;
}

function jobJson(job: FakeJob, template: Json): Json {
  const runId = runIdOf(job.id);
  return {
    ...structuredClone(template),
    id: job.id,
    run_id: runId,
    run_attempt: 1,
    run_url: `https://api.github.com/repos/${job.repository}/actions/runs/${runId}`,
    url: `https://api.github.com/repos/${job.repository}/actions/jobs/${job.id}`,
    status: job.status,
    conclusion: job.conclusion,
    name: job.name,
    labels: [...job.labels],
    created_at: job.createdAt,
    started_at: job.startedAt ?? job.createdAt,
    completed_at: job.completedAt,
    runner_id: job.runnerId,
    runner_name: job.runnerName,
    runner_group_id: job.runnerId === null ? null : 1,
    runner_group_name: job.runnerId === null ? null : 'Default',
    steps: [],
  };
}

const example = (req: Parameters<RestHandler>[0], name: string, key: string): Json | undefined => {
  const ex = req.example?.(name) as Json | undefined;
  return (ex?.[key] as Json[] | undefined)?.[0];
};

const listRuns: RestHandler = (req): RestReply => {
  const template = example(req, 'workflow-run-paginated', 'workflow_runs');
  const status = typeof req.query.status === 'string' ? req.query.status : undefined;
  const runs = ofRepo(req.state.jobs(), req.params.owner!, req.params.repo!)
    .filter((j) => status === undefined || j.status === status)
    .reverse(); // newest first
  return {
    status: 200,
    body: {
      total_count: runs.length,
      workflow_runs: template ? page(runs, req.query).map((j) => runJson(j, template)) : [],
    },
  };
};

const runJobs: RestHandler = (req): RestReply => {
  const template = example(req, 'job-paginated', 'jobs');
  const runId = Number(req.params.run_id);
  const jobs = ofRepo(req.state.jobs(), req.params.owner!, req.params.repo!).filter(
    (j) => runIdOf(j.id) === runId,
  );
  if (jobs.length === 0) return notFound();
  return {
    status: 200,
    body: {
      total_count: jobs.length,
      jobs: template ? page(jobs, req.query).map((j) => jobJson(j, template)) : [],
    },
  };
};

const getRun: RestHandler = (req): RestReply => {
  const template = req.example?.('workflow-run') as Json | undefined;
  const runId = Number(req.params.run_id);
  const job = ofRepo(req.state.jobs(), req.params.owner!, req.params.repo!).find(
    (j) => runIdOf(j.id) === runId,
  );
  if (!job || !template) return notFound();
  return { status: 200, body: runJson(job, template) };
};

export const runHandlers: Record<string, RestHandler> = {
  'GET /repos/{owner}/{repo}/actions/runs': listRuns,
  'GET /repos/{owner}/{repo}/actions/runs/{run_id}': getRun,
  'GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs': runJobs,
};

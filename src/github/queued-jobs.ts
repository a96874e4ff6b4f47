// What the queued-job poller asks GitHub (core/poller.ts): the App's installations, their
// repositories, and per repository the jobs of queued runs. The runs list is asked conditionally
// (ETag per repository): an unchanged list costs a 304, which does not count against the rate
// limit. Every answer reports the rate limit left, so that a pass can stop before exhausting it.
import type { GitHubApp } from './app.ts';

export interface QueuedJob {
  jobId: number;
  runId: number;
  runAttempt: number;
  repository: string;
  labels: string[];
  installationId: number;
}

export interface RateLimit {
  remaining: number;
  limit: number;
}

export interface QueuedJobsApi {
  installations(): Promise<number[]>;
  repositories(installationId: number): Promise<string[]>;
  /** null: nothing changed since the last call for this repository (304). */
  queuedJobs(installationId: number, repository: string): Promise<QueuedJob[] | null>;
  /** Drops the repository's ETag: its next list is read whole even if unchanged. */
  forget?(repository: string): void;
  /** The rate limit as of the last answer (undefined: none yet). */
  readonly rateLimit: RateLimit | undefined;
}

const MAX_PAGES = 10;

export function queuedJobsApi(app: GitHubApp): QueuedJobsApi {
  const etags = new Map<string, string>();
  let rateLimit: RateLimit | undefined;
  const note = (headers: Record<string, string | number | undefined>) => {
    const remaining = Number(headers['x-ratelimit-remaining']);
    const limit = Number(headers['x-ratelimit-limit']);
    if (Number.isFinite(remaining) && Number.isFinite(limit)) rateLimit = { remaining, limit };
  };
  return {
    get rateLimit() {
      return rateLimit;
    },
    forget(repository) {
      etags.delete(repository.toLowerCase());
    },
    async installations() {
      const data = await app.appRequest<{ id: number }[]>('GET /app/installations', { per_page: 100 });
      return data.map((i) => i.id);
    },
    async repositories(installationId) {
      const out: string[] = [];
      for (let page = 1; page <= MAX_PAGES; page++) {
        const r = await app.installationGet<{ total_count: number; repositories: { full_name: string }[] }>(
          installationId,
          'GET /installation/repositories',
          { per_page: 100, page },
        );
        note(r.headers);
        if (r.notModified) break;
        out.push(...r.data.repositories.map((x) => x.full_name));
        if (out.length >= r.data.total_count || r.data.repositories.length === 0) break;
      }
      return out;
    },
    async queuedJobs(installationId, repository) {
      const [owner, repo] = repository.split('/');
      const key = repository.toLowerCase();
      const runs = await app.installationGet<{ workflow_runs: { id: number; run_attempt?: number }[] }>(
        installationId,
        'GET /repos/{owner}/{repo}/actions/runs',
        { owner, repo, status: 'queued', per_page: 100 },
        etags.get(key),
      );
      note(runs.headers);
      if (runs.notModified) return null;
      const etag = runs.headers.etag;
      if (typeof etag === 'string') etags.set(key, etag);
      const jobs: QueuedJob[] = [];
      for (const run of runs.data.workflow_runs) {
        const r = await app.installationGet<{
          jobs: { id: number; run_id: number; run_attempt?: number; status: string; labels: string[] }[];
        }>(installationId, 'GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs', {
          owner,
          repo,
          run_id: run.id,
          filter: 'latest',
          per_page: 100,
        });
        note(r.headers);
        if (r.notModified) continue;
        for (const j of r.data.jobs) {
          if (j.status !== 'queued') continue;
          jobs.push({
            jobId: j.id,
            runId: j.run_id,
            runAttempt: j.run_attempt ?? run.run_attempt ?? 1,
            repository,
            labels: j.labels,
            installationId,
          });
        }
      }
      return jobs;
    },
  };
}

// Where a workflow run came from (its triggering event and head repository), for pools' trust
// rules (core/trust.ts): a workflow_job webhook carries neither, the run does
// (GET /repos/{owner}/{repo}/actions/runs/{run_id}). Both never change for a run, so each run
// is asked once; the jobs of one run share the answer (concurrent asks included).
import type { RunOrigin } from '../core/trust.ts';
import type { GitHubApp } from './app.ts';

const CACHED_RUNS = 1000;

export type RunOriginSource = (
  repository: string,
  runId: number,
  installationId: number | null,
) => Promise<RunOrigin>;

export function runOrigins(app: GitHubApp): RunOriginSource {
  const cache = new Map<string, Promise<RunOrigin>>();
  return (repository, runId, installationId) => {
    const key = `${repository.toLowerCase()}#${runId}`;
    let known = cache.get(key);
    if (!known) {
      known = ask(app, repository, runId, installationId);
      // A failed ask is not kept: the next job (or the redelivered webhook) asks again.
      known.catch(() => cache.delete(key));
      if (cache.size >= CACHED_RUNS) cache.delete(cache.keys().next().value!);
      cache.set(key, known);
    }
    return known;
  };
}

async function ask(
  app: GitHubApp,
  repository: string,
  runId: number,
  installationId: number | null,
): Promise<RunOrigin> {
  const [owner, repo] = repository.split('/');
  const r = await app.installationGet<{ event: string; head_repository?: { full_name: string } | null }>(
    installationId ?? (await app.installationFor(repository)),
    'GET /repos/{owner}/{repo}/actions/runs/{run_id}',
    { owner, repo, run_id: runId },
  );
  if (r.notModified) throw new Error(`GitHub answered 304 to an unconditional GET of run ${runId}`);
  return { event: r.data.event, headRepository: r.data.head_repository?.full_name ?? null };
}

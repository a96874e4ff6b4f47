// The GitHub REST calls Hatchery makes about runners: mint a one-shot JIT config, list and
// delete registrations. Repository-scoped; the credential (PAT today, App installation later)
// is given per call, so one client serves every repository.
import { Octokit } from '@octokit/core';

export interface RunnerInfo {
  id: number;
  name: string;
  status: string;
  busy: boolean;
  labels: string[];
}

export interface JitConfig {
  runnerId: number;
  runnerName: string;
  encodedJitConfig: string;
}

export class GitHubError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message);
    this.name = 'GitHubError';
  }
  /** Worth retrying later (network, 5xx, rate limit) rather than a request we must not repeat. */
  get retryable(): boolean {
    return this.status === null || this.status >= 500 || this.status === 429 || this.status === 403;
  }
}

export interface RunnersApi {
  generateJitConfig(
    repository: string,
    req: { name: string; labels: string[]; runnerGroupId: number; workFolder?: string },
  ): Promise<JitConfig>;
  listRunners(repository: string): Promise<RunnerInfo[]>;
  /**
   * Resolves if this credential may manage the repository's self-hosted runners, else throws
   * GitHubError. One runner's page: like minting a JIT config it needs admin access to the
   * repository and, for a classic PAT, the `repo` scope (a fine-grained token needs
   * Administration: read here but write to mint, so a read-only one passes and fails later).
   */
  checkAccess(repository: string): Promise<void>;
  /** Deletes a registration; an absent runner counts as deleted. */
  deleteRunner(repository: string, runnerId: number): Promise<'deleted' | 'absent'>;
}

const API_VERSION = '2022-11-28';

function split(repository: string): { owner: string; repo: string } {
  const [owner, repo] = repository.split('/');
  if (!owner || !repo) throw new GitHubError(`invalid repository ${repository}`, null);
  return { owner, repo };
}

/** Maps Octokit's errors to GitHubError without ever including the request headers (the token). */
function wrap(what: string, e: unknown): GitHubError {
  const status =
    typeof (e as { status?: unknown }).status === 'number' ? (e as { status: number }).status : null;
  const data = (e as { response?: { data?: { message?: string } } }).response?.data;
  const detail = data?.message ?? (status === null ? (e as Error).message : `HTTP ${status}`);
  return new GitHubError(`${what}: ${detail}${status ? ` (HTTP ${status})` : ''}`, status);
}

export function createRunnersApi(opts: { apiUrl: string; token: string; userAgent?: string }): RunnersApi {
  const octokit = new Octokit({
    baseUrl: opts.apiUrl.replace(/\/+$/, ''),
    auth: opts.token,
    userAgent: opts.userAgent ?? 'hatchery',
    request: { retries: 0 },
  });
  const headers = { 'x-github-api-version': API_VERSION };

  return {
    async generateJitConfig(repository, req) {
      const { owner, repo } = split(repository);
      try {
        const r = await octokit.request('POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig', {
          owner,
          repo,
          name: req.name,
          labels: req.labels,
          runner_group_id: req.runnerGroupId,
          work_folder: req.workFolder ?? '_work',
          headers,
        });
        return {
          runnerId: r.data.runner.id,
          runnerName: r.data.runner.name,
          encodedJitConfig: r.data.encoded_jit_config,
        };
      } catch (e) {
        throw wrap(`generate JIT config for ${req.name} in ${repository}`, e);
      }
    },

    async listRunners(repository) {
      const { owner, repo } = split(repository);
      const all: RunnerInfo[] = [];
      for (let page = 1; page < 100; page++) {
        let r;
        try {
          r = await octokit.request('GET /repos/{owner}/{repo}/actions/runners', {
            owner,
            repo,
            per_page: 100,
            page,
            headers,
          });
        } catch (e) {
          throw wrap(`list runners of ${repository}`, e);
        }
        for (const x of r.data.runners) {
          all.push({
            id: x.id,
            name: x.name,
            status: x.status,
            busy: x.busy,
            labels: x.labels.map((l) => l.name),
          });
        }
        if (all.length >= r.data.total_count || r.data.runners.length === 0) break;
      }
      return all;
    },

    async checkAccess(repository) {
      const { owner, repo } = split(repository);
      try {
        await octokit.request('GET /repos/{owner}/{repo}/actions/runners', {
          owner,
          repo,
          per_page: 1,
          headers,
        });
      } catch (e) {
        throw wrap(`list runners of ${repository}`, e);
      }
    },

    async deleteRunner(repository, runnerId) {
      const { owner, repo } = split(repository);
      try {
        await octokit.request('DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}', {
          owner,
          repo,
          runner_id: runnerId,
          headers,
        });
        return 'deleted';
      } catch (e) {
        if ((e as { status?: number }).status === 404) return 'absent';
        throw wrap(`delete runner ${runnerId} of ${repository}`, e);
      }
    },
  };
}

// The GitHub REST calls Hatchery makes about runners: mint a one-shot JIT config, list and
// delete registrations. Repository-scoped; the credential is a PAT, or a source of tokens per
// repository (the GitHub App's installation tokens: ./app.ts), so one client serves every
// repository.
import { httpFetch } from './http-fetch.ts';
import { RateGate, type RateGateOptions, type Refusal } from './rate-gate.ts';
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

/**
 * GitHub refused a call for a rate limit (403 or 429: a secondary limit, or the primary one
 * exhausted). `retryAfterMs`: the wait GitHub named, or null when it named none.
 */
export class RateLimitedError extends GitHubError {
  override name = 'RateLimitedError';
  constructor(
    message: string,
    status: number,
    readonly retryAfterMs: number | null,
  ) {
    super(message, status);
  }
}

/**
 * Whether a 403/429 is a rate limit and how long GitHub asks to wait, as its docs ("Rate limits
 * for the REST API") say to read it: `retry-after` seconds; else `x-ratelimit-remaining: 0`
 * until `x-ratelimit-reset` (UTC epoch seconds); else a message naming a secondary rate limit
 * (or any 429) with no time. Undefined: not a rate limit (e.g. a 403 for missing permissions).
 */
export function rateLimitOf(
  status: number | null,
  headers: Record<string, unknown>,
  message: string,
  now: number,
): Refusal | undefined {
  if (status !== 403 && status !== 429) return undefined;
  const header = (name: string) => {
    const v = headers[name];
    return typeof v === 'string' || typeof v === 'number' ? String(v).trim() : undefined;
  };
  const retryAfter = header('retry-after');
  if (retryAfter !== undefined && /^\d{1,6}$/.test(retryAfter)) return { waitMs: Number(retryAfter) * 1000 };
  const reset = header('x-ratelimit-reset');
  if (header('x-ratelimit-remaining') === '0' && reset !== undefined && /^\d{1,12}$/.test(reset)) {
    return { waitMs: Math.max(0, Number(reset) * 1000 - now) };
  }
  if (status === 429 || /secondary rate limit|abuse detection/i.test(message)) return { waitMs: null };
  return undefined;
}

export interface RunnersApi {
  /**
   * Mints a one-shot runner config. GitHub's rate limits are waited out (RateGate: one time for
   * every caller of this client) until it succeeds, `signal` aborts, or the gate gives up.
   */
  generateJitConfig(
    repository: string,
    req: { name: string; labels: string[]; runnerGroupId: number; workFolder?: string },
    signal?: AbortSignal,
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

/** Where a client's tokens come from when they are not one fixed PAT (the GitHub App). */
export interface TokenSource {
  /** A token valid for the repository now. */
  tokenFor(repository: string): Promise<string>;
  /** GitHub refused the token: forget it (and its installation) so that the next one is fresh. */
  refused?(repository: string): void;
}

export const API_VERSION = '2022-11-28';
/** A call GitHub has not answered within this long failed (undici would wait 300 s for headers). */
const DEFAULT_TIMEOUT_MS = 30_000;

function split(repository: string): { owner: string; repo: string } {
  const [owner, repo] = repository.split('/');
  if (!owner || !repo) throw new GitHubError(`invalid repository ${repository}`, null);
  return { owner, repo };
}

/**
 * Why a request got no answer at all: the innermost cause (undici's `connect ECONNREFUSED
 * 127.0.0.1:8080`, `getaddrinfo ENOTFOUND api.example`, `socket hang up`), every address
 * tried for a name that resolves to several, or our own timeout.
 */
function networkCause(e: unknown, timeoutMs: number): string {
  let inner = e as Error & { errors?: unknown[] };
  for (let i = 0; i < 10 && inner.cause instanceof Error; i++) inner = inner.cause as typeof inner;
  if (inner.name === 'TimeoutError') return `no answer within ${timeoutMs / 1000} s`;
  if (Array.isArray(inner.errors) && inner.errors.length) {
    return [...new Set(inner.errors.map((x) => (x as Error).message))].join('; ');
  }
  return inner.message || inner.name || 'unknown network error';
}

/**
 * Maps Octokit's errors to GitHubError. Octokit reports a request that got no answer (refused,
 * DNS, reset, timeout) as status 500 with no response: that is not GitHub failing, so the
 * status is null (retryable) and the message keeps the cause. Never includes the request's
 * headers; the token is masked should any message carry it.
 */
export function wrap(what: string, e: unknown, token: string, timeoutMs: number): GitHubError {
  const response = (
    e as {
      response?: { status?: number; data?: { message?: unknown }; headers?: Record<string, unknown> };
    }
  ).response;
  const mask = (m: string) => (token ? m.split(token).join('[token]') : m);
  if (response === undefined) return new GitHubError(mask(`${what}: ${networkCause(e, timeoutMs)}`), null);
  const status = (e as { status?: unknown }).status;
  const code = typeof status === 'number' ? status : (response.status ?? null);
  const message = typeof response.data?.message === 'string' ? response.data.message : '';
  const detail = message ? `${message} (HTTP ${code})` : `HTTP ${code}`;
  const limited = rateLimitOf(code, response.headers ?? {}, message, Date.now());
  if (limited && code !== null) return new RateLimitedError(mask(`${what}: ${detail}`), code, limited.waitMs);
  return new GitHubError(mask(`${what}: ${detail}`), code);
}

export function createRunnersApi(opts: {
  apiUrl: string;
  /** A PAT, or a source of per-repository tokens (the GitHub App). */
  token: string | TokenSource;
  userAgent?: string;
  /** Per call (default 30 s). */
  timeoutMs?: number;
  /** How JIT generation waits out GitHub's rate limits (RateGate). */
  rateLimit?: RateGateOptions;
}): RunnersApi {
  const octokit = new Octokit({
    baseUrl: opts.apiUrl.replace(/\/+$/, ''),
    userAgent: opts.userAgent ?? 'hatchery',
    request: { retries: 0, fetch: httpFetch },
  });
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const fixed = typeof opts.token === 'string' ? opts.token : null;
  const source: TokenSource = fixed !== null ? { tokenFor: async () => fixed } : (opts.token as TokenSource);
  // GitHub's secondary limit on JIT generation is per App or token: one gate per client.
  const jitGate = new RateGate(opts.rateLimit);
  const refusal = (e: unknown): Refusal | undefined =>
    e instanceof RateLimitedError ? { waitMs: e.retryAfterMs } : undefined;
  /**
   * Runs one request with the repository's token (sent as a header: a fixed PAT and App tokens
   * alike), a fresh deadline (AbortSignal.timeout counts from its creation), and once more with
   * a fresh token when an App token was refused (revoked, or its installation replaced).
   */
  async function call<T>(
    repository: string,
    what: string,
    run: (request: { headers: Record<string, string>; request: { signal: AbortSignal } }) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let token = '';
      try {
        token = await source.tokenFor(repository);
        return await run({
          headers: { 'x-github-api-version': API_VERSION, authorization: `token ${token}` },
          request: { signal: AbortSignal.timeout(timeoutMs) },
        });
      } catch (e) {
        if (e instanceof GitHubError) throw e;
        const status = (e as { status?: number }).status;
        if (status === 401 && source.refused && attempt === 1) {
          source.refused(repository);
          continue;
        }
        throw wrap(what, e, token, timeoutMs);
      }
    }
  }

  return {
    async generateJitConfig(repository, req, signal) {
      const { owner, repo } = split(repository);
      const what = `generate JIT config for ${req.name} in ${repository}`;
      const r = await jitGate.run(
        what,
        () =>
          call(repository, what, (extra) =>
            octokit.request('POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig', {
              owner,
              repo,
              name: req.name,
              labels: req.labels,
              runner_group_id: req.runnerGroupId,
              work_folder: req.workFolder ?? '_work',
              ...extra,
            }),
          ),
        refusal,
        signal,
      );
      return {
        runnerId: r.data.runner.id,
        runnerName: r.data.runner.name,
        encodedJitConfig: r.data.encoded_jit_config,
      };
    },

    async listRunners(repository) {
      const { owner, repo } = split(repository);
      const all: RunnerInfo[] = [];
      for (let page = 1; page < 100; page++) {
        const r = await call(repository, `list runners of ${repository}`, (extra) =>
          octokit.request('GET /repos/{owner}/{repo}/actions/runners', {
            owner,
            repo,
            per_page: 100,
            page,
            ...extra,
          }),
        );
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
      await call(repository, `list runners of ${repository}`, (extra) =>
        octokit.request('GET /repos/{owner}/{repo}/actions/runners', { owner, repo, per_page: 1, ...extra }),
      );
    },

    async deleteRunner(repository, runnerId) {
      const { owner, repo } = split(repository);
      try {
        await call(repository, `delete runner ${runnerId} of ${repository}`, (extra) =>
          octokit.request('DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}', {
            owner,
            repo,
            runner_id: runnerId,
            ...extra,
          }),
        );
        return 'deleted';
      } catch (e) {
        // 404 from the runner endpoint: gone. Not from a GitHub App missing on the repository.
        if (e instanceof GitHubError && e.status === 404 && e.name !== 'NotInstalledError') return 'absent';
        throw e;
      }
    },
  };
}

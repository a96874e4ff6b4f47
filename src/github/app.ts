// The GitHub App: its JWT, the installation that covers each repository (found once, then
// cached), and installation tokens (minted by @octokit/auth-app, which caches them; refreshed
// here ahead of their expiry so that a call never starts with a token about to lapse).
// Implements runners.ts's TokenSource: the runner calls of explicit and autoscaled VMs alike
// go through it, and no PAT is needed anywhere.
import { httpFetch } from './http-fetch.ts';
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/core';
import { API_VERSION, GitHubError, wrap, type TokenSource } from './runners.ts';

/** GitHub answered that the App is not installed on the repository (or cannot see it). */
export class NotInstalledError extends GitHubError {
  override name = 'NotInstalledError';
}

/** Tokens live an hour; one with less than this left is replaced before it is used. */
export const REFRESH_MARGIN_MS = 5 * 60_000;
const DEFAULT_TIMEOUT_MS = 30_000;

export interface GitHubAppOptions {
  apiUrl: string;
  appId: number;
  /** PEM (app-key.ts reads and checks it). */
  privateKey: string;
  clock?: () => number;
  userAgent?: string;
  timeoutMs?: number;
}

export class GitHubApp implements TokenSource {
  readonly appId: number;
  private readonly octokit: Octokit;
  private readonly auth: ReturnType<typeof createAppAuth>;
  private readonly clock: () => number;
  private readonly timeoutMs: number;
  /** `owner/repo` (lower case) → installation id. */
  private readonly installations = new Map<string, number>();
  /** Lookups in flight: concurrent first calls for one repository ask GitHub once. */
  private readonly lookups = new Map<string, Promise<number>>();
  /** Installations whose cached token GitHub refused. */
  private readonly stale = new Set<number>();

  constructor(opts: GitHubAppOptions) {
    this.appId = opts.appId;
    this.clock = opts.clock ?? Date.now;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.octokit = new Octokit({
      baseUrl: opts.apiUrl.replace(/\/+$/, ''),
      userAgent: opts.userAgent ?? 'hatchery',
      request: { retries: 0, fetch: httpFetch },
    });
    // auth-app has no baseUrl option: it takes the request function to use (notes/libraries.md).
    this.auth = createAppAuth({
      appId: opts.appId,
      privateKey: opts.privateKey,
      request: this.octokit.request.defaults({ headers: { 'x-github-api-version': API_VERSION } }),
    });
  }

  /** A request authenticated as the App itself (JWT): /app/… endpoints. */
  async appRequest<T = unknown>(route: string, params: Record<string, unknown> = {}): Promise<T> {
    return (await this.appResponse<T>(route, params)).data;
  }

  /** appRequest with the response headers (pagination: Link). */
  async appResponse<T = unknown>(
    route: string,
    params: Record<string, unknown> = {},
  ): Promise<{ data: T; headers: Record<string, string | number | undefined> }> {
    let jwt = '';
    try {
      jwt = (await this.auth({ type: 'app' })).token;
      const r = await this.octokit.request(route, {
        ...params,
        headers: { 'x-github-api-version': API_VERSION, authorization: `bearer ${jwt}` },
        request: { signal: AbortSignal.timeout(this.timeoutMs) },
      });
      return { data: r.data as T, headers: r.headers as Record<string, string | number | undefined> };
    } catch (e) {
      throw wrap(`GitHub App ${this.appId}: ${route}`, e, jwt, this.timeoutMs);
    }
  }

  /** The installation covering the repository: asked once (`GET /repos/{owner}/{repo}/installation`). */
  async installationFor(repository: string): Promise<number> {
    const key = repository.toLowerCase();
    const known = this.installations.get(key);
    if (known !== undefined) return known;
    let pending = this.lookups.get(key);
    if (!pending) {
      pending = this.lookup(repository).finally(() => this.lookups.delete(key));
      this.lookups.set(key, pending);
    }
    return pending;
  }

  private async lookup(repository: string): Promise<number> {
    const [owner, repo] = repository.split('/');
    try {
      const data = await this.appRequest<{ id: number }>('GET /repos/{owner}/{repo}/installation', {
        owner,
        repo,
      });
      this.installations.set(repository.toLowerCase(), data.id);
      return data.id;
    } catch (e) {
      if (e instanceof GitHubError && e.status === 404) {
        throw new NotInstalledError(
          `GitHub App ${this.appId} is not installed on ${repository} (install it on the repository or its organization)`,
          404,
        );
      }
      throw e;
    }
  }

  /** A webhook named the installation a repository's event came from: no lookup needed. */
  remember(repository: string, installationId: number): void {
    this.installations.set(repository.toLowerCase(), installationId);
  }

  /** The installation was deleted or suspended: its repositories are looked up again. */
  forgetInstallation(installationId: number): void {
    for (const [repo, id] of this.installations) if (id === installationId) this.installations.delete(repo);
  }

  /** Repositories removed from an installation. */
  forgetRepositories(repositories: string[]): void {
    for (const r of repositories) this.installations.delete(r.toLowerCase());
  }

  async tokenFor(repository: string): Promise<string> {
    return this.installationToken(await this.installationFor(repository));
  }

  /** A token of the installation, minted or cached; replaced when it is about to lapse. */
  async installationToken(installationId: number): Promise<string> {
    try {
      // A token GitHub refused is still in auth-app's cache: mint a new one instead.
      let auth = await this.auth({
        type: 'installation',
        installationId,
        refresh: this.stale.delete(installationId),
      });
      if (Date.parse(auth.expiresAt) - this.clock() < REFRESH_MARGIN_MS) {
        auth = await this.auth({ type: 'installation', installationId, refresh: true });
      }
      return auth.token;
    } catch (e) {
      const err = wrap(
        `GitHub App ${this.appId}: token for installation ${installationId}`,
        e,
        '',
        this.timeoutMs,
      );
      // The installation is gone (uninstalled, replaced): look it up again next time.
      if (err.status === 404 || err.status === 401) this.forgetInstallation(installationId);
      throw err;
    }
  }

  /**
   * A GET with an installation token. With `etag`, a conditional request: `notModified` when
   * GitHub answers 304 (which does not count against the rate limit).
   */
  async installationGet<T>(
    installationId: number,
    route: string,
    params: Record<string, unknown>,
    etag?: string,
  ): Promise<
    | { notModified: true; headers: Record<string, string | number | undefined> }
    | { notModified: false; data: T; headers: Record<string, string | number | undefined> }
  > {
    const token = await this.installationToken(installationId);
    try {
      const r = await this.octokit.request(route, {
        ...params,
        headers: {
          'x-github-api-version': API_VERSION,
          authorization: `token ${token}`,
          ...(etag ? { 'if-none-match': etag } : {}),
        },
        request: { signal: AbortSignal.timeout(this.timeoutMs) },
      });
      return {
        notModified: false,
        data: r.data as T,
        headers: r.headers as Record<string, string | undefined>,
      };
    } catch (e) {
      const status = (e as { status?: number }).status;
      const headers = (e as { response?: { headers?: Record<string, string | undefined> } }).response
        ?.headers;
      if (status === 304) return { notModified: true, headers: headers ?? {} };
      if (status === 401) this.stale.add(installationId);
      throw wrap(`GitHub App ${this.appId}: ${route}`, e, token, this.timeoutMs);
    }
  }

  /** GitHub refused a token: the repository's installation is looked up again, its token minted anew. */
  refused(repository: string): void {
    const id = this.installations.get(repository.toLowerCase());
    if (id !== undefined) this.stale.add(id);
    this.installations.delete(repository.toLowerCase());
  }
}

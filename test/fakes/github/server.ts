// FakeGitHub: the stand-in GitHub every Hatchery test talks to. It answers the REST endpoints
// about self-hosted runners the way GitHub does, checks every request and response against
// GitHub's OpenAPI description (./openapi.ts; options.validation, ./contract.ts), serves the
// stand-in runner's tarball (./runner/), and hands queued jobs to stand-in runners that connect to it
// (./runner-protocol.ts). Anything that would not work against the real GitHub is recorded in
// `violations`: a test that ends with violations has found a bug in Hatchery or in this fake,
// and close() — which every test's cleanup calls — fails with them unless the test declared
// them (expectViolation) or took them to assert on (takeViolations).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { packageFile } from '../../../src/package-files.ts';
import { appHandlers, FakeApp, JWT_ROUTES, jwtRefusal, type FakeAppOptions, type Principal } from './app.ts';
import { loadContract, type ApiContract, type Validation } from './contract.ts';
import { API_VERSION, headerRefusal } from './headers.ts';
import {
  DOCS,
  notFound,
  restHandlers,
  scopeOf,
  validationFailed,
  type RestHandler,
  type RestReply,
} from './rest.ts';
import { createRunnerProtocol, formatJobAssignment, type RunnerProtocol } from './runner-protocol.ts';
import {
  FakeState,
  RUNNER_VERSION,
  scopeKey,
  type FakeJob,
  type FakeRunner,
  type JobEventAction,
  type QueueJobInput,
} from './state.ts';
import { SecondaryRateLimit, type SecondaryRateLimitOptions } from './rate-limit.ts';
import { runHandlers } from './runs.ts';
import { buildTarball } from './tarball.ts';
import { WebhookSender, workflowJobPayload, type WebhookTarget } from './webhooks.ts';

export type {
  FakeJob,
  FakeRunner,
  JobEventAction,
  JobConclusion,
  JobStatus,
  QueueJobInput,
} from './state.ts';
export type { FakeAppOptions, FakeInstallationSpec } from './app.ts';
export type { SecondaryRateLimitOptions } from './rate-limit.ts';
export { decodeJitConfig } from './runner-protocol.ts';

export { API_VERSION } from './headers.ts';
export const DEFAULT_TOKEN = 'ghp_testtoken0000000000000000000000000000';

export interface FakeGitHubOptions {
  /** Port on 127.0.0.1; default 0 (any free port). */
  port?: number;
  /** Accepted tokens (PATs, installation tokens…); default [DEFAULT_TOKEN]. */
  tokens?: string[];
  /**
   * Base URL the stand-in runner uses to reach this server from inside a VM, e.g.
   * 'http://10.0.2.100' (QEMU slirp guestfwd to this server's port); default: this.url.
   */
  guestBaseUrl?: string;
  /** When given, only these repositories (`owner/repo`) and their owners exist; others answer 404. */
  repositories?: string[];
  /**
   * Token → the only repositories (`owner/repo`) it may use; a token not listed may use any. Any
   * other repository, and every organization, answers 404 to it, as GitHub answers for what a
   * token cannot see (e.g. a fine-grained PAT not granted that repository).
   */
  grants?: Record<string, string[]>;
  /**
   * A GitHub App: its JWTs (verified with `publicKey`), installations and installation tokens
   * (accepted like `tokens`, on the repositories their installation covers).
   */
  app?: FakeAppOptions;
  /** How long a runner's long poll is held when no job comes (default 25 s). */
  longPollMs?: number;
  /**
   * An online runner not heard from for this long (no poll pending, no heartbeat) is lost:
   * its job fails, an ephemeral runner is removed, another goes offline. Default 30 s.
   */
  runnerLostAfterMs?: number;
  /**
   * Whether GitHub's OpenAPI description must be installed (default `required`: every test);
   * `if-installed` lets the demo run on a production install, checking nothing (./contract.ts).
   */
  validation?: Validation;
  /**
   * A secondary rate limit on `POST …/actions/runners/generate-jitconfig` (repository and
   * organization alike, one budget for all callers): refusals as GitHub sends them (./rate-limit.ts).
   */
  jitRateLimit?: SecondaryRateLimitOptions;
}

export interface RequestRecord {
  method: string;
  /** Path and query string as received. */
  path: string;
  status: number;
}

export interface RunnerTarball {
  /** Served by this server at url + urlPath (no authentication). */
  urlPath: string;
  sha256: string;
  size: number;
}

// From the package root: this module also runs compiled, from dist/ (`hatchery demo`).
const RUNNER_DIR = packageFile('test', 'fakes', 'github', 'runner');
const TARBALL_PATH = `/_downloads/actions-runner-linux-x64-${RUNNER_VERSION}.tar.gz`;
/**
 * Statuses GitHub answers on any operation though its description often leaves them out: a body
 * that is not JSON or an unsupported API version (400), bad credentials (401), no User-Agent
 * (403), not found (404), an Accept without JSON (415), a request that fails validation (422),
 * its own failure (500), a secondary rate limit (403 or 429: GitHub's "Rate limits for the REST
 * API" says any request may get either). Their bodies must still be a `basic-error`.
 */
const IMPLICIT_STATUSES = [400, 401, 403, 404, 415, 422, 429, 500];

/** close() rejects with this when the test left violations it did not acknowledge. */
export class FakeGitHubViolations extends Error {
  constructor(
    readonly violations: readonly string[],
    readonly unmet: readonly RegExp[],
  ) {
    const lines = [
      ...violations.map((v) => `  - ${v}`),
      ...unmet.map((re) => `  - expected a violation matching ${re}, but none happened`),
    ];
    super(
      `the stand-in GitHub saw ${violations.length} API violation(s) nobody acknowledged` +
        `${unmet.length ? ` and missed ${unmet.length} expected one(s)` : ''}:\n${lines.join('\n')}`,
    );
    this.name = 'FakeGitHubViolations';
  }
}

function buildRunnerTarball(): { data: Buffer; info: RunnerTarball } {
  const file = (name: string) => readFileSync(join(RUNNER_DIR, name));
  const t = buildTarball([
    { name: 'run.sh', mode: 0o755, data: file('run.sh') },
    { name: 'config.sh', mode: 0o755, data: file('config.sh') },
    { name: 'http.sh', mode: 0o644, data: file('http.sh') },
    { name: 'VERSION', mode: 0o644, data: Buffer.from(`${RUNNER_VERSION}\n`) },
  ]);
  return { data: t.data, info: { urlPath: TARBALL_PATH, sha256: t.sha256, size: t.size } };
}

export class FakeGitHub {
  readonly requests: RequestRecord[] = [];
  readonly runnerTarball: RunnerTarball;
  /** The GitHub App (options.app), if any. */
  readonly githubApp: FakeApp | undefined;
  /** The secondary rate limit on JIT config generation (options.jitRateLimit), if any. */
  readonly jitRateLimit: SecondaryRateLimit | undefined;

  private readonly state: FakeState;
  private readonly tokens: Set<string>;
  private readonly repositories: Set<string> | undefined;
  private readonly grants: Map<string, Set<string>>;
  private readonly protocol: RunnerProtocol;
  private readonly tarballData: Buffer;
  private readonly app = express();
  private server: Server | undefined;
  private baseUrl = '';
  private guestUrl: string | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private offline: Promise<void> | undefined;
  private requestCount = 0;
  private readonly recorded: string[] = [];
  private readonly expected: { pattern: RegExp; seen: boolean }[] = [];

  private constructor(
    private readonly opts: FakeGitHubOptions,
    private readonly api: ApiContract,
  ) {
    this.state = new FakeState(formatJobAssignment);
    this.githubApp = opts.app && new FakeApp(opts.app);
    this.jitRateLimit = opts.jitRateLimit && new SecondaryRateLimit(opts.jitRateLimit);
    this.tokens = new Set(opts.tokens ?? [DEFAULT_TOKEN]);
    this.repositories = opts.repositories && new Set(opts.repositories.map((r) => r.toLowerCase()));
    this.grants = new Map(
      Object.entries(opts.grants ?? {}).map(([t, repos]) => [t, new Set(repos.map((r) => r.toLowerCase()))]),
    );
    this.guestUrl = opts.guestBaseUrl?.replace(/\/+$/, '');
    const tarball = buildRunnerTarball();
    this.tarballData = tarball.data;
    this.runnerTarball = Object.freeze(tarball.info);
    this.protocol = createRunnerProtocol({
      state: this.state,
      longPollMs: opts.longPollMs ?? 25_000,
      violation: (m) => this.violation(m),
      serverUrlFor: (req) => `http://${req.get('host') ?? '127.0.0.1'}`,
    });

    this.app.disable('x-powered-by');
    this.app.set('etag', false);
    this.app.get(TARBALL_PATH, (_req, res) => {
      res.type('application/octet-stream').send(this.tarballData);
    });
    this.app.use('/_runner', this.protocol.router);
    this.app.use(express.raw({ type: () => true, limit: '5mb' }));
    this.app.use((req, res) => this.handleApi(req, res));
    this.app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
      const status = (err as { status?: number }).status ?? 500;
      this.violation(`${req.method} ${req.originalUrl}: ${String((err as Error).message ?? err)}`);
      if (!res.headersSent)
        this.reply(req, res, {
          status,
          body: { message: 'Problems parsing the request', documentation_url: DOCS, status: String(status) },
        });
    });
  }

  static async start(opts: FakeGitHubOptions = {}): Promise<FakeGitHub> {
    const api = await loadContract(opts.validation ?? 'required', [
      ...Object.keys(restHandlers),
      ...Object.keys(runHandlers),
      ...(opts.app ? Object.keys(appHandlers) : []),
    ]);
    const fake = new FakeGitHub(opts, api);
    await new Promise<void>((resolve, reject) => {
      const server = fake.app.listen(opts.port ?? 0, '127.0.0.1', (err?: Error) =>
        err ? reject(err) : resolve(),
      );
      server.on('error', reject);
      fake.server = server;
    });
    const port = (fake.server!.address() as AddressInfo).port;
    fake.baseUrl = `http://127.0.0.1:${port}`;
    const lostAfter = opts.runnerLostAfterMs ?? 30_000;
    fake.sweeper = setInterval(() => fake.sweepLostRunners(lostAfter), Math.min(1000, lostAfter));
    fake.sweeper.unref();
    return fake;
  }

  /** The API base URL, e.g. 'http://127.0.0.1:41234'. */
  get url(): string {
    return this.baseUrl;
  }

  /**
   * Why requests and replies are not checked against GitHub's description (only with
   * `validation: 'if-installed'`, when it is not installed); undefined when they are.
   */
  get unchecked(): string | undefined {
    return this.api.unchecked;
  }

  /** The base URL written into JIT configs (options.guestBaseUrl, default this.url). */
  get guestBaseUrl(): string {
    return this.guestUrl ?? this.baseUrl;
  }

  // --- in-process test API ---

  /** Everything recorded so far that would not work against GitHub (not yet taken). */
  get violations(): readonly string[] {
    return [...this.recorded];
  }

  /** Returns the violations recorded so far and forgets them: the caller asserts on them. */
  takeViolations(): string[] {
    return this.recorded.splice(0);
  }

  /**
   * Declares a violation the test provokes on purpose (also from background work it cannot
   * wait for): close() accepts the violations matching `pattern`, and fails if none did.
   */
  expectViolation(pattern: RegExp): void {
    this.expected.push({ pattern, seen: false });
  }

  /**
   * GitHub becomes unreachable: the listening socket closes and open connections are dropped
   * (clients get ECONNREFUSED); runners, jobs and tokens are kept for goOnline().
   */
  async goOffline(): Promise<void> {
    const server = this.server;
    if (!server || this.offline) return;
    this.offline = new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    await this.offline;
  }

  /** GitHub is back, on the same port, with the state it had. */
  async goOnline(): Promise<void> {
    const server = this.server;
    if (!server || !this.offline) return;
    await this.offline;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(Number(new URL(this.baseUrl).port), '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.offline = undefined;
  }

  /** Queues a job (as a workflow run would); it goes to a matching idle runner of the repository. */
  queueJob(input: QueueJobInput): FakeJob {
    return this.state.queueJob(input);
  }

  /** Resolves with the job once it has completed (default timeout 60 s). */
  waitForJob(id: number, opts: { timeoutMs?: number } = {}): Promise<FakeJob> {
    if (!this.state.job(id)) return Promise.reject(new Error(`no job ${id}`));
    return this.state.waitUntil(
      () => {
        const j = this.state.job(id);
        return j?.status === 'completed' ? j : undefined;
      },
      opts.timeoutMs ?? 60_000,
      () => `job ${id} to complete (it is ${this.state.job(id)?.status})`,
    );
  }

  job(id: number): FakeJob | undefined {
    return this.state.job(id);
  }

  jobs(): FakeJob[] {
    return this.state.jobs();
  }

  /** Every encoded JIT config handed out so far, oldest first. */
  issuedJitConfigs(): string[] {
    return [...this.state.issuedJitConfigs];
  }

  /** Runner registrations; with a repository (`owner/repo`), that repository's runners only. */
  runners(repository?: string): FakeRunner[] {
    const all = [...this.state.runnersById.values()];
    const picked =
      repository === undefined
        ? all
        : all.filter(
            (r) =>
              scopeKey(r.scope) ===
              scopeKey({
                kind: 'repo',
                owner: repository.split('/')[0] ?? '',
                repo: repository.split('/')[1] ?? '',
              }),
          );
    return picked.map((r) => this.state.snapshotRunner(r));
  }

  /** Resolves with the first runner for which predicate holds (default timeout 30 s). */
  waitForRunner(
    predicate: (r: FakeRunner) => boolean,
    opts: { timeoutMs?: number } = {},
  ): Promise<FakeRunner> {
    return this.state.waitUntil(
      () => this.runners().find(predicate),
      opts.timeoutMs ?? 30_000,
      () => `a runner matching ${predicate.toString()} (runners: ${JSON.stringify(this.runners())})`,
    );
  }

  /** Resolves once check() holds; checked after every change of runners or jobs (default 30 s). */
  async waitUntil(check: () => boolean, opts: { timeoutMs?: number; what?: string } = {}): Promise<void> {
    await this.state.waitUntil(
      () => (check() ? true : undefined),
      opts.timeoutMs ?? 30_000,
      () => opts.what ?? check.toString(),
    );
  }

  /**
   * From now on, posts a signed workflow_job webhook to `target` for every job change, as GitHub
   * does for an App subscribed to workflow_job (./webhooks.ts); returns the sender (deliveries).
   */
  sendWebhooks(target: WebhookTarget): WebhookSender {
    const sender = new WebhookSender(
      target,
      (component, value) => this.api.validateSchema(component, value),
      (m) => this.violation(m),
    );
    if (this.githubApp) this.githubApp.sender = sender;
    this.state.onJob((action, job) => {
      const r = job.runnerId === null ? undefined : this.state.runnersById.get(job.runnerId);
      const runner = job.runnerId === null ? null : { id: job.runnerId, groupId: r?.runnerGroupId ?? 1 };
      const installation =
        target.installationFor?.(job.repository) ??
        this.githubApp?.installationFor({
          kind: 'repo',
          owner: job.repository.split('/')[0]!,
          repo: job.repository.split('/')[1]!,
        })?.id;
      try {
        void sender.send('workflow_job', action, workflowJobPayload(action, job, runner, installation));
      } catch (e) {
        // Job listeners' errors are swallowed: a webhook the stand-in failed to build must show.
        this.violation(
          `stand-in GitHub failed to build a workflow_job.${action} webhook: ${(e as Error).stack}`,
        );
      }
    });
    return sender;
  }

  /** Calls listener on every job change (queued, in_progress, completed); returns an unsubscribe. */
  onJob(listener: (action: JobEventAction, job: FakeJob) => void): () => void {
    return this.state.onJob(listener);
  }

  /**
   * Stops the server (answers pending long polls, closes connections, rejects pending waits),
   * then rejects with FakeGitHubViolations if any violation was neither expected nor taken, or
   * an expected one never happened: a test's cleanup calls it, so every request a test caused —
   * including the service's background calls after its last assertion — is checked.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.sweeper) clearInterval(this.sweeper);
      this.protocol.closeAll();
      this.state.failWaiters(new Error('FakeGitHub closed'));
      const server = this.server;
      if (server && !this.offline) {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
          setImmediate(() => server.closeAllConnections());
        });
      }
      const unexpected = this.recorded.filter((v) => !this.isExpected(v));
      const unmet = this.expected.filter((e) => !e.seen).map((e) => e.pattern);
      if (unexpected.length || unmet.length) throw new FakeGitHubViolations(unexpected, unmet);
    })();
    return this.closing;
  }

  // --- internals ---

  private violation(message: string): void {
    this.recorded.push(message);
    for (const e of this.expected) if (e.pattern.test(message)) e.seen = true;
  }

  private isExpected(violation: string): boolean {
    return this.expected.some((e) => e.pattern.test(violation));
  }

  private sweepLostRunners(lostAfterMs: number): void {
    const now = Date.now();
    for (const r of [...this.state.runnersById.values()]) {
      if (r.status === 'online' && !r.poll && now - r.lastContact > lostAfterMs) {
        this.state.runnerGone(r, `the runner lost communication with the server (${lostAfterMs} ms)`);
      }
    }
  }

  /**
   * Sends a REST reply after checking it against the description: against the operation's
   * documented responses when the request matched one, else as a bare error reply.
   */
  private reply(
    req: Request,
    res: Response,
    reply: RestReply,
    op?: { method: string; template: string },
  ): void {
    const api = this.api;
    const headers = {
      ...(reply.body === undefined ? {} : { 'content-type': 'application/json; charset=utf-8' }),
      ...reply.headers,
    };
    const problems = op
      ? api.validateResponse(op.method, op.template, reply.status, reply.body, {
          implicitStatuses: IMPLICIT_STATUSES,
          headers,
          requestUrl: new URL(req.originalUrl, this.baseUrl),
        })
      : api.validateErrorReply(reply.status, reply.body);
    for (const p of problems)
      this.violation(`stand-in GitHub sent an invalid response to ${req.method} ${req.originalUrl}: ${p}`);
    this.requests.push({ method: req.method, path: req.originalUrl, status: reply.status });
    const used = ++this.requestCount;
    res.set({
      'x-github-api-version-selected': API_VERSION,
      'x-ratelimit-limit': '5000',
      'x-ratelimit-remaining': String(Math.max(0, 5000 - used)),
      'x-ratelimit-used': String(used),
      'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + 3600),
      'x-ratelimit-resource': 'core',
      ...headers,
    });
    res.status(reply.status);
    if (reply.body === undefined) res.end();
    else res.json(reply.body);
  }

  /**
   * Who the Authorization header authenticates, for this operation, or GitHub's 401: JWT-only
   * endpoints take the App's JWT and nothing else; the others a known token or an unexpired
   * installation token.
   */
  private authenticate(key: string, authorization: string | undefined): Principal | RestReply {
    const bearer = /^(?:token|bearer)\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    const refused: RestReply = {
      status: 401,
      body: {
        message: authorization ? 'Bad credentials' : 'Requires authentication',
        documentation_url: DOCS,
        status: '401',
      },
    };
    if (!bearer) return refused;
    if (JWT_ROUTES.has(key)) {
      if (!this.githubApp) return jwtRefusal('A JSON web token could not be decoded');
      const problem = this.githubApp.jwtProblem(bearer);
      return problem ? jwtRefusal(problem) : { kind: 'app', appId: this.githubApp.id };
    }
    if (this.tokens.has(bearer)) return { kind: 'token', token: bearer };
    const installation = this.githubApp?.token(bearer);
    if (installation)
      return { kind: 'installation', installationId: installation.installationId, token: bearer };
    return refused;
  }

  private handleApi(req: Request, res: Response): void {
    const api = this.api;
    const path = req.path;
    const what = `${req.method} ${req.originalUrl}`;
    const match = api.match(req.method, path);
    if (!match) {
      this.violation(`${what}: ${api.unmatched(req.method, path)}`);
      this.reply(req, res, notFound());
      return;
    }
    const key = `${match.method} ${match.template}`;
    const app = this.githubApp;
    const appHandler = app ? appHandlers[key] : undefined;
    const handler: RestHandler | undefined =
      restHandlers[key] ?? runHandlers[key] ?? (app && appHandler ? (r) => appHandler(app, r) : undefined);
    if (!handler) {
      this.violation(`${what}: ${key} (${match.operationId}) is not implemented by the stand-in GitHub`);
      this.reply(req, res, notFound(), match);
      return;
    }

    const refusal = headerRefusal((name) => req.get(name));
    if (refusal) {
      this.violation(`${what}: ${refusal.problem}`);
      this.reply(req, res, refusal.reply, match);
      return;
    }

    const principal = this.authenticate(key, req.get('authorization'));
    if ('status' in principal) {
      this.reply(req, res, principal, match);
      return;
    }

    let body: unknown;
    const raw = Buffer.isBuffer(req.body) ? req.body : undefined;
    if (raw && raw.length > 0) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        this.violation(`${what}: the request body is not JSON`);
        this.reply(
          req,
          res,
          { status: 400, body: { message: 'Problems parsing JSON', documentation_url: DOCS, status: '400' } },
          match,
        );
        return;
      }
    }
    const query = req.query as Record<string, string | string[] | undefined>;
    const problems = api.validateRequest(match.method, match.template, {
      params: match.params,
      query,
      body,
      contentType: req.get('content-type'),
      headers: req.headers as Record<string, string | undefined>,
    });
    if (problems.length) {
      for (const p of problems) this.violation(`invalid request ${what}: ${p}`);
      this.reply(req, res, validationFailed(problems), match);
      return;
    }

    const scope = scopeOf(match.params);
    // /app/… endpoints are about the App, not about a repository.
    const scoped = !match.template.startsWith('/app/') && !match.template.startsWith('/installation/');
    if (scoped && this.repositories) {
      const known =
        scope.kind === 'repo'
          ? this.repositories.has(`${scope.owner}/${scope.repo}`.toLowerCase())
          : [...this.repositories].some((r) => r.split('/')[0] === scope.org.toLowerCase());
      if (!known) {
        this.reply(req, res, notFound(), match);
        return;
      }
    }
    const granted = principal.kind === 'token' ? this.grants.get(principal.token) : undefined;
    if (granted && (scope.kind !== 'repo' || !granted.has(`${scope.owner}/${scope.repo}`.toLowerCase()))) {
      this.reply(req, res, notFound(), match);
      return;
    }
    // An installation token reaches only what its installation covers (GitHub: 404).
    if (scoped && principal.kind === 'installation' && !app?.covers(principal.installationId, scope)) {
      this.reply(req, res, notFound(), match);
      return;
    }

    // Past authentication and validation, as GitHub counts what it would have done.
    if (this.jitRateLimit && match.method === 'POST' && match.template.endsWith('/generate-jitconfig')) {
      const refusal = this.jitRateLimit.take();
      if (refusal) {
        this.reply(req, res, refusal, match);
        return;
      }
    }

    let reply: RestReply;
    try {
      reply = handler({
        state: this.state,
        params: match.params,
        query,
        body,
        apiUrl: this.baseUrl,
        path,
        guestBaseUrl: this.guestBaseUrl,
        principal,
        example: (name) => this.api.example(name),
      });
    } catch (e) {
      this.violation(`${what}: the stand-in GitHub failed: ${(e as Error).stack ?? String(e)}`);
      this.reply(
        req,
        res,
        { status: 500, body: { message: 'Server Error', documentation_url: DOCS } },
        match,
      );
      return;
    }
    // Conditional requests, as GitHub answers every GET: an unchanged body is a 304 (free of rate limit).
    if (req.method === 'GET' && reply.status === 200 && reply.body !== undefined) {
      const etag = `W/"${createHash('sha256').update(JSON.stringify(reply.body)).digest('hex').slice(0, 32)}"`;
      if (req.get('if-none-match') === etag) {
        this.requests.push({ method: req.method, path: req.originalUrl, status: 304 });
        res.set({ etag, 'x-github-api-version-selected': API_VERSION }).status(304).end();
        return;
      }
      reply = { ...reply, headers: { ...reply.headers, ETag: etag } };
    }
    this.reply(req, res, reply, match);
  }
}

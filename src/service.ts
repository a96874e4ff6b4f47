// The composition root: builds store, providers, GitHub access, core and HTTP from one parsed
// config, and owns start-up (recover, adopt) and shutdown order. `hatchery serve`, the demo and
// the end-to-end tests all run the service through this one function.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { publicUrl } from './config/load.ts';
import type { Config } from './config/schema.ts';
import type { CoreContext } from './core/context.ts';
import { crashPointFor } from './core/crash-points.ts';
import { GuestInbox } from './core/guest-inbox.ts';
import { GuestLinks } from './core/guest-links.ts';
import { Intake } from './core/intake.ts';
import { Admission } from './core/admission.ts';
import { JobIntake } from './core/jobs.ts';
import { runOrigins } from './github/run-origin.ts';
import { Notifier } from './core/notifier.ts';
import { Reconciler } from './core/reconcile.ts';
import { Worker } from './core/worker.ts';
import { HostLines } from './core/host-lines.ts';
import { WarmPools } from './core/warm-pools.ts';
import { decryptGitHubToken } from './crypto/openssl.ts';
import { GitHubApp } from './github/app.ts';
import { readAppPrivateKey } from './github/app-key.ts';
import { deliveriesApi } from './github/deliveries.ts';
import { Redeliverer } from './core/redeliver.ts';
import { QueuedJobPoller } from './core/poller.ts';
import { queuedJobsApi } from './github/queued-jobs.ts';
import type { RateGateOptions } from './github/rate-gate.ts';
import { createRunnersApi, GitHubError, type RunnersApi } from './github/runners.ts';
import { BOOTSTRAP_FILES, GUEST_OSES, runnerFor, type GuestOs } from './guest/os.ts';
import { createApp } from './http/app.ts';
import { createHttpServer, LISTEN_BACKLOG } from './http/limits.ts';
import { createLogger, type Logger } from './log.ts';
import { packageFile } from './package-files.ts';
import { isTerminal } from './model/states.ts';
import { Providers } from './providers/build.ts';
import { SshRemote } from './remote/remote.ts';
import { SqliteStore } from './store/sqlite.ts';
import type { Store } from './store/store.ts';

/** The bootstrap of each guest OS (a pool's `os`), read once at start-up. */
export const BOOTSTRAP_PATHS = Object.fromEntries(
  GUEST_OSES.map((os) => [os, packageFile('bootstrap', BOOTSTRAP_FILES[os])]),
) as Record<GuestOs, string>;

export interface ServiceOptions {
  config: Config;
  log?: Logger;
  clock?: () => number;
  /** Start the HTTP server (default true). */
  http?: boolean;
  /** Provider instances to use instead of building them from the config (tests). */
  providers?: Providers;
  /** Config warnings (loadConfig), logged at start-up. */
  warnings?: string[];
  /** Tests: stop the process at this crash point (core/crash-points.ts). */
  crashAt?: string;
}

export class HatcheryService {
  private server: Server | null = null;
  private boundPort = 0;

  private constructor(
    readonly config: Config,
    readonly ctx: CoreContext,
    readonly store: Store,
    readonly providers: Providers,
    readonly intake: Intake,
    readonly jobs: JobIntake,
    readonly githubApp: GitHubApp | null,
    /** Failed webhook deliveries redelivered (with a GitHub App and its webhook secret). */
    readonly redeliverer: Redeliverer | null,
    /** Queued jobs no webhook announced (with a GitHub App). */
    readonly poller: QueuedJobPoller | null,
    readonly links: GuestLinks,
    readonly worker: Worker,
    readonly reconciler: Reconciler,
    readonly log: Logger,
    /** Pools' VMs booted ahead (min_idle). */
    readonly warmPools: WarmPools,
  ) {}

  static async start(opts: ServiceOptions): Promise<HatcheryService> {
    const { config } = opts;
    const log = opts.log ?? createLogger({ level: config.log.level });
    const clock = opts.clock ?? Date.now;
    for (const w of opts.warnings ?? []) log.warn(w);
    const store = new SqliteStore(config.store.path);

    const providers = opts.providers ?? Providers.build(config, log);
    // GitHub's rate limits on JIT generation are waited out (src/github/rate-gate.ts); each
    // refusal is logged, so that an operator sees the limit, not only slower VMs.
    const rateLimit: RateGateOptions = {
      onRefused: (r) =>
        log.warn(
          { what: r.what, wait_ms: r.waitMs, named_by_github: r.named, strikes: r.strikes },
          'GitHub rate limit: waiting before minting again',
        ),
    };
    const apis = new Map<string, RunnersApi>();
    const apiFor = (token: string): RunnersApi => {
      let api = apis.get(token);
      if (!api) {
        api = createRunnersApi({ apiUrl: config.github.api_url, token, rateLimit });
        // Legacy requests may each bring their own PAT: keep only the most recent clients.
        if (apis.size >= 32) apis.delete(apis.keys().next().value!);
        apis.set(token, api);
      }
      return api;
    };
    // The GitHub App, when configured, mints every runner but those of legacy requests that
    // bring their own PAT: its tokens last an hour and cover only the repositories it is installed on.
    const githubApp = config.github.app
      ? new GitHubApp({
          apiUrl: config.github.api_url,
          appId: config.github.app.id,
          privateKey: readAppPrivateKey(config.github.app.private_key_file),
          clock,
        })
      : null;
    const appRunners = githubApp
      ? createRunnersApi({ apiUrl: config.github.api_url, token: githubApp, rateLimit })
      : null;
    const runnersFor = (vm: { credential: string | null }): RunnersApi => {
      if (vm.credential) {
        if (!config.legacy.openssl_password)
          throw new GitHubError('legacy credential but no legacy.openssl_password', 401);
        return apiFor(decryptGitHubToken(vm.credential, config.legacy.openssl_password));
      }
      if (appRunners) return appRunners;
      if (!config.github.token)
        throw new GitHubError(
          'no GitHub credential: set github.app (a GitHub App) or github.token (HATCHERY_GITHUB_TOKEN)',
          401,
        );
      return apiFor(config.github.token);
    };

    const notifier = new Notifier();
    // The service's URL is known once it listens (port 0 picks one): read it late.
    let baseUrl = (): string => publicUrl(config);
    const ctx: CoreContext = {
      store,
      providerFor: (vm) => (vm.provider && providers.named(vm.provider)) || providers.forPool(vm.pool),
      providers: () => providers.all().map((p) => p.provider),
      runnersFor,
      pools: config.pools,
      maxVms: config.limits.max_vms,
      ...(githubApp ? { runOrigin: runOrigins(githubApp) } : {}),
      admission: {
        maxProvisioning: config.limits.max_provisioning,
        tenants: config.limits.tenants,
        maxCreating: 2 * config.workers.concurrency,
      },
      runnerDownload:
        config.runner.url && config.runner.sha256
          ? { url: config.runner.url, sha256: config.runner.sha256 }
          : null,
      runnerGroupId: config.github.runner_group_id,
      bootstraps: Object.fromEntries(
        GUEST_OSES.map((os) => [os, readFileSync(BOOTSTRAP_PATHS[os], 'utf8')]),
      ) as Record<GuestOs, string>,
      remote: new SshRemote(config.ssh.state_dir, log.child({ component: 'ssh' })),
      channelUrl: (pool) => pool.channel_url ?? baseUrl(),
      instanceId: config.instance_id,
      clock,
      log,
      notifier,
      crashPoint: crashPointFor(opts.crashAt),
    };
    if (config.pools.some((p) => runnerFor(p, ctx.runnerDownload) === null))
      log.warn('runner.url / runner.sha256 not set: VMs cannot be provisioned until they are');
    if (config.legacy.enabled && !config.legacy.secret)
      log.warn(
        'legacy.allow_unsigned: the legacy route accepts unsigned requests from anyone who can reach it',
      );
    if (!config.github.token && !githubApp)
      log.warn(
        'neither github.app nor github.token set: only legacy requests carrying a PAT can mint runners',
      );

    const links = new GuestLinks(ctx);
    ctx.hostLines = new HostLines(links);
    const intake = new Intake(ctx);
    const jobs = new JobIntake(ctx);
    const worker = new Worker(ctx, {
      concurrency: config.workers.concurrency,
      leaseMs: config.workers.lease_seconds * 1000,
      pollMs: config.workers.poll_ms,
    });
    const reconciler = new Reconciler(
      ctx,
      links,
      config.reconcile.interval_seconds * 1000,
      config.reconcile.ghost_sweep_every,
    );
    const service = new HatcheryService(
      config,
      ctx,
      store,
      providers,
      intake,
      jobs,
      githubApp,
      githubApp && config.github.app?.webhook_secret
        ? new Redeliverer(
            { store, log: log.child({ component: 'redeliver' }), clock },
            deliveriesApi(githubApp),
            Math.max(1, config.github.app.redeliver_seconds) * 1000,
          )
        : null,
      githubApp && config.github.app
        ? new QueuedJobPoller(
            {
              jobs,
              log: log.child({ component: 'poller' }),
              remember: (repository, id) => githubApp.remember(repository, id),
            },
            queuedJobsApi(githubApp),
            Math.max(1, config.github.app.poll_seconds) * 1000,
          )
        : null,
      links,
      worker,
      reconciler,
      log,
      new WarmPools(ctx, config.reconcile.interval_seconds * 1000),
    );
    baseUrl = () => service.url;

    // Images used by pools are made ready (built, found in a cache, probed) before the first
    // request needs them: that VM would wait for it otherwise.
    for (const pool of config.pools) {
      const provider = providers.forPool(pool.name);
      try {
        await provider.prepare?.(pool.image, (msg) => log.info({ pool: pool.name, image: pool.image }, msg));
      } catch (e) {
        log.error(
          { pool: pool.name, image: pool.image, err: (e as Error).message },
          'image not available: VMs of this pool will fail',
        );
      }
    }
    const recovered = await reconciler.recover();
    log.info({ adopted: recovered.adopted, vanished: recovered.vanished.length }, 'recovered state');
    // SSH key pairs of VMs that ended while the service was down (or before a crash removed them).
    await ctx.remote!.sweep(async (names) => {
      const live = new Set(
        (await store.getVms(names)).filter((v) => !isTerminal(v.state)).map((v) => v.name),
      );
      return names.filter((n) => !live.has(n));
    });
    worker.start();
    reconciler.start();
    // After recovery: what the last process left is adopted first, then topped up or retired.
    service.warmPools.start();
    if (opts.http !== false) await service.listen(apiFor);
    // After listening: what it redelivers comes back to this service.
    if (config.github.app?.redeliver_seconds) service.redeliverer?.start();
    if (config.github.app?.poll_seconds) service.poller?.start();
    return service;
  }

  /** `apiFor`: the GitHub client for a token (the legacy route checks the PATs it is sent). */
  private async listen(apiFor: (token: string) => RunnersApi): Promise<void> {
    const { config } = this;
    const app = createApp({
      intake: this.intake,
      inbox: new GuestInbox(this.ctx),
      store: this.store,
      notifier: this.ctx.notifier,
      log: this.log,
      clock: this.ctx.clock,
      baseUrl: () => this.url,
      apiToken: config.api.token,
      queue: new Admission(this.ctx),
      controlSecret: config.control.secret,
      github: {
        secret: config.github.app?.webhook_secret,
        jobs: this.jobs,
        ...(this.githubApp ? { installations: this.githubApp } : {}),
      },
      legacy: config.legacy.enabled
        ? {
            secret: config.legacy.secret,
            opensslPassword: config.legacy.openssl_password,
            waitForReady: config.legacy.wait_for_ready,
            waitTimeoutS: config.legacy.wait_timeout,
            hasDefaultToken: Boolean(config.github.token || config.github.app),
            checkToken: (repository, token) => apiFor(token).checkAccess(repository),
          }
        : undefined,
      bodyLimit: config.server.body_limit,
      health: async () => {
        const m = process.memoryUsage();
        const mib = (n: number) => Math.round((n / 1048576) * 10) / 10;
        return {
          worker_busy: this.worker.busy,
          // Compiled (dist/, as deployed) or the TypeScript sources through tsx (development).
          code: import.meta.url.endsWith('.js') ? 'dist' : 'source',
          memory_mib: { rss: mib(m.rss), heap_used: mib(m.heapUsed), heap_total: mib(m.heapTotal) },
        };
      },
    });
    await new Promise<void>((resolve, reject) => {
      // Bounds the time to receive a request, never to answer one (long-polls): http/limits.ts.
      const server = createHttpServer(app, {
        requestTimeoutMs: config.server.request_timeout * 1000,
        headersTimeoutMs: config.server.headers_timeout * 1000,
      }).listen({ port: config.server.port, host: config.server.host, backlog: LISTEN_BACKLOG }, () =>
        resolve(),
      );
      server.on('error', reject);
      this.server = server;
    });
    this.boundPort = (this.server!.address() as AddressInfo).port;
    this.log.info({ url: this.url }, 'listening');
  }

  get url(): string {
    return publicUrl(this.config, this.boundPort || undefined);
  }

  /** Stops taking work and closes everything. VMs keep running: the next start adopts them. */
  async stop(): Promise<void> {
    if (this.server) {
      const server = this.server;
      this.server = null;
      server.closeIdleConnections();
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      setTimeout(() => server.closeAllConnections(), 2000).unref();
      await closing;
    }
    await this.redeliverer?.stop();
    await this.poller?.stop();
    // Warm VMs keep running, as every VM does: the next start adopts them (docs/adr).
    await this.warmPools.stop();
    await this.worker.stop();
    await this.reconciler.stop();
    this.links.closeAll();
    await this.providers.close();
    await this.store.close();
  }
}

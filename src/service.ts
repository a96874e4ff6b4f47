// The composition root: builds store, providers, GitHub access, core and HTTP from one parsed
// config, and owns start-up (recover, adopt) and shutdown order. `hatchery serve`, the demo and
// the end-to-end tests all run the service through this one function.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { publicUrl } from './config/load.ts';
import type { Config } from './config/schema.ts';
import type { CoreContext } from './core/context.ts';
import { GuestLinks } from './core/guest-links.ts';
import { Intake } from './core/intake.ts';
import { Notifier } from './core/notifier.ts';
import { Reconciler } from './core/reconcile.ts';
import { Worker } from './core/worker.ts';
import { decryptGitHubToken } from './crypto/openssl.ts';
import { createRunnersApi, GitHubError, type RunnersApi } from './github/runners.ts';
import { createApp } from './http/app.ts';
import { createHttpServer, LISTEN_BACKLOG } from './http/limits.ts';
import { imageResolver } from './images/resolve.ts';
import { createLogger, type Logger } from './log.ts';
import type { Provider } from './providers/provider.ts';
import { QemuProvider } from './providers/qemu/provider.ts';
import { SqliteStore } from './store/sqlite.ts';
import type { Store } from './store/store.ts';

export const BOOTSTRAP_PATH = fileURLToPath(new URL('../bootstrap/linux.sh', import.meta.url));

export interface ServiceOptions {
  config: Config;
  log?: Logger;
  clock?: () => number;
  /** Start the HTTP server (default true). */
  http?: boolean;
}

export class HatcheryService {
  private server: Server | null = null;
  private boundPort = 0;

  private constructor(
    readonly config: Config,
    readonly ctx: CoreContext,
    readonly store: Store,
    readonly provider: QemuProvider,
    readonly intake: Intake,
    readonly links: GuestLinks,
    readonly worker: Worker,
    readonly reconciler: Reconciler,
    readonly log: Logger,
  ) {}

  static async start(opts: ServiceOptions): Promise<HatcheryService> {
    const { config } = opts;
    const log = opts.log ?? createLogger({ level: config.log.level });
    const clock = opts.clock ?? Date.now;
    const store = new SqliteStore(config.store.path);

    const resolveImage = imageResolver(config.qemu.images_dir, (msg) => log.info({ image: 'tiny' }, msg));
    const pools = new Map(config.pools.map((p) => [p.name, p]));
    const qemu = new QemuProvider({
      stateDir: config.qemu.state_dir,
      instanceId: config.instance_id,
      binary: config.qemu.binary,
      accel: config.qemu.accel,
      keepConsoleLogs: config.qemu.keep_console_logs,
      resolveImage,
      onProbe: (probe) =>
        log.info({ kvm: probe.usable, reason: probe.reason, ms: probe.ms }, 'KVM probe (qemu.accel = auto)'),
      network: (pool) => {
        const p = pools.get(pool);
        return { mode: p?.network ?? 'restricted', forwards: p?.forwards ?? [] };
      },
    });

    const apis = new Map<string, RunnersApi>();
    const runnersFor = (vm: { credential: string | null }): RunnersApi => {
      let token = config.github.token;
      if (vm.credential) {
        if (!config.legacy.openssl_password)
          throw new GitHubError('legacy credential but no legacy.openssl_password', 401);
        token = decryptGitHubToken(vm.credential, config.legacy.openssl_password);
      }
      if (!token)
        throw new GitHubError('no GitHub credential: set github.token (HATCHERY_GITHUB_TOKEN)', 401);
      let api = apis.get(token);
      if (!api) {
        api = createRunnersApi({ apiUrl: config.github.api_url, token });
        // Legacy requests may each bring their own PAT: keep only the most recent clients.
        if (apis.size >= 32) apis.delete(apis.keys().next().value!);
        apis.set(token, api);
      }
      return api;
    };

    const notifier = new Notifier();
    const providers: Provider[] = [qemu];
    const ctx: CoreContext = {
      store,
      providerFor: () => qemu,
      providers: () => providers,
      runnersFor,
      pools: config.pools,
      maxVms: config.limits.max_vms,
      runnerDownload:
        config.runner.url && config.runner.sha256
          ? { url: config.runner.url, sha256: config.runner.sha256 }
          : null,
      runnerGroupId: config.github.runner_group_id,
      bootstrap: readFileSync(BOOTSTRAP_PATH, 'utf8'),
      instanceId: config.instance_id,
      clock,
      log,
      notifier,
    };
    if (!ctx.runnerDownload)
      log.warn('runner.url / runner.sha256 not set: VMs cannot be provisioned until they are');
    if (config.legacy.enabled && !config.legacy.secret)
      log.warn(
        'legacy.allow_unsigned: the legacy route accepts unsigned requests from anyone who can reach it',
      );
    if (!config.github.token)
      log.warn('github.token not set: only legacy requests carrying a PAT can mint runners');

    const links = new GuestLinks(ctx);
    const intake = new Intake(ctx);
    const worker = new Worker(ctx, links, {
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
    const service = new HatcheryService(config, ctx, store, qemu, intake, links, worker, reconciler, log);

    // Images used by pools are built (or found in the cache) before the first request needs them.
    for (const image of new Set(config.pools.map((p) => p.image))) {
      try {
        const boot = await resolveImage(image);
        // Probe KVM now rather than in the first create: that VM would wait for it.
        if (boot.kernel) await qemu.accelerator(boot.kernel);
      } catch (e) {
        log.error(
          { image, err: (e as Error).message },
          'image not available: VMs of pools using it will fail',
        );
      }
    }
    const recovered = await reconciler.recover();
    log.info({ adopted: recovered.adopted, vanished: recovered.vanished.length }, 'recovered state');
    worker.start();
    reconciler.start();
    if (opts.http !== false) await service.listen();
    return service;
  }

  private async listen(): Promise<void> {
    const { config } = this;
    const app = createApp({
      intake: this.intake,
      store: this.store,
      notifier: this.ctx.notifier,
      log: this.log,
      clock: this.ctx.clock,
      baseUrl: () => this.url,
      apiToken: config.api.token,
      controlSecret: config.control.secret,
      legacy: config.legacy.enabled
        ? {
            secret: config.legacy.secret,
            opensslPassword: config.legacy.openssl_password,
            waitForReady: config.legacy.wait_for_ready,
            waitTimeoutS: config.legacy.wait_timeout,
            hasDefaultToken: Boolean(config.github.token),
          }
        : undefined,
      bodyLimit: config.server.body_limit,
      health: async () => ({ worker_busy: this.worker.busy }),
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
    await this.worker.stop();
    await this.reconciler.stop();
    this.links.closeAll();
    await this.store.close();
  }
}

// Hatchery with a GitHub App, its webhooks posted as GitHub posts them, on the in-memory provider
// with emulated guests that play the runner against the GitHub stand-in (no hypervisor: these
// tests are about what webhooks do to the store; the QEMU e2e is test/e2e/autoscale.test.ts).
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'smol-toml';
import { loadConfig } from '../../src/config/load.ts';
import { sign } from '../../src/crypto/hmac.ts';
import { silentLogger } from '../../src/log.ts';
import { HatcheryService } from '../../src/service.ts';
import { FakeGitHub, type FakeInstallationSpec } from '../fakes/github/server.ts';
import { GuestEmulator } from '../fakes/guest/emulator.ts';

export const APP_ID = 5150;

export interface Posted {
  status: number;
  json: Record<string, unknown>;
}

export class AppService {
  private constructor(
    readonly dir: string,
    readonly fake: FakeGitHub,
    readonly emulator: GuestEmulator,
    public service: HatcheryService,
    /** The App's webhook secret. */
    readonly secret: string,
    readonly apiToken: string,
  ) {}

  static async start(opts: {
    /** Pools; other keys (min_idle, channel, trust …) go to the pool's TOML as they are. */
    pools: ({ name: string; labels: string[]; max_vms?: number } & Record<string, unknown>)[];
    /** `[limits]` instead of `max_vms = maxVms ?? 64` (e.g. tenants). */
    limits?: Record<string, unknown>;
    /** limits.max_vms (default 64) when `limits` is not given. */
    maxVms?: number;
    /** More `[workers]` settings (e.g. concurrency). */
    workers?: Record<string, unknown>;
    installations: FakeInstallationSpec[];
    /** Without: POST /hooks/github is disabled. */
    webhookSecret?: boolean;
    /** github.app.redeliver_seconds (default 0, off: tests call redeliverer.pass() themselves). */
    redeliverSeconds?: number;
  }): Promise<AppService> {
    const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-app-'));
    const keys = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    });
    writeFileSync(path.join(dir, 'app.pem'), keys.privateKey, { mode: 0o600 });
    const fake = await FakeGitHub.start({
      tokens: [],
      app: { id: APP_ID, publicKey: keys.publicKey, installations: opts.installations },
    });
    const emulator = new GuestEmulator();
    const self = { secret: randomBytes(20).toString('hex'), apiToken: randomBytes(16).toString('hex') };
    const file = path.join(dir, 'hatchery.toml');
    writeFileSync(
      file,
      stringify({
        instance_id: `app-${randomBytes(3).toString('hex')}`,
        server: { port: 0 },
        api: { token: self.apiToken },
        github: {
          api_url: fake.url,
          app: {
            id: APP_ID,
            private_key_file: 'app.pem',
            ...(opts.webhookSecret === false ? {} : { webhook_secret: self.secret }),
            redeliver_seconds: opts.redeliverSeconds ?? 0,
            poll_seconds: 0,
          },
        },
        runner: { url: `${fake.url}/runner.tgz`, sha256: '0'.repeat(64) },
        store: { path: path.join(dir, 'hatchery.db') },
        workers: { poll_ms: 20, ...opts.workers },
        limits: opts.limits ?? { max_vms: opts.maxVms ?? 64 },
        log: { level: 'silent' },
        providers: { sim: { kind: 'memory', guest_emulator: await emulator.start() } },
        pools: opts.pools.map((p) => ({ max_vms: 32, ...p })),
      }),
    );
    const service = await HatcheryService.start({
      config: loadConfig({ file, env: {}, dotenv: false }).config,
      log: silentLogger(),
    });
    return new AppService(dir, fake, emulator, service, self.secret, self.apiToken);
  }

  /**
   * Stops the service (its VMs and their emulated guests keep running, as after a crash or an
   * upgrade), lets `edit` change its config file's contents, and starts it again on the same store.
   */
  async restart(edit: (config: Record<string, unknown>) => void = () => undefined): Promise<void> {
    await this.service.stop();
    const file = path.join(this.dir, 'hatchery.toml');
    const config = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    edit(config);
    writeFileSync(file, stringify(config));
    this.service = await HatcheryService.start({
      config: loadConfig({ file, env: {}, dotenv: false }).config,
      log: silentLogger(),
    });
  }

  /** POSTs a webhook as GitHub does: signed with the App's secret unless `signature` says otherwise. */
  async post(
    event: string,
    payload: unknown,
    opts: { delivery?: string; signature?: string | null; body?: string } = {},
  ): Promise<Posted> {
    const body = opts.body ?? JSON.stringify(payload);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'GitHub-Hookshot/test',
      'x-github-event': event,
      'x-github-delivery': opts.delivery ?? randomUUID(),
    };
    const signature = opts.signature === undefined ? sign('sha256', this.secret, body) : opts.signature;
    if (signature !== null) headers['x-hub-signature-256'] = signature;
    const res = await fetch(`${this.service.url}/hooks/github`, { method: 'POST', headers, body });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  async api<T = Record<string, unknown>>(p: string): Promise<T> {
    const res = await fetch(`${this.service.url}${p}`, {
      headers: { authorization: `Bearer ${this.apiToken}` },
    });
    if (res.status !== 200) throw new Error(`GET ${p}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  /** Waits until every VM has ended (they are destroyed first: the in-memory provider's guests end with the process). */
  async stop(): Promise<void> {
    try {
      await this.service.stop();
      await this.emulator.close();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
      await this.fake.close();
    }
  }
}

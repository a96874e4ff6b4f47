// The whole system for end-to-end tests and benchmarks: the GitHub stand-in, and Hatchery on
// real QEMU VMs and a real SQLite file, configured through a hatchery.toml like an operator's.
// The service runs in this process (`Stack.start`) or as its own `hatchery serve` process
// (`ServiceProcess`, for kill -9). `leftovers()` lists everything a VM could leave behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { parse as parseToml, stringify } from 'smol-toml';
import { loadConfig } from '../../src/config/load.ts';
import { sign } from '../../src/crypto/hmac.ts';
import { createLogger } from '../../src/log.ts';
import type { CrashPoint } from '../../src/core/crash-points.ts';
import { HatcheryService } from '../../src/service.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import type { VmRecord } from '../../src/store/store.ts';
import { FakeGitHub, type SecondaryRateLimitOptions } from '../fakes/github/server.ts';
import { IMAGES_DIR } from './images.ts';
import { killAll, pidsWithArg, qemuPidsUnder } from './processes.ts';

const REPO_ROOT = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const GUEST_GITHUB = '10.0.2.100:80';
/** Where guests on the HTTP channel reach the service (a forward to its port). */
export const GUEST_SERVICE = '10.0.2.101:80';

/** A port nothing listens on right now (for a service whose port must be known up front). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface PoolSpec {
  name: string;
  labels: string[];
  /** Where the guest's 10.0.2.100:80 leads; default the stand-in GitHub. */
  forwardTo?: string;
  /** Default the tiny test guest. */
  image?: string;
  /**
   * `http`: the guests report over the service's HTTP channel, reaching it at
   * http://10.0.2.101 (a forward to the service's port), instead of QEMU's virtio-serial port.
   */
  channel?: 'http';
  /** MiB; default 256 (enough for the tiny guest). */
  memory?: number;
  /** `ssh`: bootstrap over SSH (the HTTP channel too; image default `tiny-ssh`). */
  bootstrap?: 'ssh';
  max_vms?: number;
  /** Warm pool: VMs booted ahead without a JIT config, and their max age (s). */
  min_idle?: number;
  warm_max_age?: number;
  timeouts?: Partial<Record<'queue' | 'provision' | 'boot' | 'idle' | 'job' | 'drain', number>>;
  /** A provider of StackOptions.providers; default the QEMU one. */
  provider?: string;
  /** Its kind's pool keys, given the guest's forward to the stand-in; default QEMU's `forwards`. */
  providerKeys?: (forward: { guest: string; host: string }) => Record<string, unknown>;
}

export interface StackOptions {
  pools?: PoolSpec[];
  /** Tokens the stand-in accepts; the first is the service's github.token unless githubToken is false. */
  tokens?: string[];
  githubToken?: boolean;
  /** Token → the only repositories the stand-in lets it use (FakeGitHubOptions.grants). */
  grants?: Record<string, string[]>;
  legacy?: {
    secret?: string;
    allow_unsigned?: boolean;
    openssl_password: string;
    wait_for_ready?: boolean;
    wait_timeout?: number;
  };
  maxVms?: number;
  workers?: { concurrency?: number; poll_ms?: number; lease_seconds?: number };
  logLevel?: string;
  /** Guests are emulated on this host (memory provider): runner configs name the stand-in's own URL. */
  emulatedGuests?: boolean;
  /** More `[providers.<name>]` sections, beside the QEMU one (then named `qemu`). */
  providers?: Record<string, Record<string, unknown>>;
  /**
   * A GitHub App (`[github.app]`, key file beside the config) installed on these accounts
   * (each with all its repositories) in the stand-in; with `githubToken: false`, no PAT at all.
   */
  app?: { installations: string[]; webhookSecret?: string; settings?: Record<string, unknown> };
  /** The service listens on a port chosen up front (kept across restarts: webhooks are sent to it). */
  fixedPort?: boolean;
  /** Extra top-level TOML sections merged into the generated file. */
  extra?: Record<string, unknown>;
  /**
   * What VMs of the extra providers can leave behind (e.g. libvirt domains), listed with
   * leftovers() and checked by nothingLeft(); each list must end empty.
   */
  leftovers?: (files: StackFiles) => Record<string, unknown[]>;
  /** The stand-in's secondary rate limit on JIT config generation (FakeGitHubOptions.jitRateLimit). */
  jitRateLimit?: SecondaryRateLimitOptions;
}

/** The part shared by the in-process stack and the child process: stand-in, files, config. */
export class StackFiles {
  readonly dir: string;
  readonly stateDir: string;
  readonly configFile: string;
  readonly storePath: string;
  readonly logFile: string;
  readonly controlSecret = randomBytes(16).toString('hex');
  readonly apiToken = randomBytes(16).toString('hex');
  readonly instanceId = `e2e-${randomBytes(3).toString('hex')}`;
  /** The GitHub App's id and private key (StackOptions.app). */
  static readonly APP_ID = 31337;

  private constructor(
    readonly fake: FakeGitHub,
    readonly opts: StackOptions,
    /** The service's port: fixed when guests must reach it (HTTP channel), else 0 (any). */
    readonly servicePort: number,
    appPrivateKey?: string,
  ) {
    this.dir = mkdtempSync(path.join(tmpdir(), 'hatchery-e2e-'));
    if (appPrivateKey) writeFileSync(path.join(this.dir, 'app.pem'), appPrivateKey, { mode: 0o600 });
    this.stateDir = path.join(this.dir, 'vms');
    this.configFile = path.join(this.dir, 'hatchery.toml');
    this.storePath = path.join(this.dir, 'hatchery.db');
    this.logFile = path.join(this.dir, 'service.log');
    writeFileSync(this.configFile, this.toml());
  }

  static async create(opts: StackOptions = {}): Promise<StackFiles> {
    const tokens = opts.tokens ?? [`ghp_${randomBytes(18).toString('hex')}`];
    const appKeys = opts.app
      ? generateKeyPairSync('rsa', {
          modulusLength: 2048,
          publicKeyEncoding: { type: 'spki', format: 'pem' },
          privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
        })
      : undefined;
    const fake = await FakeGitHub.start({
      ...(opts.app && appKeys
        ? {
            app: {
              id: StackFiles.APP_ID,
              publicKey: appKeys.publicKey,
              installations: opts.app.installations.map((account, i) => ({ id: 100 + i, account })),
            },
          }
        : {}),
      // Emulated guests run on this host: they reach the stand-in where it listens.
      guestBaseUrl: opts.emulatedGuests ? undefined : `http://${GUEST_GITHUB.replace(/:80$/, '')}`,
      tokens,
      grants: opts.grants,
      jitRateLimit: opts.jitRateLimit,
    });
    // A guest's forward to the service is set up when its VM starts: the port must be known.
    const port =
      opts.fixedPort || opts.pools?.some((p) => p.channel === 'http' || p.bootstrap === 'ssh')
        ? await freePort()
        : 0;
    return new StackFiles(fake, { ...opts, tokens }, port, appKeys?.privateKey);
  }

  private toml(): string {
    const { opts, fake } = this;
    const fakeHost = `127.0.0.1:${new URL(fake.url).port}`;
    const pools = (opts.pools ?? [{ name: 'linux', labels: ['linux'] }]).map((p) => {
      const forward = { guest: GUEST_GITHUB, host: p.forwardTo ?? fakeHost };
      // HTTP channel: the guest reaches the service at GUEST_SERVICE, a forward to its port.
      const http = p.channel === 'http' || p.bootstrap === 'ssh';
      const forwards = [
        forward,
        ...(http ? [{ guest: GUEST_SERVICE, host: `127.0.0.1:${this.servicePort}` }] : []),
      ];
      return {
        name: p.name,
        labels: p.labels,
        ...(opts.providers ? { provider: p.provider ?? 'qemu' } : {}),
        ...(p.image ? { image: p.image } : p.bootstrap === 'ssh' ? { image: 'tiny-ssh' } : {}),
        ...(p.bootstrap ? { bootstrap: p.bootstrap } : {}),
        memory: p.memory ?? 256,
        max_vms: p.max_vms ?? 4,
        ...(p.min_idle !== undefined ? { min_idle: p.min_idle } : {}),
        ...(p.warm_max_age !== undefined ? { warm_max_age: p.warm_max_age } : {}),
        ...(p.providerKeys ? p.providerKeys(forward) : { forwards }),
        ...(http ? { channel: 'http', channel_url: `http://${GUEST_SERVICE.replace(/:80$/, '')}` } : {}),
        timeouts: { boot: 120, idle: 300, job: 600, drain: 60, ...p.timeouts },
      };
    });
    const qemu = { kind: 'qemu', accel: 'tcg', state_dir: this.stateDir, images_dir: IMAGES_DIR };
    const config: Record<string, unknown> = {
      instance_id: this.instanceId,
      server: { host: '127.0.0.1', port: this.servicePort },
      api: { token: this.apiToken },
      control: { secret: this.controlSecret },
      github: {
        api_url: fake.url,
        ...(opts.githubToken === false ? {} : { token: opts.tokens![0]! }),
        ...(opts.app
          ? {
              app: {
                id: StackFiles.APP_ID,
                private_key_file: 'app.pem',
                ...(opts.app.webhookSecret ? { webhook_secret: opts.app.webhookSecret } : {}),
                ...opts.app.settings,
              },
            }
          : {}),
      },
      runner: {
        url: `http://${GUEST_GITHUB.replace(/:80$/, '')}${fake.runnerTarball.urlPath}`,
        sha256: fake.runnerTarball.sha256,
      },
      store: { path: this.storePath },
      workers: { concurrency: 4, poll_ms: 100, lease_seconds: 60, ...opts.workers },
      reconcile: { interval_seconds: 2 },
      limits: { max_vms: opts.maxVms ?? 8 },
      providers: { qemu, ...opts.providers },
      log: { level: opts.logLevel ?? 'debug' },
      ...(opts.legacy ? { legacy: { enabled: true, ...opts.legacy } } : {}),
      ...opts.extra,
      pools,
    };
    return stringify(config);
  }

  config() {
    return loadConfig({ file: this.configFile, env: {}, dotenv: false }).config;
  }

  /** Edits the config file (as an operator would before a restart). */
  editConfig(edit: (config: Record<string, unknown>) => void): void {
    const config = parseToml(readFileSync(this.configFile, 'utf8')) as Record<string, unknown>;
    edit(config);
    writeFileSync(this.configFile, stringify(config));
  }

  /** Where the service keeps per-VM SSH keys (the config's default `ssh.state_dir`, beside it). */
  get sshKeysDir(): string {
    return path.join(this.dir, 'var', 'ssh', 'keys');
  }

  /**
   * Everything a VM could leave behind: QEMU processes, VM directories, forwarders,
   * registrations, SSH keys, and what the extra providers' VMs can leave (StackOptions.leftovers).
   */
  leftovers(): {
    qemu: number[];
    vmDirs: string[];
    forwarders: number[];
    runners: string[];
    sshKeys: string[];
    [more: string]: unknown[];
  } {
    const ports = [new URL(this.fake.url).port, ...(this.servicePort ? [String(this.servicePort)] : [])];
    return {
      qemu: qemuPidsUnder(this.stateDir),
      vmDirs: existsSync(this.stateDir)
        ? readdirSync(this.stateDir).filter((d) => d.startsWith('hatchery-'))
        : [],
      // guestfwd runs one `busybox nc 127.0.0.1 <port>` per guest connection.
      forwarders: ports
        .flatMap((p) => pidsWithArg(p))
        .filter((pid) => {
          try {
            return readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('busybox\0nc');
          } catch {
            return false;
          }
        }),
      runners: this.fake.runners().map((r) => r.name),
      sshKeys: existsSync(this.sshKeysDir) ? readdirSync(this.sshKeysDir) : [],
      ...this.opts.leftovers?.(this),
    };
  }

  /** Waits until nothing a VM could leave behind remains; fails naming what remains. */
  async nothingLeft(timeoutMs = 30_000): Promise<void> {
    const empty = (l: ReturnType<StackFiles['leftovers']>) => Object.values(l).every((v) => v.length === 0);
    try {
      await eventually(() => (empty(this.leftovers()) ? true : undefined), 'nothing left behind', timeoutMs);
    } catch {
      throw new Error(`left behind after ${timeoutMs} ms: ${JSON.stringify(this.leftovers())}`);
    }
  }

  /**
   * Kills whatever a failed test left (never needed when it passes), closes the stand-in and
   * removes the files. Rejects when the stand-in saw API violations the test did not
   * acknowledge (FakeGitHub.close): the files, the service's log among them, are then kept.
   */
  async cleanup(keepOnFailure = false): Promise<void> {
    const left = this.leftovers();
    killAll([...left.qemu, ...left.forwarders]);
    try {
      await this.fake.close();
    } catch (e) {
      (e as Error).message += `\n(files kept: ${this.dir})`;
      throw e;
    }
    if (!keepOnFailure) rmSync(this.dir, { recursive: true, force: true });
  }

  signControl(body: string): string {
    return sign('sha256', this.controlSecret, body);
  }
}

export interface HttpReply<T = Record<string, unknown>> {
  status: number;
  json: T;
  ms: number;
}

/** HTTP calls a workflow would make, against a service at `url()`. */
export class Client {
  constructor(
    private readonly files: StackFiles,
    private readonly url: () => string,
  ) {}

  async control(
    body: Record<string, unknown> | string,
    opts: { delivery?: string; signature?: string | null } = {},
  ): Promise<HttpReply<ControlReply>> {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const signature = opts.signature === undefined ? this.files.signControl(text) : opts.signature;
    if (signature !== null) headers['x-hatchery-signature-256'] = signature;
    if (opts.delivery) headers['x-hatchery-delivery'] = opts.delivery;
    return this.request('POST', '/hooks/control', text, headers);
  }

  async api<T = Record<string, unknown>>(
    method: string,
    p: string,
    token = this.files.apiToken,
  ): Promise<HttpReply<T>> {
    return this.request(method, p, undefined, { authorization: `Bearer ${token}` });
  }

  async request<T>(
    method: string,
    p: string,
    body?: string,
    headers: Record<string, string> = {},
  ): Promise<HttpReply<T>> {
    const started = performance.now();
    const res = await fetch(`${this.url()}${p}`, { method, headers, body });
    const text = await res.text();
    let json: T;
    try {
      json = JSON.parse(text) as T;
    } catch {
      json = { raw: text } as T;
    }
    return { status: res.status, json, ms: performance.now() - started };
  }
}

export interface ControlVm {
  name: string;
  state: string;
  runner_labels: string[];
  created: boolean;
  wait_url: string;
  status_url: string;
}
export interface ControlReply {
  action?: string;
  duplicate?: boolean;
  vms: ControlVm[];
  error?: string;
  field?: string;
  message?: string;
}

/** Hatchery in this process. */
export class Stack {
  readonly client: Client;

  private constructor(
    readonly files: StackFiles,
    public service: HatcheryService,
  ) {
    this.client = new Client(files, () => this.service.url);
  }

  static async start(opts: StackOptions = {}): Promise<Stack> {
    const files = await StackFiles.create(opts);
    const service = await startService(files);
    return new Stack(files, service);
  }

  get fake(): FakeGitHub {
    return this.files.fake;
  }

  /** Stops the service (VMs keep running) and starts a new one on the same store and state. */
  async restart(): Promise<void> {
    await this.service.stop();
    this.service = await startService(this.files);
  }

  async vm(name: string): Promise<VmRecord> {
    const vm = await this.service.store.getVm(name);
    if (!vm) throw new Error(`no VM ${name}`);
    return vm;
  }

  /** Waits until the VM is in one of `states`; fails early if it ends elsewhere. */
  /** Waits until the VM is in one of `states`; fails early if it ends elsewhere. */
  waitState(name: string, states: string[], timeoutMs = 120_000): Promise<VmRecord> {
    return waitForState(
      name,
      states,
      timeoutMs,
      () => this.vm(name),
      () => this.service.ctx.notifier.waitForChange(name, 500),
    );
  }

  async events(name: string): Promise<{ event: string; to: string; note: string }[]> {
    const vm = await this.vm(name);
    return (await this.service.store.listEvents(vm.id)).map((e) => ({
      event: e.event,
      to: e.toState,
      note: e.note,
    }));
  }

  /**
   * Stops the service, then the stand-in; removes the files. Rejects (failing the test whose
   * cleanup this is) when the stand-in saw API violations the test did not acknowledge.
   */
  async stop(): Promise<void> {
    try {
      await this.service.stop();
    } finally {
      await this.files.cleanup();
    }
  }
}

async function startService(files: StackFiles): Promise<HatcheryService> {
  const config = files.config();
  const log = createLogger({
    level: config.log.level,
    destination: pino.destination({ dest: files.logFile, append: true, sync: true }),
  });
  return HatcheryService.start({ config, log });
}

/** `hatchery serve` as its own process, so that a test can kill -9 it. */
const BIN = path.join(REPO_ROOT, 'bin/hatchery.js');
/** The node flags of bin/hatchery.js's `#!` line: the service runs as deployed. */
export const BIN_NODE_FLAGS: readonly string[] =
  /^#!.*\bnode\b(.*)$/m
    .exec(readFileSync(BIN, 'utf8').split('\n', 1)[0]!)?.[1]!
    .trim()
    .split(/\s+/)
    .filter(Boolean) ?? [];

export class ServiceProcess {
  private child: ChildProcess | null = null;
  url = '';
  readonly client: Client;

  constructor(
    readonly files: StackFiles,
    /** Extra node options, e.g. `--cpu-prof` to profile the service. */
    private readonly nodeArgs: string[] = [],
  ) {
    this.client = new Client(files, () => this.url);
  }

  /** `crashAt`: the process stops itself at that crash point (src/core/crash-points.ts). */
  async start(timeoutMs = 60_000, opts: { crashAt?: CrashPoint } = {}): Promise<void> {
    const log = createWriteStream(this.files.logFile, { flags: 'a' });
    const child = spawn(
      process.execPath,
      [...BIN_NODE_FLAGS, ...this.nodeArgs, BIN, '--config', this.files.configFile, 'serve'],
      {
        cwd: this.files.dir,
        env: {
          ...process.env,
          HATCHERY_CONFIG: '',
          ...(opts.crashAt ? { HATCHERY_TEST_CRASH_AT: opts.crashAt } : {}),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.child = child;
    child.stdout!.pipe(log);
    let buffer = '';
    const ready = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`hatchery serve did not listen within ${timeoutMs} ms (see ${this.files.logFile})`),
          ),
        timeoutMs,
      );
      child.stderr!.on('data', (d: Buffer) => {
        log.write(d);
        buffer += d.toString();
        for (const line of buffer.split('\n')) {
          if (!line.includes('"listening"')) continue;
          try {
            const url = (JSON.parse(line) as { url?: string }).url;
            if (url) {
              clearTimeout(timer);
              resolve(url);
            }
          } catch {
            /* partial line */
          }
        }
        buffer = buffer.slice(buffer.lastIndexOf('\n') + 1);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`hatchery serve exited ${code} before listening (see ${this.files.logFile})`));
      });
    });
    this.url = await ready;
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  /** Waits until the process has stopped itself at its crash point (state T in /proc). */
  async waitStopped(timeoutMs = 120_000): Promise<void> {
    const pid = this.pid;
    await eventually(
      () => (/^\d+ \(.*\) T /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')) ? true : undefined),
      `hatchery serve (pid ${pid}) to stop at its crash point`,
      timeoutMs,
    );
  }

  /** kill -9: no shutdown code runs. */
  async kill9(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    this.child = null;
  }

  /** A graceful stop (SIGTERM), as an operator's service manager does. */
  async stop(): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    const code = await Promise.race([exited, sleep(15_000).then(() => 'timeout' as const)]);
    if (code === 'timeout') {
      child.kill('SIGKILL');
      throw new Error('hatchery serve did not stop within 15 s of SIGTERM');
    }
    this.child = null;
    return code;
  }

  /** Reads the store the way `hatchery vm show` does (a second process on the same file). */
  async read<T>(f: (store: SqliteStore) => Promise<T>): Promise<T> {
    const store = new SqliteStore(this.files.storePath);
    try {
      return await f(store);
    } finally {
      await store.close();
    }
  }

  waitState(name: string, states: string[], timeoutMs = 120_000): Promise<VmRecord> {
    return waitForState(
      name,
      states,
      timeoutMs,
      () => this.read((s) => s.getVm(name)),
      () => sleep(200),
    );
  }
}

/**
 * Re-reads the VM (`read`, then `pause` between reads) until it is in one of `states`; fails at
 * once if it ends in another state, or after `timeoutMs`.
 */
async function waitForState(
  name: string,
  states: string[],
  timeoutMs: number,
  read: () => Promise<VmRecord | null>,
  pause: () => Promise<unknown>,
): Promise<VmRecord> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const vm = await read();
    if (vm && states.includes(vm.state)) return vm;
    if (vm && (vm.state === 'destroyed' || vm.state === 'failed')) {
      throw new Error(
        `${name} ended ${vm.state} (${vm.failure ?? 'no failure'}) while waiting for ${states.join('|')}`,
      );
    }
    if (Date.now() > until) {
      throw new Error(`${name} is ${vm?.state ?? 'missing'}, not ${states.join('|')}, after ${timeoutMs} ms`);
    }
    await pause();
  }
}

/** Polls `check` until it returns a value (not undefined), or fails after `timeoutMs`. */
export async function eventually<T>(
  check: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeoutMs = 30_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

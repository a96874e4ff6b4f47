// bootstrap/linux.sh, for real: its parsing and line following under bash, dash and busybox sh
// on the host; its whole flow on the host over the http transport; and in real VMs (the tiny
// image, the bootstrap through fw_cfg, the virtio-serial channel, the runner downloaded through
// restricted slirp networking from a server on 127.0.0.1).
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { buildTinyImage, type TinyImage } from '../../src/providers/qemu/images/tiny.ts';
import { killAll, pidsWithArg, qemuPidsUnder } from '../helpers/processes.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const BOOTSTRAP = path.join(repo, 'bootstrap/linux.sh');
const FIXTURE_RUNNER = path.join(repo, 'test/fixtures/bootstrap/runner');
const root = mkdtempSync(path.join(os.tmpdir(), 'hatchery-bootstrap-test-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// A JIT config stand-in: base64-ish and unique, with markers the fixture runner understands.
const jit = (...markers: string[]) => `aGF0Y2hlcnk${markers.join('')}X${randomBytes(12).toString('hex')}`;

const SHELLS: { name: string; argv: string[] }[] = [
  { name: 'bash', argv: ['bash'] },
  { name: 'dash', argv: ['dash'] },
  { name: 'busybox sh', argv: ['busybox', 'sh'] },
].filter((s) => spawnSync(s.argv[0]!, [...s.argv.slice(1), '-c', 'true']).status === 0);

interface Tarball {
  file: string;
  data: Buffer;
  sha256: string;
}

function makeRunnerTarball(dir: string): Tarball {
  const file = path.join(dir, 'runner.tar.gz');
  execFileSync('tar', ['-czf', file, '--owner=0', '--group=0', '-C', FIXTURE_RUNNER, 'run.sh']);
  const data = readFileSync(file);
  return { file, data, sha256: createHash('sha256').update(data).digest('hex') };
}

interface Posted {
  auth: string | undefined;
  body: string;
}

/** The service's stand-in: serves the runner tarball and (http transport) takes event POSTs. */
async function startServer(
  tarball: Tarball,
  onPost: (p: Posted) => string[] = () => [],
  /** A long-poll (GET /channel?wait=N): its answer lines. */
  onWait: (w: { auth: string | undefined; wait: string | null }) => string[] = () => [],
) {
  const posted: Posted[] = [];
  let downloads = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      res.setHeader('Connection', 'close');
      if (req.method === 'GET' && req.url === '/runner.tar.gz') {
        downloads++;
        res.end(tarball.data);
      } else if (req.method === 'GET' && req.url?.startsWith('/channel?')) {
        const wait = new URL(req.url, 'http://x').searchParams.get('wait');
        res.end(
          onWait({ auth: req.headers.authorization, wait })
            .map((l) => `${l}\n`)
            .join(''),
        );
      } else if (req.method === 'POST' && req.url === '/channel') {
        const p = { auth: req.headers.authorization, body };
        posted.push(p);
        res.end(
          onPost(p)
            .map((l) => `${l}\n`)
            .join(''),
        );
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    posted,
    downloads: () => downloads,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function configText(values: Record<string, string>): string {
  return Object.entries(values)
    .map(([k, v]) => `${k}=${v}\n`)
    .join('');
}

interface GuestEvent {
  seq: number;
  name: string;
  detail: string;
  at: number;
}

const EVENT = /^event (\d+) ([a-z-]+)(?: (.*))?$/;
/** What a guest reports, in order, when its runner takes one job that succeeds. */
const HAPPY_PATH = ['booted', 'registered', 'job-started build', 'job-finished Succeeded', 'runner-exited 0'];

/** Collects `event` lines: unique by seq, checking that replays are identical and order holds. */
class EventLog {
  readonly events: GuestEvent[] = [];
  readonly problems: string[] = [];
  private readonly lines = new Map<number, string>();
  private waiters: (() => void)[] = [];

  add(line: string, at: number): void {
    const m = EVENT.exec(line);
    if (!m) return;
    const seq = Number(m[1]);
    const seen = this.lines.get(seq);
    if (seen !== undefined) {
      if (seen !== line) this.problems.push(`seq ${seq} replayed differently: ${seen} / ${line}`);
      return;
    }
    if (seq !== this.events.length + 1) this.problems.push(`seq ${seq} arrived after ${this.events.length}`);
    this.lines.set(seq, line);
    this.events.push({ seq, name: m[2]!, detail: m[3] ?? '', at });
    for (const w of this.waiters.splice(0)) w();
  }

  summary(): string[] {
    return this.events.map((e) => (e.detail ? `${e.name} ${e.detail}` : e.name));
  }

  async waitFor(name: string, timeoutMs: number): Promise<GuestEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.events.find((x) => x.name === name);
      if (e) return e;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no ${name} event within ${timeoutMs} ms; got: ${this.summary().join(', ')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

function exitOf(
  child: ChildProcess,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode, at: performance.now() });
      return;
    }
    child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() }));
  });
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

after(() => {
  const left = [...qemuPidsUnder(root), ...pidsWithArg(root)];
  killAll(left);
  rmSync(root, { recursive: true, force: true });
  assert.deepEqual(left, [], 'processes started by this test were still running');
  assert.ok(!existsSync(root), 'temp files left behind');
});

// ---------------------------------------------------------------------------------------------
// On the host: the script's pieces and its whole flow (http transport), in every shell.

/** Runs shell code with the bootstrap's functions loaded (HATCHERY_BOOTSTRAP_LIB=1: no main). */
function runLib(shell: string[], code: string, args: string[] = []) {
  return spawnSync(shell[0]!, [...shell.slice(1), '-c', `. "${BOOTSTRAP}"\n${code}`, 'sh', ...args], {
    env: { PATH: process.env.PATH, HATCHERY_BOOTSTRAP_LIB: '1' },
    encoding: 'utf8',
    timeout: 20_000,
  });
}

for (const shell of SHELLS) {
  describe(`bootstrap/linux.sh under ${shell.name} (host)`, () => {
    it('parses the config without evaluating it', () => {
      const dir = mkdtempSync(path.join(root, 'parse-'));
      const pwned = path.join(dir, 'pwned');
      const cfg = path.join(dir, 'config');
      writeFileSync(
        cfg,
        [
          'HATCHERY_VM=vm-1',
          'HATCHERY_RUNNER_URL=http://10.0.2.100/a.tar.gz?x=1&y=a=b',
          `HATCHERY_JITCONFIG=$(touch ${pwned})\`touch ${pwned}\`;touch ${pwned}`,
          'HATCHERY_WORK_DIR=/srv/with spaces/  two ',
          'HATCHERY_NET=static:10.0.2.15/24,10.0.2.2\r',
          'hatchery_vm=lowercase-is-not-a-key',
          'HATCHERY_VM2=unknown keys are ignored',
          'NOT A KEY=x',
          '# HATCHERY_POWEROFF=0',
          'no equals sign',
          '=empty key',
          'HATCHERY_CHANNEL=virtio:org.hatchery.0',
          'HATCHERY_POWEROFF=0',
          'HATCHERY_RUNNER_SHA256=ABCDEF',
        ].join('\n'), // no final newline: the last line still counts
      );
      const r = runLib(
        shell.argv,
        `parse_config "$1" || exit 9
printf '%s|\\n' "$CFG_VM" "$CFG_RUNNER_URL" "$CFG_JITCONFIG" "$CFG_WORK_DIR" "$CFG_NET" "$CFG_CHANNEL" "$CFG_POWEROFF" "$CFG_RUNNER_SHA256" "$CFG_WORK_DISK"`,
        [cfg],
      );
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(r.stdout.split('|\n').slice(0, -1), [
        'vm-1',
        'http://10.0.2.100/a.tar.gz?x=1&y=a=b',
        `$(touch ${pwned})\`touch ${pwned}\`;touch ${pwned}`,
        '/srv/with spaces/  two ',
        'static:10.0.2.15/24,10.0.2.2',
        'virtio:org.hatchery.0',
        '0',
        'ABCDEF',
        '',
      ]);
      assert.ok(!existsSync(pwned), 'the config was evaluated');
    });

    it("follows the runner's output into events and hides the JIT config", () => {
      const dir = mkdtempSync(path.join(root, 'follow-'));
      const secret = jit();
      const out = path.join(dir, 'runner-output');
      writeFileSync(
        out,
        [
          '',
          '√ Connected to GitHub',
          "Current runner version: '2.321.0'",
          `2024-05-01 12:00:00Z: Listening for Jobs`,
          `oops, the runner printed ${secret} somehow`,
          `2024-05-01 12:00:01Z: Listening for Jobs`,
          `2024-05-01 12:00:02Z: Running job: build (ubuntu, 3.12)\r`,
          `2024-05-01 12:00:09Z: Job build (ubuntu, 3.12) completed with result: Failed`,
          'no newline at the end',
        ].join('\n'),
      );
      const r = runLib(
        shell.argv,
        `STATE=$1; JIT_VALUE=$2
emit() { printf 'EMIT %s\\n' "$*"; }
follow_runner <"$3" 2>"$1/console"
[ -e "$1/follow.done" ] && echo DONE`,
        [dir, secret, out],
      );
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), [
        'EMIT registered',
        'EMIT job-started build (ubuntu, 3.12)',
        'EMIT job-finished Failed',
        'DONE',
      ]);
      const consoleText = readFileSync(path.join(dir, 'console'), 'utf8');
      assert.match(consoleText, /^runner\| √ Connected to GitHub$/m);
      assert.match(consoleText, /^runner\| no newline at the end$/m);
      assert.ok(!consoleText.includes(secret), 'the JIT config reached the console');
    });

    /** The whole bootstrap on the host: http channel, no network setup, no power-off. */
    async function hostRun(opts: {
      jitInConfig?: string;
      sha256?: string;
      onPost?: (p: Posted, log: EventLog) => string[];
      onWait?: (w: { auth: string | undefined; wait: string | null }, log: EventLog) => string[];
      signalAfter?: string;
    }) {
      const dir = mkdtempSync(path.join(root, 'host-'));
      const tarball = makeRunnerTarball(dir);
      const events = new EventLog();
      const started = performance.now();
      const server = await startServer(
        tarball,
        (p) => {
          events.add(p.body.trim(), performance.now() - started);
          return opts.onPost?.(p, events) ?? [];
        },
        (w) => opts.onWait?.(w, events) ?? [],
      );
      const token = randomBytes(16).toString('hex');
      const cfg = path.join(dir, 'config');
      writeFileSync(
        cfg,
        configText({
          HATCHERY_VM: 'host-test',
          HATCHERY_RUNNER_URL: `http://127.0.0.1:${server.port}/runner.tar.gz`,
          HATCHERY_RUNNER_SHA256: opts.sha256 ?? tarball.sha256,
          ...(opts.jitInConfig ? { HATCHERY_JITCONFIG: opts.jitInConfig } : {}),
          HATCHERY_CHANNEL: `http://127.0.0.1:${server.port}/channel`,
          HATCHERY_CHANNEL_TOKEN: token,
          HATCHERY_WORK_DIR: path.join(dir, 'work'),
          HATCHERY_NET: 'none',
          // Never anything else on the host: busybox sh runs its own poweroff applet, not PATH's.
          HATCHERY_POWEROFF: '0',
        }),
      );
      assert.match(readFileSync(cfg, 'utf8'), /^HATCHERY_POWEROFF=0$/m);
      const child = spawn(shell.argv[0]!, [...shell.argv.slice(1), BOOTSTRAP, cfg], {
        env: {
          PATH: process.env.PATH,
          HOME: dir,
          HATCHERY_STATE_DIR: path.join(dir, 'state'),
          HATCHERY_IMAGE_CONF: path.join(dir, 'no-image.conf'),
          HATCHERY_POLL_SECONDS: '1',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      const exited = exitOf(child);
      try {
        if (opts.signalAfter) {
          await events.waitFor(opts.signalAfter, 20_000);
          child.kill('SIGTERM');
        }
        const exit = await withTimeout(exited, 30_000, 'bootstrap');
        await sleep(100);
        const left = pidsWithArg(dir);
        killAll(left);
        return { exit, output, events, server, token, dir, left };
      } finally {
        child.kill('SIGKILL');
        killAll(pidsWithArg(dir));
        await server.close();
      }
    }

    it('runs the whole flow over the http channel', async () => {
      const secret = jit('leak'); // the fixture runner prints it: the bootstrap must hide it
      const r = await hostRun({ jitInConfig: secret });
      assert.equal(r.exit.code, 0, r.output);
      assert.deepEqual(r.events.problems, []);
      assert.deepEqual(r.events.summary(), HAPPY_PATH);
      assert.deepEqual(
        r.events.events.map((e) => e.seq),
        [1, 2, 3, 4, 5],
      );
      assert.ok(
        r.server.posted.every((p) => p.auth === `Bearer ${r.token}`),
        'every POST carries the token',
      );
      assert.ok(!r.output.includes(secret), 'the JIT config reached the log');
      assert.match(r.output, /HATCHERY_POWEROFF=0: staying up/);
      assert.ok(existsSync(path.join(r.dir, 'work/run.sh')), 'runner unpacked into the work dir');
      assert.deepEqual(r.left, [], 'processes left behind');
    });

    it('reports a checksum mismatch as an error and stops', async () => {
      const r = await hostRun({ jitInConfig: jit(), sha256: 'ab'.repeat(32) });
      assert.equal(r.exit.code, 1, r.output);
      assert.deepEqual(
        r.events.events.map((e) => e.name),
        ['booted', 'error'],
      );
      assert.match(r.events.events[1]!.detail, /^checksum mismatch: expected (ab){32}, got [0-9a-f]{64}/);
      assert.ok(!existsSync(path.join(r.dir, 'work/run.sh')), 'a bad tarball was unpacked');
      assert.deepEqual(r.left, []);
    });

    it('tears down on SIGTERM: SIGINT reaches the runner, `stopping`, `runner-exited`', async () => {
      const r = await hostRun({ jitInConfig: jit('wait'), signalAfter: 'registered' });
      assert.equal(r.exit.code, 0, r.output);
      assert.deepEqual(r.events.problems, []);
      // 130: the runner's own SIGINT handler ran (SIGKILL after 10 s would give 137), so the
      // teardown did not sit out the kill timeout; how long it takes is not a test's business.
      assert.deepEqual(r.events.summary(), ['booted', 'registered', 'stopping', 'runner-exited 130']);
      assert.match(r.output, /runner\| Exiting\.\.\./);
      assert.deepEqual(r.left, []);
    });

    it('takes the JIT config from a `jit` message and stops on a `shutdown` message', async () => {
      const secret = jit('wait');
      const sent = new Set<string>();
      const r = await hostRun({
        onPost: (p) => {
          const once = (key: string, line: string) => (sent.has(key) ? [] : (sent.add(key), [line]));
          if (/ booted$/.test(p.body.trim())) return once('jit', `jit ${secret}`);
          if (/ registered$/.test(p.body.trim()))
            return ['unknown-message is ignored', ...once('shutdown', 'shutdown')];
          return [];
        },
      });
      assert.equal(r.exit.code, 0, r.output);
      assert.deepEqual(r.events.problems, []);
      assert.deepEqual(r.events.summary(), [
        'booted',
        'awaiting-jit',
        'registered',
        'stopping',
        'runner-exited 130',
      ]);
      assert.ok(!r.output.includes(secret));
      assert.deepEqual(r.left, []);
    });

    it('waiting for its JIT config (a warm VM), long-polls for it with its token', async () => {
      const secret = jit('wait');
      const waits: { auth: string | undefined; wait: string | null }[] = [];
      let handed = false;
      const r = await hostRun({
        // Only the long-poll carries the config, once the guest said it waits for one.
        onWait: (w, log) => {
          waits.push(w);
          if (handed || !log.events.some((e) => e.name === 'awaiting-jit')) return [];
          handed = true;
          return [`jit ${secret}`];
        },
        onPost: (p) => (/ registered$/.test(p.body.trim()) ? ['shutdown'] : []),
      });
      assert.equal(r.exit.code, 0, r.output);
      assert.deepEqual(r.events.problems, []);
      assert.deepEqual(r.events.summary(), [
        'booted',
        'awaiting-jit',
        'registered',
        'stopping',
        'runner-exited 130',
      ]);
      assert.ok(handed, 'the config came through the long-poll');
      assert.ok(waits.length > 0);
      for (const w of waits) {
        assert.equal(w.auth, `Bearer ${r.token}`);
        assert.equal(w.wait, '10');
      }
      assert.ok(!r.output.includes(secret));
      assert.deepEqual(r.left, []);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// In real VMs.

const PORT_NAME = 'org.hatchery.0';

interface VmOptions {
  config: Record<string, string>;
  /** Attach an overlay of the image's work disk as /dev/vda. */
  disk?: boolean;
}

/** One QEMU VM of the tiny image running the real bootstrap; the test owns its channel socket. */
class TestVm {
  readonly events = new EventLog();
  /** Every `event` line as received, with the connection it came on. */
  readonly received: { line: string; conn: number; at: number }[] = [];
  readonly started = performance.now();
  private sock: net.Socket | null = null;
  private conn = 0;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;

  private constructor(
    readonly dir: string,
    readonly qemu: ChildProcess,
    readonly consoleFile: string,
    readonly socketPath: string,
    readonly stderr: { text: string },
  ) {
    this.exited = exitOf(qemu);
  }

  static start(image: TinyImage, httpPort: number, opts: VmOptions): TestVm {
    const dir = mkdtempSync(path.join(root, 'vm-'));
    const configFile = path.join(dir, 'config');
    writeFileSync(configFile, configText(opts.config), { mode: 0o600 });
    const consoleFile = path.join(dir, 'console.log');
    const socketPath = path.join(dir, 'channel.sock');
    // prettier-ignore
    const args = [
      '-accel', 'tcg,tb-size=32',
      '-m', '128M',
      '-smp', '1',
      '-nographic',
      '-no-reboot',
      '-kernel', image.kernel,
      '-initrd', image.initrd,
      '-append', 'console=ttyS0 quiet',
      '-serial', `file:${consoleFile}`,
      '-display', 'none',
      '-monitor', 'none',
      '-netdev', `user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:/bin/busybox nc 127.0.0.1 ${httpPort}`,
      '-device', 'virtio-net-pci,netdev=n0,romfile=',
      '-chardev', `socket,id=c0,path=${socketPath},server=on,wait=off`,
      '-device', 'virtio-serial-pci',
      '-device', `virtserialport,chardev=c0,name=${PORT_NAME}`,
      '-fw_cfg', `name=opt/hatchery/config,file=${configFile}`,
      '-fw_cfg', `name=opt/hatchery/bootstrap,file=${BOOTSTRAP}`,
    ];
    if (opts.disk) {
      const overlay = path.join(dir, 'disk.qcow2');
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', image.disk, '-F', 'qcow2', overlay]);
      args.push('-drive', `file=${overlay},format=qcow2,if=virtio,cache=unsafe`);
    }
    const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const stderr = { text: '' };
    qemu.stderr!.on('data', (d: Buffer) => (stderr.text += d.toString()));
    return new TestVm(dir, qemu, consoleFile, socketPath, stderr);
  }

  /** Connects to the channel (QEMU creates the socket ~50 ms after it starts) and sends `sync`. */
  async connect(): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        const sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(this.socketPath);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const conn = ++this.conn;
        let buffer = '';
        sock.setEncoding('utf8');
        sock.on('data', (d: string) => {
          buffer += d;
          let i;
          while ((i = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, i);
            buffer = buffer.slice(i + 1);
            const at = performance.now() - this.started;
            if (EVENT.test(line)) this.received.push({ line, conn, at });
            this.events.add(line, at);
          }
        });
        sock.on('error', () => undefined);
        sock.write('sync\n');
        this.sock = sock;
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(20);
      }
    }
  }

  async disconnect(): Promise<void> {
    const s = this.sock;
    this.sock = null;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.once('close', () => resolve());
      s.destroy();
    });
  }

  send(line: string): void {
    assert.ok(this.sock, 'not connected');
    this.sock.write(`${line}\n`);
  }

  get connection(): number {
    return this.conn;
  }

  console(): string {
    try {
      return readFileSync(this.consoleFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** Waits for QEMU to exit by itself. */
  async waitExit(timeoutMs: number) {
    const exit = await withTimeout(this.exited, timeoutMs, `VM exit (console:\n${this.console()})`);
    return { ...exit, ms: exit.at - this.started };
  }

  async destroy(): Promise<void> {
    this.sock?.destroy();
    if (this.qemu.exitCode === null && this.qemu.signalCode === null) this.qemu.kill('SIGKILL');
    await this.exited;
    assert.deepEqual(qemuPidsUnder(this.dir), [], 'QEMU still running');
    rmSync(this.dir, { recursive: true, force: true });
    assert.ok(!existsSync(this.dir));
  }

  timeline(): string {
    return this.events.events
      .map((e) => `${e.name}${e.detail ? ` ${e.detail}` : ''} @${(e.at / 1000).toFixed(2)} s`)
      .join(', ');
  }
}

describe('bootstrap/linux.sh in a real VM (tiny image, virtio-serial channel)', () => {
  let image: TinyImage;
  let tarball: Tarball;
  let server: Awaited<ReturnType<typeof startServer>>;
  const VM_TIMEOUT = 90_000; // TCG on a busy 2-core machine: boots take 2.5 s, allow for drift

  before(async () => {
    const dir = path.join(root, 'vm-common');
    mkdirSync(dir);
    image = await buildTinyImage({ imagesDir: path.join(dir, 'images') });
    tarball = makeRunnerTarball(dir);
    server = await startServer(tarball);
  });

  after(async () => {
    await server?.close();
    // busybox nc forwarders (one per guest connection) end with their connection
    await sleep(200);
    const forwarders = pidsWithArg(`${server?.port}`).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('nc');
      } catch {
        return false;
      }
    });
    killAll(forwarders);
    assert.deepEqual(forwarders, [], 'guestfwd forwarders left running');
  });

  const baseConfig = (name: string): Record<string, string> => ({
    HATCHERY_VM: name,
    HATCHERY_RUNNER_URL: 'http://10.0.2.100/runner.tar.gz',
    HATCHERY_RUNNER_SHA256: tarball.sha256,
    HATCHERY_CHANNEL: `virtio:${PORT_NAME}`,
    HATCHERY_NET: 'static:10.0.2.15/24,10.0.2.2',
  });

  it('boots, registers, runs the job, reports each step in order and powers off', async (t) => {
    const secret = jit('leak'); // the fixture runner prints it once: it must not reach the console
    const downloads = server.downloads();
    const vm = TestVm.start(image, server.port, {
      config: { ...baseConfig('vm-happy'), HATCHERY_JITCONFIG: secret, HATCHERY_WORK_DISK: '/dev/vda' },
      disk: true,
    });
    try {
      await vm.connect();
      const exit = await vm.waitExit(VM_TIMEOUT);
      t.diagnostic(`QEMU start → ${vm.timeline()}, QEMU exit @${(exit.ms / 1000).toFixed(2)} s`);
      assert.equal(exit.code, 0, `QEMU exit; stderr: ${vm.stderr.text}`);
      assert.deepEqual(vm.events.problems, []);
      // A VM that powers off says so last (on the http channel nothing else would tell).
      assert.deepEqual(vm.events.summary(), [...HAPPY_PATH, 'poweroff']);
      assert.deepEqual(
        vm.events.events.map((e) => e.seq),
        [1, 2, 3, 4, 5, 6],
      );
      assert.equal(server.downloads() - downloads, 1);
      const text = vm.console();
      assert.match(text, /work disk \/dev\/vda mounted at \/opt\/hatchery-runner/);
      assert.match(text, /runner\| .*Listening for Jobs/);
      assert.match(text, /a line holding the JIT config, not shown/);
      assert.match(text, /reboot: Power down/);
      assert.ok(!text.includes(secret), 'the JIT config reached the console');
    } finally {
      await vm.destroy();
    }
  });

  it('replays events after a reconnect, takes `jit` from the host, stops on `shutdown` (DHCP)', async (t) => {
    const secret = jit('wait'); // the fixture runner listens until SIGINT
    const config = baseConfig('vm-shutdown');
    config.HATCHERY_NET = 'dhcp';
    const vm = TestVm.start(image, server.port, { config });
    try {
      await vm.connect();
      await vm.events.waitFor('booted', VM_TIMEOUT);
      vm.send('hello-from-a-future-host'); // unknown: ignored
      vm.send(`jit ${secret}`);
      await vm.events.waitFor('registered', 30_000);

      // Disconnect and reconnect: the `sync` sent on connect replays everything, identically.
      const before = vm.received.filter((r) => r.conn === vm.connection).map((r) => r.line);
      await vm.disconnect();
      await sleep(500);
      await vm.connect();
      const deadline = Date.now() + 10_000;
      let replay: string[] = [];
      while (Date.now() < deadline) {
        replay = vm.received.filter((r) => r.conn === vm.connection).map((r) => r.line);
        if (replay.length >= 3) break;
        await sleep(50);
      }
      // Without a JIT config in its config, the guest says when it waits for one (a warm VM).
      assert.deepEqual(replay, ['event 1 booted', 'event 2 awaiting-jit', 'event 3 registered']);
      assert.deepEqual([...new Set(before)], replay);

      const stopAt = performance.now() - vm.started;
      vm.send('shutdown');
      const exit = await vm.waitExit(30_000);
      t.diagnostic(
        `QEMU start → ${vm.timeline()}; shutdown sent @${(stopAt / 1000).toFixed(2)} s, QEMU exit @${(exit.ms / 1000).toFixed(2)} s`,
      );
      assert.equal(exit.code, 0);
      assert.deepEqual(vm.events.problems, []);
      // 130: the runner handled the SIGINT itself (a SIGKILL after 10 s would be 137).
      assert.deepEqual(vm.events.summary(), [
        'booted',
        'awaiting-jit',
        'registered',
        'stopping',
        'runner-exited 130',
        'poweroff',
      ]);
      const text = vm.console();
      assert.match(text, /network: DHCP on eth0/);
      assert.match(text, /the host asks for a shutdown/);
      assert.ok(!text.includes(secret));
    } finally {
      await vm.destroy();
    }
  });

  it('reports a checksum mismatch and powers off', async (t) => {
    const vm = TestVm.start(image, server.port, {
      config: {
        ...baseConfig('vm-badsum'),
        HATCHERY_RUNNER_SHA256: '0'.repeat(64),
        HATCHERY_JITCONFIG: jit(),
      },
    });
    try {
      await vm.connect();
      const exit = await vm.waitExit(VM_TIMEOUT);
      t.diagnostic(`QEMU start → ${vm.timeline()}, QEMU exit @${(exit.ms / 1000).toFixed(2)} s`);
      assert.equal(exit.code, 0);
      assert.deepEqual(
        vm.events.events.map((e) => e.name),
        ['booted', 'error', 'poweroff'],
      );
      assert.match(vm.events.events[1]!.detail, /checksum mismatch: expected 0{64}, got [0-9a-f]{64}/);
      assert.doesNotMatch(vm.console(), /starting the runner/);
    } finally {
      await vm.destroy();
    }
  });

  it('reports a missing JIT config after HATCHERY_JIT_TIMEOUT and powers off', async (t) => {
    const vm = TestVm.start(image, server.port, {
      config: { ...baseConfig('vm-nojit'), HATCHERY_JIT_TIMEOUT: '2' },
    });
    try {
      await vm.connect();
      const exit = await vm.waitExit(VM_TIMEOUT);
      t.diagnostic(`QEMU start → ${vm.timeline()}, QEMU exit @${(exit.ms / 1000).toFixed(2)} s`);
      assert.equal(exit.code, 0);
      assert.deepEqual(vm.events.summary(), [
        'booted',
        'awaiting-jit',
        'error no JIT config within 2 s',
        'poweroff',
      ]);
    } finally {
      await vm.destroy();
    }
  });
});

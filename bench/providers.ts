// Per provider, Hatchery against that provider's own raw path for the same tiny guest, in the
// same run, the order alternating between rounds (the machine's drift hits both alike):
//   qemu     create webhook → runner online  vs  QEMU started by hand → guest `registered`
//            (bench/boot.ts); destroy webhook → `destroyed` (QEMU exited, files removed)  vs
//            SIGKILL of the raw QEMU + its files removed by hand.
//   vagrant  create webhook → runner online  vs  a raw `vagrant up` of the same box (a project
//            dir with the project's Vagrantfile and the env the provider passes) → `up` returned
//            and the guest reported `registered` (both: Hatchery's VM is ready once its `up`
//            returned and its runner registered); destroy webhook → `destroyed` (domain and
//            project dir gone)  vs  a raw `vagrant destroy -f` + the project dir removed.
// The Vagrant side runs on a private libvirtd (scripts/libvirt.sh), stopped at the end.
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRunnersApi } from '../src/github/runners.ts';
import { GUEST_MESSAGES_PATH } from '../src/guest/protocol.ts';
import { isOurProcess } from '../src/providers/qemu/process.ts';
import { imageResolver } from '../src/providers/qemu/images/resolve.ts';
import { renderGuestConfig } from '../src/providers/qemu/command-line.ts';
import type { QemuPoolSettings } from '../src/providers/qemu/kind.ts';
import { buildTinyBox } from '../src/providers/vagrant/box.ts';
import { runVagrant } from '../src/providers/vagrant/cli.ts';
import { PROJECT_VAGRANTFILE } from '../src/providers/vagrant/kind.ts';
import { projectFiles, vagrantEnv, type GuestNetwork, type Meta } from '../src/providers/vagrant/project.ts';
import { endStrays, processesIn } from '../src/providers/vagrant/strays.ts';
import { BOOTSTRAP_PATHS } from '../src/service.ts';
import { IMAGES_DIR } from '../test/helpers/images.ts';
import { PrivateLibvirtd, vagrantSection } from '../test/helpers/libvirt.ts';
import { GUEST_SERVICE, Stack } from '../test/helpers/stack.ts';
import { hatcheryCreate, hatcheryDestroy, rawQemuDown, rawQemuUp } from './boot.ts';
import { fmtMs, fmtRatio, median, progress } from './stats.ts';

const REPO = 'bench/boot'; // the repository hatcheryCreate's webhooks name

export interface ProviderTimes {
  provider: string;
  raw: string;
  rawUpMs: number[];
  hatcheryUpMs: number[];
  rawDownMs: number[];
  hatcheryDownMs: number[];
}

export interface ProvidersResult {
  rounds: number;
  results: ProviderTimes[];
}

/** Runs `raw` and `hatchery` (each: up, then down) `rounds` times, alternating which goes first. */
async function alternate(
  name: string,
  raw: string,
  rounds: number,
  rawRun: (round: number) => Promise<{ up: number; down: number }>,
  hatcheryRun: (round: number) => Promise<{ up: number; down: number }>,
): Promise<ProviderTimes> {
  const t: ProviderTimes = {
    provider: name,
    raw,
    rawUpMs: [],
    hatcheryUpMs: [],
    rawDownMs: [],
    hatcheryDownMs: [],
  };
  for (let r = 1; r <= rounds; r++) {
    for (const which of r % 2 ? ['raw', 'hatchery'] : ['hatchery', 'raw']) {
      const m = which === 'raw' ? await rawRun(r) : await hatcheryRun(r);
      (which === 'raw' ? t.rawUpMs : t.hatcheryUpMs).push(m.up);
      (which === 'raw' ? t.rawDownMs : t.hatcheryDownMs).push(m.down);
    }
    progress(
      `providers: ${name} round ${r}/${rounds}: up raw ${fmtMs(t.rawUpMs.at(-1)!)}, hatchery ` +
        `${fmtMs(t.hatcheryUpMs.at(-1)!)}; down raw ${fmtMs(t.rawDownMs.at(-1)!)}, hatchery ` +
        `${fmtMs(t.hatcheryDownMs.at(-1)!)}`,
    );
  }
  return t;
}

/** Destroys whatever VMs the stack's providers still have (after a failed round). */
async function destroyAll(stack: Stack): Promise<void> {
  for (const { provider } of stack.service.providers.all()) {
    for (const vm of await provider.list().catch(() => [])) {
      await provider.destroy(vm.name).catch((e: Error) => progress(`cleanup of ${vm.name}: ${e.message}`));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// QEMU

async function benchQemu(rounds: number): Promise<ProviderTimes> {
  const stack = await Stack.start({ workers: { poll_ms: 250 } });
  const image = await imageResolver(IMAGES_DIR)('tiny');
  const stateDir = stack.files.stateDir;
  const hatcheryRun = async (round: number) => {
    const created = await hatcheryCreate(stack, round);
    const dir = path.join(stateDir, created.name);
    const pid = Number(readFileSync(path.join(dir, 'qemu.pid'), 'utf8'));
    const down = await hatcheryDestroy(stack, created);
    // `destroyed` is recorded after the provider's destroy returned: QEMU gone (a zombie not yet
    // reaped by init counts as gone), files removed.
    if (await isOurProcess(pid, dir)) throw new Error(`qemu: ${created.name} destroyed, its QEMU runs`);
    if (existsSync(dir)) throw new Error(`qemu: ${created.name} destroyed, its files remain`);
    return { up: created.ms, down };
  };
  const rawRun = async (round: number) => {
    const { ms, vm } = await rawQemuUp(stack, image, round);
    const down = await rawQemuDown(vm);
    return { up: ms, down };
  };
  try {
    progress('providers: qemu warm-up');
    await rawRun(0);
    await hatcheryRun(0);
    return await alternate('qemu', 'QEMU by hand', rounds, rawRun, hatcheryRun);
  } finally {
    await destroyAll(stack);
    await stack.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Vagrant

/** What a raw guest's bootstrap reports over the HTTP channel: resolves on `registered`. */
async function channelStandIn(): Promise<{
  port: number;
  registered: (token: string) => Promise<number>;
  close: () => Promise<void>;
}> {
  const waiters = new Map<string, (at: number) => void>();
  const seen = new Map<string, number>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      res.setHeader('Connection', 'close');
      const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
      if (req.method === 'POST' && req.url === GUEST_MESSAGES_PATH && /^event \d+ registered\b/.test(body)) {
        const at = performance.now();
        if (!seen.has(token)) seen.set(token, at);
        waiters.get(token)?.(seen.get(token)!);
      }
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    registered: (token) => {
      const at = seen.get(token);
      if (at !== undefined) return Promise.resolve(at);
      return new Promise((resolve) => waiters.set(token, resolve));
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const VAGRANT_STATE = 'vagrant';
const HATCHERY_SSH_PORTS = '42500-42539';
const RAW_SSH_PORT = 42540;

async function benchVagrant(rounds: number): Promise<ProviderTimes> {
  const root = mkdtempSync(path.join(tmpdir(), 'hatchery-bench-vagrant-'));
  const rawDir = path.join(root, 'raw');
  let libvirtd: PrivateLibvirtd | undefined;
  let stack: Stack | undefined;
  let standIn: Awaited<ReturnType<typeof channelStandIn>> | undefined;
  try {
    libvirtd = PrivateLibvirtd.start(path.join(root, 'libvirt'));
    const lv = libvirtd;
    const s = await Stack.start({
      workers: { poll_ms: 250 },
      providers: { vagrant: vagrantSection(lv, VAGRANT_STATE, { ssh_ports: HATCHERY_SSH_PORTS }) },
      pools: [{ name: 'vagrant', labels: ['vagrant'], provider: 'vagrant', channel: 'http' }],
    });
    stack = s;
    const sc = await channelStandIn();
    standIn = sc;
    const stateDir = path.join(s.files.dir, VAGRANT_STATE);
    const config = s.service.config;
    const pool = config.pools[0]!;
    const settings = pool.settings as QemuPoolSettings;
    // The pool's own network, but the raw guest's channel goes to the stand-in, not the service.
    const network: GuestNetwork = {
      mode: settings.network,
      forwards: settings.forwards.map((f) =>
        f.guest === GUEST_SERVICE ? { guest: f.guest, host: `127.0.0.1:${sc.port}` } : f,
      ),
    };
    const runners = createRunnersApi({ apiUrl: s.fake.url, token: config.github.token! });
    // The box the provider adds for image `tiny` (built once, found in the image cache after).
    const { name: box } = await buildTinyBox({ imagesDir: IMAGES_DIR });

    const hatcheryRun = async (round: number) => {
      const created = await hatcheryCreate(s, round, 'vagrant');
      const down = await hatcheryDestroy(s, created);
      if (lv.domains().includes(created.name) || existsSync(path.join(stateDir, created.name)))
        throw new Error(`vagrant: ${created.name} destroyed but its domain or project dir remains`);
      return { up: created.ms, down };
    };

    const rawRun = async (round: number) => {
      const name = `hatchery-rawv-${round}`;
      const jit = await runners.generateJitConfig(REPO, { name, labels: [name], runnerGroupId: 1 });
      const token = randomBytes(16).toString('hex');
      const files = projectFiles(rawDir, name);
      const meta: Meta = {
        name,
        instanceId: 'bench-raw',
        pool: pool.name,
        image: 'tiny',
        box,
        cpus: pool.cpus,
        memoryMiB: pool.memory,
        sshPort: RAW_SSH_PORT + round,
        tags: {},
        createdAt: new Date().toISOString(),
      };
      const env = (guestConfig?: string) =>
        vagrantEnv({
          base: process.env,
          vagrantHome: path.join(stateDir, 'vagrant.d'), // the box Hatchery added, its volume uploaded
          libvirtUri: lv.uri,
          meta,
          network,
          bootstrap: files.bootstrap,
          guestConfig,
        });
      const guestConfig = renderGuestConfig({
        HATCHERY_VM: name,
        HATCHERY_RUNNER_URL: config.runner.url!,
        HATCHERY_RUNNER_SHA256: config.runner.sha256!,
        HATCHERY_JITCONFIG: jit.encodedJitConfig,
        HATCHERY_CHANNEL: `http://${GUEST_SERVICE.replace(/:80$/, '')}${GUEST_MESSAGES_PATH}`,
        HATCHERY_CHANNEL_TOKEN: token,
      });
      const run = (args: string[], e: NodeJS.ProcessEnv) =>
        runVagrant(args, { binary: 'vagrant', cwd: files.dir, env: e, timeoutMs: 600_000 });

      const started = performance.now();
      await mkdir(files.state, { recursive: true, mode: 0o700 });
      await copyFile(PROJECT_VAGRANTFILE, files.vagrantfile);
      await writeFile(files.bootstrap, readFileSync(BOOTSTRAP_PATHS.linux, 'utf8'), { mode: 0o600 });
      const registered = sc.registered(token);
      await run(['up', '--provider', 'libvirt'], env(guestConfig));
      const upAt = performance.now();
      const up = Math.max(upAt, await registered) - started;

      const downStarted = performance.now();
      await run(['destroy', '-f'], env());
      await rm(files.dir, { recursive: true, force: true });
      const down = performance.now() - downStarted;
      if (lv.domains().includes(name)) throw new Error(`raw vagrant destroy left the domain ${name}`);
      await runners.deleteRunner(REPO, jit.runnerId);
      return { up, down };
    };

    // The first `up` of a box uploads its volume to libvirt: Hatchery's warm-up does it.
    progress('providers: vagrant warm-up (box build/add, volume upload)');
    await hatcheryRun(0);
    await rawRun(0);
    return await alternate('vagrant', '`vagrant up` by hand', rounds, rawRun, hatcheryRun);
  } finally {
    // Raw project dirs a failed round left: their `vagrant` processes, then their domains
    // (libvirt.sh stop destroys every domain of the private libvirtd).
    for (const dir of existsSync(rawDir) ? [rawDir] : []) {
      for (const pid of processesIn(dir)) progress(`providers: ending stray vagrant process ${pid}`);
      await endStrays(dir);
    }
    if (stack) await destroyAll(stack);
    await standIn?.close();
    await stack?.stop();
    const left = libvirtd?.stop();
    rmSync(root, { recursive: true, force: true });
    if (left && (left.domains.length || left.survivors.length || left.libvirtd.length))
      progress(`providers: the private libvirtd had leftovers (cleaned up): ${JSON.stringify(left)}`);
  }
}

export async function benchProviders(rounds: number): Promise<ProvidersResult> {
  return { rounds, results: [await benchQemu(rounds), await benchVagrant(rounds)] };
}

export function reportProviders(r: ProvidersResult): string {
  const lines = [`per provider: Hatchery against the provider's raw path (${r.rounds} rounds, medians)`];
  for (const t of r.results) {
    const ratio = (h: number[], raw: number[]) =>
      `${fmtRatio(median(h) / median(raw))} (median of per-round ratios ${fmtRatio(median(h.map((v, i) => v / raw[i]!)))})`;
    const all = (v: number[]) => v.map(fmtMs).join(', ');
    lines.push(
      `  ${t.provider} (raw: ${t.raw})`,
      `    create → runner online      hatchery ${fmtMs(median(t.hatcheryUpMs))}  raw ${fmtMs(median(t.rawUpMs))}  ratio ${ratio(t.hatcheryUpMs, t.rawUpMs)}`,
      `      all: hatchery ${all(t.hatcheryUpMs)}; raw ${all(t.rawUpMs)}`,
      `    destroy → gone              hatchery ${fmtMs(median(t.hatcheryDownMs))}  raw ${fmtMs(median(t.rawDownMs))}  ratio ${ratio(t.hatcheryDownMs, t.rawDownMs)}`,
      `      all: hatchery ${all(t.hatcheryDownMs)}; raw ${all(t.rawDownMs)}`,
    );
  }
  lines.push(
    '  qemu raw: boot → guest `registered`; destroy = SIGKILL + files removed by hand.',
    '  vagrant raw: `vagrant up` returned AND guest `registered` (what Hatchery waits for: `up` done,',
    '  then the runner registered); destroy = `vagrant destroy -f` + project dir removed.',
  );
  return lines.join('\n');
}

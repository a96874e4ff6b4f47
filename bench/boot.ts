// Time to a ready runner: a signed create webhook → the runner online (Hatchery's long-poll
// answers 200), against a raw QEMU boot of the same guest to the same point (QEMU started by
// hand with the same command line, config and runner → the guest reports `registered`).
// Rounds alternate the order of the two so that the machine's drift hits both alike.
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRunnersApi } from '../src/github/runners.ts';
import { GuestChannel } from '../src/guest/channel.ts';
import { imageResolver } from '../src/providers/qemu/images/resolve.ts';
import type { QemuPoolSettings } from '../src/providers/qemu/kind.ts';
import {
  qemuArgs,
  qemuGuestConfig,
  renderGuestConfig,
  vmFiles,
  type BootImage,
} from '../src/providers/qemu/command-line.ts';
import type { VmSpec } from '../src/providers/provider.ts';
import { BOOTSTRAP_PATHS } from '../src/service.ts';
import { IMAGES_DIR } from '../test/helpers/images.ts';
import { GUEST_GITHUB, Stack } from '../test/helpers/stack.ts';
import { fmtMs, fmtRatio, median, progress } from './stats.ts';

const REPO = 'bench/boot';

export interface BootResult {
  rounds: number;
  rawMs: number[];
  hatcheryMs: number[];
  /** Median time spent in each step of Hatchery's path (from the VMs' audit trails). */
  steps: Record<string, number>;
}

/** A QEMU started by hand (rawQemuUp), for rawQemuDown. */
export interface RawQemu {
  qemu: ChildProcess;
  exited: Promise<unknown>;
  dir: string;
  remove: () => Promise<unknown>;
}

/** Raw QEMU boot → the guest reports `registered`; the VM is left running (rawQemuDown ends it). */
export async function rawQemuUp(
  stack: Stack,
  image: BootImage,
  round: number,
): Promise<{ ms: number; vm: RawQemu }> {
  const name = `hatchery-raw-${round}`;
  const config = stack.service.config;
  const runners = createRunnersApi({ apiUrl: stack.fake.url, token: config.github.token! });
  const jit = await runners.generateJitConfig(REPO, { name, labels: [name], runnerGroupId: 1 });
  const bootstrap = readFileSync(BOOTSTRAP_PATHS.linux, 'utf8');
  const spec: VmSpec = {
    name,
    pool: 'linux',
    image: 'tiny',
    cpus: 1,
    memoryMiB: config.pools[0]!.memory,
    bootstrap,
    guestConfig: {
      HATCHERY_RUNNER_URL: config.runner.url!,
      HATCHERY_RUNNER_SHA256: config.runner.sha256!,
      HATCHERY_JITCONFIG: jit.encodedJitConfig,
    },
    tags: {},
  };
  const files = vmFiles(`${stack.files.dir}/raw`, name);
  mkdirSync(files.dir, { recursive: true });
  writeFileSync(files.config, renderGuestConfig(qemuGuestConfig(spec, image)));
  writeFileSync(files.bootstrap, bootstrap);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', image.disk!, '-F', 'qcow2', files.overlay]);
  const args = qemuArgs(
    spec,
    image,
    files,
    {
      mode: 'restricted',
      forwards: [
        { guest: GUEST_GITHUB, host: (config.pools[0]!.settings as QemuPoolSettings).forwards[0]!.host },
      ],
    },
    {
      accel: 'tcg',
      forwardCommand: ['busybox', 'nc'],
    },
  );
  // Run QEMU in the foreground: no daemonizing, no pid file, nothing of Hatchery's around it.
  const i = args.indexOf('-pidfile');
  args.splice(i, 2);
  args.splice(args.indexOf('-daemonize'), 1);

  const started = performance.now();
  const qemu = spawn('qemu-system-x86_64', args, { stdio: 'ignore' });
  const exited = new Promise((r) => qemu.once('exit', r));
  const channel = new GuestChannel(files.channel);
  for (;;) {
    try {
      await channel.connect();
      break;
    } catch {
      await sleep(5);
    }
  }
  const registered = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('raw boot: no `registered` within 300 s')), 300_000);
    channel.on('message', (m) => {
      if (m.name !== 'registered') return;
      clearTimeout(timer);
      resolve(performance.now());
    });
  });
  channel.close();
  const remove = () => runners.deleteRunner(REPO, jit.runnerId);
  return { ms: registered - started, vm: { qemu, exited, dir: files.dir, remove } };
}

/** Raw destroy: SIGKILL the QEMU, wait for it to exit, remove its files by hand. Returns the ms. */
export async function rawQemuDown(vm: RawQemu): Promise<number> {
  const started = performance.now();
  vm.qemu.kill('SIGKILL');
  await vm.exited;
  rmSync(vm.dir, { recursive: true, force: true });
  const ms = performance.now() - started;
  await vm.remove(); // its runner registration: bookkeeping, not part of the destroy measured
  return ms;
}

async function rawBoot(stack: Stack, image: BootImage, round: number): Promise<number> {
  const { ms, vm } = await rawQemuUp(stack, image, round);
  await rawQemuDown(vm);
  return ms;
}

/** A signed create for one VM of the pool with `label` → its runner online (the long-poll). */
export async function hatcheryCreate(
  stack: Stack,
  round: number,
  label = 'linux',
): Promise<{ ms: number; name: string; body: Record<string, unknown> }> {
  const body = {
    action: 'create',
    repository: REPO,
    run_id: 1000 + round,
    run_attempt: 1,
    labels: [label],
  };
  const started = performance.now();
  const created = await stack.client.control(body);
  if (created.status !== 202) throw new Error(`create: ${created.status} ${JSON.stringify(created.json)}`);
  const name = created.json.vms[0]!.name;
  // Repeated on 408 as the workflow's curl --retry does (a Debian guest on a busy host can take
  // minutes), each poll under fetch's 300 s limit on a reply.
  let ready = await stack.client.api('GET', `/api/v1/vms/${name}?wait=ready&timeout=240`);
  for (let polls = 1; ready.status === 408 && polls < 4; polls++) {
    ready = await stack.client.api('GET', `/api/v1/vms/${name}?wait=ready&timeout=240`);
  }
  const ms = performance.now() - started;
  if (ready.status !== 200) throw new Error(`not ready: ${ready.status} ${JSON.stringify(ready.json)}`);
  return { ms, name, body };
}

/** The signed destroy of hatcheryCreate's VM → its state `destroyed` (the provider's destroy done). */
export async function hatcheryDestroy(
  stack: Stack,
  created: { name: string; body: object },
): Promise<number> {
  const started = performance.now();
  const r = await stack.client.control({ ...created.body, action: 'destroy' });
  if (r.status !== 202 && r.status !== 200) throw new Error(`destroy: ${r.status} ${JSON.stringify(r.json)}`);
  await stack.waitState(created.name, ['destroyed'], 180_000); // a systemd guest takes a while to stop
  return performance.now() - started;
}

/** A signed create for one VM of the pool with `label` → its runner online (the long-poll), then destroyed. */
export async function hatcheryBoot(
  stack: Stack,
  round: number,
  label = 'linux',
): Promise<{ ms: number; name: string }> {
  const created = await hatcheryCreate(stack, round, label);
  await hatcheryDestroy(stack, created);
  return { ms: created.ms, name: created.name };
}

export async function benchBoot(rounds: number): Promise<BootResult> {
  const stack = await Stack.start({ workers: { poll_ms: 250 } });
  // The same image the service boots (the service resolved, and built if needed, it at start).
  const image = await imageResolver(IMAGES_DIR)('tiny');
  const rawMs: number[] = [];
  const hatcheryMs: number[] = [];
  const names: string[] = [];
  try {
    // One unmeasured run of each warms the page cache (kernel, initrd) and the service.
    progress('boot: warm-up');
    await rawBoot(stack, image, 0);
    await hatcheryBoot(stack, 0);
    for (let r = 1; r <= rounds; r++) {
      const order = r % 2 ? ['raw', 'hatchery'] : ['hatchery', 'raw'];
      for (const which of order) {
        if (which === 'raw') rawMs.push(await rawBoot(stack, image, r));
        else {
          const h = await hatcheryBoot(stack, r);
          hatcheryMs.push(h.ms);
          names.push(h.name);
        }
      }
      progress(
        `boot: round ${r}/${rounds}: raw ${fmtMs(rawMs.at(-1)!)}, hatchery ${fmtMs(hatcheryMs.at(-1)!)}`,
      );
    }
    const steps: Record<string, number[]> = {};
    for (const name of names) {
      const vm = (await stack.service.store.getVm(name))!;
      const ev = await stack.service.store.listEvents(vm.id);
      const at = (e: string) => ev.find((x) => x.event === e)?.at ?? Number.NaN;
      const add = (k: string, v: number) => (steps[k] ??= []).push(v);
      add('request → admitted', at('admitted') - at('requested'));
      add('admitted → VM created (JIT config, overlay, QEMU start)', at('created') - at('admitted'));
      add('created → guest booted', at('guest_booted') - at('created'));
      add('guest booted → runner registered', at('runner_registered') - at('guest_booted'));
    }
    return {
      rounds,
      rawMs,
      hatcheryMs,
      steps: Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, median(v)])),
    };
  } finally {
    await stack.stop();
  }
}

export function reportBoot(r: BootResult): string {
  const raw = median(r.rawMs);
  const hatchery = median(r.hatcheryMs);
  const pairs = r.rawMs.map((v, i) => r.hatcheryMs[i]! / v);
  const own =
    (r.steps['request → admitted'] ?? 0) +
    (r.steps['admitted → VM created (JIT config, overlay, QEMU start)'] ?? 0);
  return [
    `time to a ready runner (${r.rounds} rounds, medians)`,
    `  raw QEMU boot → registered   ${fmtMs(raw)}   (all: ${r.rawMs.map(fmtMs).join(', ')})`,
    `  create webhook → online      ${fmtMs(hatchery)}   (all: ${r.hatcheryMs.map(fmtMs).join(', ')})`,
    `  ratio hatchery / raw         ${fmtRatio(hatchery / raw)}   (median of per-round ratios ${fmtRatio(median(pairs))}; goal ≤ 1.15×)`,
    // The boot itself varies by ±30 % between runs here; what Hatchery adds before QEMU starts
    // is the robust measure of its overhead.
    `  Hatchery's own steps before QEMU runs: ${fmtMs(own)} = ${((100 * own) / raw).toFixed(1)} % of the raw boot`,
    `  where Hatchery's time goes (medians, from the audit trail):`,
    ...Object.entries(r.steps).map(([k, v]) => `    ${k.padEnd(58)} ${fmtMs(v)}`),
  ].join('\n');
}

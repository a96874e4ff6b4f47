// The control plane's cost, without a hypervisor: `hatchery serve` (its own process, logging at
// info as deployed) on the in-memory provider, whose VMs are handed to emulated guests (they
// report over the HTTP guest channel and play the runner against the GitHub stand-in; both live
// in this process, so their CPU is not the service's). Four figures against their goals:
//  - service CPU per whole lifecycle (create → runner online → job → poweroff → destroyed);
//  - signed-create ack throughput vs a bare Express app answering 202, in the same run;
//  - CPU of one reconcile pass over 10,000 live VMs, every lost one found;
//  - the service's RSS with 1,000 live VMs (and idle).
// Plus how long a VM waits for a worker in a burst (admitted → its create step running).
import { Session } from 'node:inspector/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'smol-toml';
import { loadConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/log.ts';
import type { MemoryProvider } from '../src/providers/memory/provider.ts';
import { HatcheryService } from '../src/service.ts';
import { StackFiles } from '../test/helpers/stack.ts';
import { GuestEmulator } from '../test/fakes/guest/emulator.ts';
import { burst, client } from './ack.ts';
import { cpuMs, measuredService, rssMiB, startBare, throughput } from './throughput.ts';
import { fmtMs, fmtRatio, percentile, progress } from './stats.ts';

export interface ControlPlaneResult {
  lifecycles: number;
  /** Guests on a unix socket, as QEMU's virtio-serial port: the default path (after the warm-up). */
  cpuPerLifecycleMs: number;
  /** The same, per warm-up burst: the first one is the cold service. */
  warmupCpuMs: number[];
  /** Guests on the HTTP channel (network providers). */
  cpuPerHttpLifecycleMs: number;
  /** Admitted → created (the create step ran: a worker took it, minted the JIT config, created). */
  admittedToCreatedMs: number[];
  ack: {
    creates: number;
    servicePerS: number;
    barePerS: number;
    serviceCpuPerReqMs: number;
    bareCpuPerReqMs: number;
  };
  reconcile: { vms: number; lost: number; found: number; cpuMs: number[] };
  rss: { idleMiB: number; liveVms: number; withVmsMiB: number; settledMiB: number; settleS: number };
  runtime: string;
}

async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 300_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

export async function benchControlPlane(opts: {
  lifecycles: number;
  /** Bursts of `lifecycles` virtio lifecycles run before any measurement. */
  warmupBursts: number;
  acks: number;
  reconcileVms: number;
  rssVms: number;
  /** How long to wait, after the RSS reading right after the burst, for the settled one. */
  settleS: number;
}): Promise<ControlPlaneResult> {
  // First, while this process's heap is small: the pass runs here, and a collection of the
  // guests' and the stand-in's garbage from the lifecycles below landed in it (120 → 470 ms).
  const reconcile = await benchReconcile(opts.reconcileVms, Math.round(opts.reconcileVms / 100));
  const emulator = new GuestEmulator();
  const files = await StackFiles.create({
    providers: {
      sim: { kind: 'memory', guest_emulator: await emulator.start() },
      hold: { kind: 'memory' }, // VMs with no guest: they stay booting (RSS, ack throughput)
    },
    pools: [
      { name: 'sim', labels: ['sim'], provider: 'sim', providerKeys: () => ({}), max_vms: opts.lifecycles },
      {
        name: 'simhttp',
        labels: ['simhttp'],
        provider: 'sim',
        providerKeys: () => ({ channel: 'http' }),
        max_vms: opts.lifecycles,
      },
      {
        name: 'hold',
        labels: ['hold'],
        provider: 'hold',
        providerKeys: () => ({}),
        max_vms: 1,
        timeouts: { boot: 3600, queue: 3600 },
      },
      {
        name: 'crowd',
        labels: ['crowd'],
        provider: 'hold',
        providerKeys: () => ({}),
        max_vms: opts.rssVms,
        timeouts: { boot: 3600, queue: 3600 },
      },
    ],
    maxVms: opts.lifecycles + opts.rssVms + 1,
    emulatedGuests: true,
    logLevel: 'info',
    workers: { poll_ms: 250 },
  });
  const svc = measuredService(files);
  const bare = await startBare();
  const http = { svc: null as ReturnType<typeof client> | null, bare: client(bare.url, 50) };
  try {
    await svc.start();
    const pid = svc.pid;
    http.svc = client(svc.url, 50);
    const idleMiB = rssMiB(pid);
    let run = 0;
    const create = (label: string, delivery?: string) => {
      const body = JSON.stringify({
        action: 'create',
        repository: 'bench/cp',
        run_id: ++run,
        run_attempt: 1,
        labels: [label],
      });
      return {
        body,
        headers: {
          'content-type': 'application/json',
          'x-hatchery-signature-256': files.signControl(body),
          ...(delivery ? { 'x-hatchery-delivery': delivery } : {}),
        },
      };
    };
    const names = async (label: string, n: number): Promise<string[]> => {
      const out: string[] = [];
      await burst(n, async () => {
        const { body, headers } = create(label);
        const res = await fetch(`${svc.url}/hooks/control`, { method: 'POST', headers, body });
        out.push(((await res.json()) as { vms: { name: string }[] }).vms[0]!.name);
        return res.status;
      });
      return out;
    };
    const lifecycles = async (n: number, label = 'sim'): Promise<string[]> => {
      const vms = await names(label, n);
      const jobs = vms.map((name) =>
        files.fake.queueJob({ repository: 'bench/cp', labels: ['self-hosted', name] }),
      );
      for (const j of jobs) await files.fake.waitForJob(j.id, { timeoutMs: 300_000 });
      try {
        await waitUntil(
          async () =>
            (await svc.read((s) => s.getVms(vms))).filter((v) => v.state === 'destroyed').length === n,
          `${n} lifecycles to end`,
        );
      } catch (e) {
        const states = (await svc.read((s) => s.getVms(vms))).map(
          (v) => `${v.name}:${v.state}:${v.failure ?? ''}`,
        );
        throw new Error(
          `${(e as Error).message}: ${states.filter((x) => !x.includes(':destroyed:')).join(', ')}`,
        );
      }
      return vms;
    };

    // Warm-up: V8 compiles the hot paths over the first few hundred lifecycles (the first burst
    // of 200 cost 1.4–1.6× the fourth in the same process); a service runs thousands. The first
    // burst's cost is reported too (cold).
    progress('control plane: warm-up (20 lifecycles on the HTTP channel)');
    await lifecycles(20, 'simhttp');
    const cpuPerBurst = async (label: string): Promise<{ vms: string[]; ms: number }> => {
      const cpu0 = cpuMs(pid);
      const vms = await lifecycles(opts.lifecycles, label);
      return { vms, ms: (cpuMs(pid) - cpu0) / opts.lifecycles };
    };
    const bursts: number[] = [];
    for (let i = 0; i < opts.warmupBursts; i++) {
      bursts.push((await cpuPerBurst('sim')).ms);
      progress(
        `control plane: warm-up burst ${i + 1}/${opts.warmupBursts} of ${opts.lifecycles} virtio lifecycles, ${fmtMs(bursts.at(-1)!)} CPU each`,
      );
    }
    progress(`control plane: ${opts.lifecycles} lifecycles in one burst, HTTP guest channel`);
    const cpuPerHttpLifecycleMs = (await cpuPerBurst('simhttp')).ms;
    progress(`control plane: 2 × ${opts.lifecycles} lifecycles in one burst, unix-socket (virtio) channel`);
    const first = await cpuPerBurst('sim');
    const second = await cpuPerBurst('sim');
    const measured = second.vms;
    const cpuPerLifecycleMs = (first.ms + second.ms) / 2;
    const admittedToCreatedMs = await svc.read(async (s) => {
      const out: number[] = [];
      for (const name of measured) {
        const events = await s.listEvents((await s.getVm(name))!.id);
        const at = (e: string) => events.find((x) => x.event === e)!.at;
        out.push(at('created') - at('admitted'));
      }
      return out;
    });
    progress(
      `control plane: ${fmtMs(cpuPerLifecycleMs)} CPU per lifecycle; admitted → created p50 ${fmtMs(percentile(admittedToCreatedMs, 50))}`,
    );

    // Ack throughput: the same client, concurrency and count against both; creates queue in a
    // pool of one VM, so the service does what a burst of requests costs, not VM work.
    const acks = (target: 'svc' | 'bare', pidOf: number) =>
      throughput(http[target]!, pidOf, opts.acks, 50, (c) => {
        const { body, headers } = create('hold', target === 'svc' ? `ack-${run}` : undefined);
        return c.request('POST', '/hooks/control', body, headers);
      });
    progress(`control plane: ${opts.acks} signed creates, service vs bare Express`);
    await acks('bare', bare.child.pid!); // warm-up
    const bareT = await acks('bare', bare.child.pid!);
    const svcT = await acks('svc', pid);
    progress(`control plane: ${svcT.perS.toFixed(0)}/s vs bare ${bareT.perS.toFixed(0)}/s`);

    progress(`control plane: ${opts.rssVms} live VMs for RSS`);
    await names('crowd', opts.rssVms);
    await waitUntil(
      async () =>
        (await svc.read((s) => s.listVms({ states: ['booting'] }))).filter((v) => v.pool === 'crowd')
          .length === opts.rssVms,
      `${opts.rssVms} VMs booting`,
    );
    await sleep(2000); // a reconcile pass or two over them
    const withVmsMiB = rssMiB(pid);
    // V8 keeps a burst's garbage until its memory reducer runs (~20 s of a quieter heap later).
    await sleep(opts.settleS * 1000);
    const settledMiB = rssMiB(pid);

    return {
      lifecycles: opts.lifecycles,
      cpuPerLifecycleMs,
      warmupCpuMs: bursts,
      cpuPerHttpLifecycleMs,
      admittedToCreatedMs,
      ack: {
        creates: opts.acks,
        servicePerS: svcT.perS,
        barePerS: bareT.perS,
        serviceCpuPerReqMs: svcT.cpuPerReqMs,
        bareCpuPerReqMs: bareT.cpuPerReqMs,
      },
      reconcile,
      rss: { idleMiB, liveVms: opts.rssVms, withVmsMiB, settledMiB, settleS: opts.settleS },
      runtime: ((await (await fetch(`${svc.url}/healthz`)).json()) as { code: string }).code,
    };
  } finally {
    http.svc?.close();
    http.bare.close();
    bare.child.kill();
    await svc.stop().catch(() => svc.kill9());
    await emulator.close();
    await files.cleanup();
  }
}

/**
 * One reconcile pass over `vms` running VMs of which the provider lost `lost`, in this process
 * (the sweep is what is measured: process.cpuUsage around it). A pass with nothing lost first.
 */
export async function benchReconcile(vms: number, lost: number): Promise<ControlPlaneResult['reconcile']> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-bench-reconcile-'));
  const file = path.join(dir, 'hatchery.toml');
  writeFileSync(
    file,
    stringify({
      instance_id: 'bench-reconcile',
      server: { port: 0 },
      runner: { url: 'http://127.0.0.1:9/runner.tgz', sha256: '0'.repeat(64) },
      store: { path: path.join(dir, 'hatchery.db') },
      reconcile: { interval_seconds: 3600, ghost_sweep_every: 1_000_000 },
      log: { level: 'silent' },
      providers: { sim: { kind: 'memory' } },
      pools: [{ name: 'sim', labels: ['sim'], max_vms: vms, timeouts: { boot: 3600 } }],
    }),
  );
  const service = await HatcheryService.start({
    config: loadConfig({ file, env: {}, dotenv: false }).config,
    log: silentLogger(),
    http: false,
  });
  try {
    // The pass alone: no worker acts on the seeded rows (admitting or destroying them while they
    // are written) nor on what the pass finds (its destroy steps are not the reconciler's cost).
    await service.worker.stop();
    progress(`reconcile: seeding ${vms} running VMs`);
    const provider = service.providers.named('sim') as MemoryProvider;
    const now = Date.now();
    const rows = Array.from({ length: vms }, (_, i) => ({
      name: `hatchery-sim-${i + 1}-1-bench0`,
      identity: `control:bench/reconcile:${i + 1}:1:sim`,
      pool: 'sim',
      provider: 'sim',
      source: 'control' as const,
      repository: 'bench/reconcile',
      runId: String(i + 1),
      runAttempt: 1,
      label: 'sim',
      runnerLabels: ['sim'],
      credential: null,
      initialDeadline: 3600,
    }));
    for (let i = 0; i < rows.length; i += 1000) await service.store.insertVms(rows.slice(i, i + 1000), now);
    // Straight to `booting` as the worker would leave them (admitted, created), without the worker.
    for (const row of rows) {
      for (const state of ['provisioning', 'booting'] as const) {
        await service.store.transition(
          row.name,
          () => ({
            event: { type: state === 'provisioning' ? 'admitted' : 'created' },
            decision: {
              state,
              destroyRequested: false,
              failure: null,
              attempts: 0,
              destroyAttempts: 0,
              action: null,
              delayMs: 0,
              deadline: 3600,
              note: 'bench',
            },
          }),
          now,
        );
      }
      provider.backend.set(row.name, {
        instanceId: 'bench-reconcile',
        info: { name: row.name, status: 'running', tags: {}, createdAt: new Date(now).toISOString() },
        spec: {
          name: row.name,
          pool: 'sim',
          image: 'tiny',
          cpus: 1,
          memoryMiB: 256,
          bootstrap: '',
          guestConfig: {},
          tags: {},
        },
      });
    }
    const pass = async () => {
      const c = process.cpuUsage();
      const report = await service.reconciler.sweep();
      const d = process.cpuUsage(c);
      return { report, ms: (d.user + d.system) / 1000 };
    };
    // Three passes of each kind, the median reported: a pass is ~0.1 s of CPU in this process,
    // and one collection of its garbage landing in it doubled a single reading.
    // BENCH_PROFILE=<dir>: the first pass of each kind is profiled in this process too.
    const profile = process.env.BENCH_PROFILE ? await profiler() : null;
    const steady: number[] = [];
    for (let round = 0; round < 3; round++) {
      steady.push((await pass()).ms); // nothing lost: the steady state
      if (round === 0)
        await profile?.save(path.resolve(process.env.BENCH_PROFILE!, 'reconcile-steady.cpuprofile'));
    }
    const withLost: number[] = [];
    let found = lost;
    const step = Math.floor(vms / lost / 3);
    for (let round = 0; round < 3; round++) {
      // A different `lost` VMs each time: those found before have ended.
      const gone = rows
        .filter((_, i) => i % (3 * step) === round * step)
        .slice(0, lost)
        .map((r) => r.name);
      for (const name of gone) provider.backend.delete(name);
      if (round === 0) await profile?.start();
      const { report, ms } = await pass();
      if (round === 0)
        await profile?.save(path.resolve(process.env.BENCH_PROFILE!, 'reconcile-lost.cpuprofile'));
      withLost.push(ms);
      found = Math.min(found, report.vanished.filter((n) => gone.includes(n)).length);
    }
    const cpuMs = [percentile(steady, 50), percentile(withLost, 50)];
    progress(
      `reconcile: ${fmtMs(cpuMs[0]!)} CPU for a pass over ${vms} VMs, ${fmtMs(cpuMs[1]!)} with ${lost} lost (${found} found; medians of ${steady.map(fmtMs).join(', ')} and ${withLost.map(fmtMs).join(', ')})`,
    );
    return { vms, lost, found, cpuMs };
  } finally {
    (service.providers.named('sim') as MemoryProvider).backend.clear();
    await service.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A CPU profiler of this process (node:inspector), started at once. */
async function profiler(): Promise<{ start(): Promise<void>; save(file: string): Promise<void> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return {
    start: async () => {
      await session.post('Profiler.start');
    },
    save: async (file) => {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(file, JSON.stringify(profile));
    },
  };
}

export function reportControlPlane(r: ControlPlaneResult): string {
  const pass = (ok: boolean) => (ok ? 'met' : 'NOT met');
  const ackRatio = r.ack.servicePerS / r.ack.barePerS;
  return [
    `Control plane (in-memory provider, emulated guests, hatchery serve from ${r.runtime}):`,
    `  CPU per lifecycle: ${fmtMs(r.cpuPerLifecycleMs)} over virtio-style sockets (2 bursts of ${r.lifecycles} after ${r.warmupCpuMs.length} of warm-up; goal ≤ 10 ms: ${pass(r.cpuPerLifecycleMs <= 10)}), ${fmtMs(r.cpuPerHttpLifecycleMs)} over the HTTP channel`,
    `  warm-up bursts (cold service first): ${r.warmupCpuMs.map(fmtMs).join(', ')} CPU per lifecycle`,
    `  admitted → created in a burst of ${r.lifecycles}: p50 ${fmtMs(percentile(r.admittedToCreatedMs, 50))}, p99 ${fmtMs(percentile(r.admittedToCreatedMs, 99))}`,
    `  signed-create ack throughput: ${r.ack.servicePerS.toFixed(0)}/s vs bare Express ${r.ack.barePerS.toFixed(0)}/s = ${fmtRatio(ackRatio)} (goal ≥ 0.5×: ${pass(ackRatio >= 0.5)});` +
      ` CPU per request ${fmtMs(r.ack.serviceCpuPerReqMs)} vs ${fmtMs(r.ack.bareCpuPerReqMs)} (${fmtRatio(r.ack.serviceCpuPerReqMs / r.ack.bareCpuPerReqMs)})`,
    `  reconcile of ${r.reconcile.vms} VMs: ${fmtMs(r.reconcile.cpuMs[1]!)} CPU with ${r.reconcile.lost} lost, ${r.reconcile.found} found; ${fmtMs(r.reconcile.cpuMs[0]!)} with none` +
      ` (goal < 200 ms, every one found: ${pass(r.reconcile.cpuMs[1]! < 200 && r.reconcile.found === r.reconcile.lost)})`,
    // Judged once V8 has collected the burst's garbage (its memory reducer: ~20 s of a quiet
    // heap); the reading right after the burst is printed as what it is (ADR control-plane-cost).
    `  RSS: ${r.rss.idleMiB.toFixed(0)} MiB idle; with ${r.rss.liveVms} live VMs ${r.rss.settledMiB.toFixed(0)} MiB, ${r.rss.settleS} s after the burst that created them (goal ≤ 120 MB: ${pass(r.rss.settledMiB * 1.048576 <= 120)});` +
      ` ${r.rss.withVmsMiB.toFixed(0)} MiB 2 s after it, its garbage not yet collected`,
  ].join('\n');
}

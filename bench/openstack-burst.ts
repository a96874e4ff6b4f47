// OpenStack, 100 concurrent creates on one replica: what Hatchery's own process spends per VM
// against what the OpenStack services spend on the same VMs, over the same interval.
//
// Real: `hatchery serve` (its own process, the config's defaults for workers, polling and
// reconcile, logging at info), the `openstack` provider, Keystone, Nova (API, conductor,
// scheduler, compute with the fake driver), Placement, Glance, Neutron, MariaDB and RabbitMQ
// from scripts/openstack.sh. Emulated: each server's guest (test/helpers/openstack-emulated-
// hypervisor.ts hands the guest config of its user_data to an emulated guest, which reports over
// the service's HTTP guest channel and plays the runner against the GitHub stand-in), because
// 100 TCG guests do not fit on 2 cores; and GitHub (the stand-in). Guests, stand-in and this
// driver run in the bench's process: their CPU is neither side's.
//
// One burst: N signed create webhooks posted at once → every runner online (idle) → N destroy
// webhooks at once → every VM destroyed and Nova's database empty. CPU from /proc: the service's
// pid; each OpenStack service's process group (its live processes and their reaped children).
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { READY_STATES } from '../src/model/states.ts';
import { GuestEmulator } from '../test/fakes/guest/emulator.ts';
import type { TestCloud } from '../test/helpers/openstack.ts';
import { EmulatedHypervisor } from '../test/helpers/openstack-emulated-hypervisor.ts';
import { cloudSection } from '../test/helpers/openstack-stack.ts';
import { ServiceProcess, StackFiles } from '../test/helpers/stack.ts';
import { cpuMs, statFields, TICKS } from './throughput.ts';
import { until, withCloud } from './openstack.ts';
import { fmtMs, progress } from './stats.ts';

const REPO = 'bench/openstack-burst';
/** How long the background is measured: Nova's and Neutron's periodic tasks, RPC heartbeats. */
const IDLE_MS = 30_000;
/** The services whose CPU is OpenStack's; MariaDB and RabbitMQ (and epmd) are reported apart. */
export const OPENSTACK_SERVICES = [
  'keystone',
  'glance',
  'placement',
  'neutron',
  'nova-api',
  'nova-conductor',
  'nova-scheduler',
  'nova-compute',
];

export interface BurstPhase {
  wallMs: number;
  hatcheryCpuMs: number;
  /** Service → CPU ms (scripts/openstack.sh's process groups). */
  cloudCpuMs: Record<string, number>;
}

export interface BurstResult {
  vms: number;
  workers: number;
  upSeconds: number;
  /** Everything idle (the service up, no VM) for a while before the burst: the background rates. */
  idle: BurstPhase;
  /** The last 202 of the N create webhooks, after posting them all at once. */
  acceptedMs: number;
  create: BurstPhase;
  destroy: BurstPhase;
}

/** CPU (ms) of a process group: its live processes', and what their reaped children used. */
function groupCpuMs(pgid: number): number {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let f: string[];
    try {
      f = statFields(Number(entry));
    } catch {
      continue; // gone meanwhile
    }
    // Fields 5 (pgrp), 14–17 (utime, stime, cutime, cstime).
    if (Number(f[2]) === pgid) ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return (ticks * 1000) / TICKS;
}

function cloudCpu(cloud: TestCloud): Record<string, number> {
  return Object.fromEntries([...cloud.groups()].map(([svc, pgid]) => [svc, groupCpuMs(pgid)]));
}

/** Measures `f`: wall time, the service's CPU and each cloud service's, over the same interval. */
async function phase(cloud: TestCloud, pid: number, f: () => Promise<void>): Promise<BurstPhase> {
  const c0 = cloudCpu(cloud);
  const h0 = cpuMs(pid);
  const t0 = performance.now();
  await f();
  const wallMs = performance.now() - t0;
  const hatcheryCpuMs = cpuMs(pid) - h0;
  const c1 = cloudCpu(cloud);
  return {
    wallMs,
    hatcheryCpuMs,
    cloudCpuMs: Object.fromEntries(Object.entries(c1).map(([s, ms]) => [s, ms - (c0[s] ?? 0)])),
  };
}

export function benchOpenStackBurst(vms: number, workers: number): Promise<BurstResult> {
  return withCloud('openstack-burst', (cloud) => burstOn(cloud, vms, workers));
}

async function burstOn(cloud: TestCloud, vms: number, workers: number): Promise<BurstResult> {
  const emulator = new GuestEmulator({ retryMs: 1000 }); // linux.sh's first pause on a refused post
  const files = await StackFiles.create({
    // The provider's defaults (poll_interval 1 s), not the tests' fast polling.
    providers: { openstack: { ...cloudSection(cloud), poll_interval: 1 } },
    pools: [
      {
        name: 'burst',
        labels: ['burst'],
        provider: 'openstack',
        image: cloud.file.image,
        max_vms: vms,
        // The HTTP channel at the service's own address: the emulated guests run on this host.
        providerKeys: () => ({ flavor: cloud.file.flavor, network: cloud.file.network, channel: 'http' }),
        timeouts: { provision: 3600, boot: 600, idle: 3600 },
      },
    ],
    maxVms: vms,
    emulatedGuests: true,
    logLevel: 'info',
    workers: { concurrency: workers, poll_ms: 250, lease_seconds: 600 },
    extra: { reconcile: { interval_seconds: 15 } },
  });
  const svc = new ServiceProcess(files);
  let hypervisor: EmulatedHypervisor | undefined;
  let run = 0;
  const body = (action: string, runId: number) => ({
    action,
    repository: REPO,
    run_id: runId,
    run_attempt: 1,
    labels: ['burst'],
  });
  const states = async (names: string[]) => (await svc.read((s) => s.getVms(names))).map((v) => v.state);
  const failed = async (names: string[]) =>
    (await svc.read((s) => s.getVms(names)))
      .filter((v) => v.state === 'failed')
      .map((v) => `${v.name}: ${v.failure ?? ''}`);
  /** N creates at once; resolves when every runner is online. */
  const creates = async (n: number): Promise<{ names: string[]; runIds: number[]; acceptedMs: number }> => {
    const t0 = performance.now();
    const runIds = Array.from({ length: n }, () => ++run);
    const replies = await Promise.all(runIds.map((id) => svc.client.control(body('create', id))));
    const acceptedMs = performance.now() - t0;
    const bad = replies.filter((r) => r.status !== 202);
    if (bad.length) throw new Error(`create: ${bad.length} not 202, e.g. ${JSON.stringify(bad[0]!.json)}`);
    const names = replies.map((r) => r.json.vms[0]!.name);
    await until(
      `${n} runners online`,
      async () => {
        const f = await failed(names);
        if (f.length) throw new Error(`failed: ${f.join('; ')}`);
        return (await states(names)).every((s) => (READY_STATES as readonly string[]).includes(s));
      },
      3_600_000,
    );
    return { names, runIds, acceptedMs };
  };
  /** N destroys at once; resolves when every VM is destroyed and Nova holds no server. */
  const destroys = async (names: string[], runIds: number[]): Promise<void> => {
    const replies = await Promise.all(runIds.map((id) => svc.client.control(body('destroy', id))));
    const bad = replies.filter((r) => r.status !== 202 && r.status !== 200);
    if (bad.length) throw new Error(`destroy: ${bad.length} refused, e.g. ${bad[0]!.status}`);
    await until(
      `${names.length} VMs destroyed`,
      async () => (await states(names)).every((s) => s === 'destroyed' || s === 'failed'),
      3_600_000,
    );
    const f = await failed(names);
    if (f.length) throw new Error(`failed: ${f.join('; ')}`);
    await until('Nova empty', async () => (await hypervisor!.serversLeft()) === 0, 600_000);
  };
  try {
    await svc.start();
    hypervisor = new EmulatedHypervisor(cloud.dir, emulator);
    progress('openstack-burst: warm-up (one VM)');
    const warm = await creates(1);
    await destroys(warm.names, warm.runIds);

    progress(`openstack-burst: ${IDLE_MS / 1000} s idle (the background CPU rates)`);
    const idle = await phase(cloud, svc.pid, () => sleep(IDLE_MS));
    progress(`openstack-burst: ${vms} creates at once (${workers} workers)`);
    let created = { names: [] as string[], runIds: [] as number[], acceptedMs: 0 };
    const create = await phase(cloud, svc.pid, async () => {
      created = await creates(vms);
    });
    progress(`openstack-burst: ${vms} online after ${fmtMs(create.wallMs)}; destroying them at once`);
    const destroy = await phase(cloud, svc.pid, () => destroys(created.names, created.runIds));
    if (hypervisor.errors.length) throw new Error(`hypervisor: ${hypervisor.errors.slice(0, 3).join('; ')}`);
    return {
      vms,
      workers,
      upSeconds: cloud.upSeconds,
      idle,
      acceptedMs: created.acceptedMs,
      create,
      destroy,
    };
  } finally {
    await svc.stop().catch(() => undefined);
    await hypervisor?.stop();
    await emulator.close();
    // A failed run's servers (a shared cloud stays up): deleted by the admin.
    for (const s of await cloud.allServers().catch(() => []))
      if (s.metadata['hatchery.instance'] === files.instanceId)
        await cloud.admin.delete(s.id).catch(() => undefined);
    await files.cleanup();
  }
}

/** Hatchery's CPU as a share of OpenStack's: small, so in percent with one decimal. */
const share = (hatchery: number, openstack: number) => `${((100 * hatchery) / openstack).toFixed(1)} %`;

const sum = (o: Record<string, number>, keys: string[]) => keys.reduce((a, k) => a + (o[k] ?? 0), 0);

export function reportOpenStackBurst(r: BurstResult): string {
  const n = r.vms;
  const osOf = (p: BurstPhase) => sum(p.cloudCpuMs, OPENSTACK_SERVICES);
  // What each side spends idle, per ms of wall time: taken off to leave the burst's own work.
  const idleOs = osOf(r.idle) / r.idle.wallMs;
  const idleH = r.idle.hatcheryCpuMs / r.idle.wallMs;
  const line = (what: string, p: BurstPhase) => {
    const os = osOf(p);
    const osNet = os - idleOs * p.wallMs;
    const hNet = p.hatcheryCpuMs - idleH * p.wallMs;
    const backing = sum(p.cloudCpuMs, ['mariadb', 'rabbitmq', 'epmd']);
    return [
      `  ${what}: wall ${fmtMs(p.wallMs)}`,
      `    Hatchery ${fmtMs(p.hatcheryCpuMs / n)}/VM, OpenStack ${fmtMs(os / n)}/VM: Hatchery/OpenStack ${share(p.hatcheryCpuMs, os)}` +
        ` (MariaDB + RabbitMQ ${fmtMs(backing / n)}/VM)`,
      `    idle rates taken off: Hatchery ${fmtMs(hNet / n)}/VM, OpenStack ${fmtMs(osNet / n)}/VM: Hatchery/OpenStack ${share(hNet, osNet)}`,
    ].join('\n');
  };
  const total: BurstPhase = {
    wallMs: r.create.wallMs + r.destroy.wallMs,
    hatcheryCpuMs: r.create.hatcheryCpuMs + r.destroy.hatcheryCpuMs,
    cloudCpuMs: Object.fromEntries(
      Object.keys(r.create.cloudCpuMs).map((s) => [
        s,
        r.create.cloudCpuMs[s]! + (r.destroy.cloudCpuMs[s] ?? 0),
      ]),
    ),
  };
  const perService = OPENSTACK_SERVICES.map((s) => `${s} ${fmtMs((total.cloudCpuMs[s] ?? 0) / n)}`).join(
    ', ',
  );
  return [
    `OpenStack burst: ${n} create webhooks at once on one replica (${r.workers} workers), CPU per VM ` +
      `(${r.upSeconds ? `the cloud came up in ${r.upSeconds.toFixed(0)} s` : 'a cloud already up'})`,
    '  real: hatchery serve, Keystone, Nova (fake driver), Placement, Glance, Neutron, MariaDB, RabbitMQ;',
    "  emulated: each server's guest (its user_data's guest config, HTTP channel) and GitHub",
    `  idle for ${fmtMs(r.idle.wallMs)}: Hatchery ${(idleH * 1000).toFixed(1)} ms/s, OpenStack ${(idleOs * 1000).toFixed(0)} ms/s`,
    `  all ${n} creates accepted (202) in ${fmtMs(r.acceptedMs)}`,
    line('create → all runners online', r.create),
    line('destroy → all gone', r.destroy),
    line('whole burst', total),
    `  OpenStack CPU per VM by service (whole burst): ${perService}`,
  ].join('\n');
}

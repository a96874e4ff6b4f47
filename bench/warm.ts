// Warm pools: a queued job → its runner online, when the pool has a warm VM ready, against the
// round trip of that same VM's guest channel measured just before (host `sync` → the guest's
// first replayed event, through the guest's reader, event queue and writer: the floor of any
// exchange with the guest). Real QEMU VMs (the tiny guest, virtio-serial channel), the GitHub
// stand-in posting signed workflow_job webhooks as GitHub does. Also where the time goes: webhook →
// VM taken, taken → JIT config sent (minted against the stand-in), sent → runner registered.
import { randomBytes } from 'node:crypto';
import type { VmRecord } from '../src/store/store.ts';
import { eventually, Stack } from '../test/helpers/stack.ts';
import { fmtMs, fmtRatio, median, progress } from './stats.ts';

export interface WarmResult {
  rounds: number;
  /** Per round: the median of a few guest channel round trips on the warm VM (ms). */
  roundTripMs: number[];
  /** Per round: job queued (webhook sent) → runner_registered recorded (ms). */
  onlineMs: number[];
  steps: Record<string, number[]>;
}

export async function benchWarm(rounds: number): Promise<WarmResult> {
  const secret = randomBytes(20).toString('hex');
  const stack = await Stack.start({
    tokens: [],
    githubToken: false,
    app: { installations: ['bench'], webhookSecret: secret },
    pools: [{ name: 'linux', labels: ['linux'], max_vms: 2, min_idle: 1 }],
    logLevel: 'info',
    workers: { poll_ms: 250 },
  });
  const sender = stack.fake.sendWebhooks({ url: `${stack.service.url}/hooks/github`, secret });
  const result: WarmResult = { rounds, roundTripMs: [], onlineMs: [], steps: {} };
  const step = (k: string, v: number) => (result.steps[k] ??= []).push(v);
  const warmVm = (): Promise<VmRecord> =>
    eventually(
      async () => {
        const [vm] = (await stack.service.store.warmVms()).filter((v) => v.state === 'warm');
        return vm && stack.service.links.has(vm.name) ? vm : undefined;
      },
      'a warm VM',
      300_000,
    );
  try {
    for (let r = 0; r <= rounds; r++) {
      const warm = await warmVm();
      const trips: number[] = [];
      for (let i = 0; i < 5; i++) trips.push(await stack.service.links.roundTrip(warm.name));
      const queuedAt = Date.now();
      const job = stack.fake.queueJob({ repository: 'bench/warm', labels: ['self-hosted', 'linux'] });
      const at = async (event: string): Promise<number> =>
        eventually(
          async () => (await stack.service.store.listEvents(warm.id)).find((e) => e.event === event)?.at,
          `${warm.name}: ${event}`,
          120_000,
        );
      const registered = await at('runner_registered');
      const [taken, sent] = [await at('taken'), await at('jit_delivered')];
      await stack.fake.waitForJob(job.id, { timeoutMs: 120_000 });
      await stack.waitState(warm.name, ['destroyed'], 120_000);
      if (r === 0) continue; // the first round warms the page cache and the service
      result.roundTripMs.push(median(trips));
      result.onlineMs.push(registered - queuedAt);
      step('job queued → warm VM taken (webhook, intake)', taken - queuedAt);
      step('taken → JIT config sent (worker, mint, channel write)', sent - taken);
      step('sent → runner registered (guest starts the runner)', registered - sent);
      progress(
        `warm: round ${r}/${rounds}: channel round trip ${fmtMs(median(trips))}, queued → online ${fmtMs(registered - queuedAt)}`,
      );
    }
    await sender.idle();
    // The last warm VM goes with the service's config: min_idle 0, then nothing may be left.
    stack.files.editConfig((config) => {
      for (const p of config.pools as Record<string, unknown>[]) p.min_idle = 0;
    });
    await stack.restart();
    await stack.files.nothingLeft(120_000);
    return result;
  } finally {
    await stack.stop();
  }
}

export function reportWarm(r: WarmResult): string {
  const rt = median(r.roundTripMs);
  const online = median(r.onlineMs);
  const pairs = r.onlineMs.map((v, i) => v / r.roundTripMs[i]!);
  // Hatchery's own share: until the config is in the guest's hands; the rest is the runner starting.
  const taken = r.steps['job queued → warm VM taken (webhook, intake)'] ?? [];
  const sent = r.steps['taken → JIT config sent (worker, mint, channel write)'] ?? [];
  const ownMs = taken.map((v, i) => v + sent[i]!);
  return [
    `warm pool: a queued job → its runner online, on a warm VM (${r.rounds} rounds, medians; real QEMU, tiny guest, virtio-serial)`,
    `  guest channel round trip (sync → replay)   ${fmtMs(rt)}   (all: ${r.roundTripMs.map(fmtMs).join(', ')})`,
    `  job queued → runner online                 ${fmtMs(online)}   (all: ${r.onlineMs.map(fmtMs).join(', ')})`,
    `  ratio online / round trip                  ${fmtRatio(online / rt)}   (median of per-round ratios ${fmtRatio(median(pairs))})`,
    `  Hatchery's share (queued → JIT config sent) ${fmtMs(median(ownMs))} = ${fmtRatio(median(ownMs) / rt)} the round trip; the rest is the runner starting in the guest`,
    `  where the time goes (medians):`,
    ...Object.entries(r.steps).map(([k, v]) => `    ${k.padEnd(56)} ${fmtMs(median(v))}`),
  ].join('\n');
}

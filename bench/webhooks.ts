// GitHub App autoscaling under load, against `hatchery serve` (its own process, logging at info
// as deployed) on the in-memory provider:
//  - ingest: signed `workflow_job` deliveries (GitHub's example payload, a new job each, unique
//    X-GitHub-Delivery) posted to POST /hooks/github, against a bare Express app in the same run
//    (throughput.ts): requests/s and CPU ms per request of each. Each delivery queues a job the
//    pool serves; the pool has room for one VM, so the service does what ingest costs, not VM work.
//  - JIT burst: the stand-in GitHub enforces a secondary rate limit on JIT generation (~170/min
//    per App, as peers report); N jobs are queued at once, the stand-in posts their webhooks, and
//    emulated guests run them. Every job must be served; figures: the JIT rate achieved against
//    the limit, the time to serve them all against the ideal N/limit, and the refusals Hatchery got.
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { sign } from '../src/crypto/hmac.ts';
import { isTerminal, STATES } from '../src/core/lifecycle.ts';
import { workflowJobPayload } from '../test/fakes/github/webhooks.ts';
import type { FakeJob, SecondaryRateLimitOptions } from '../test/fakes/github/server.ts';
import { GuestEmulator } from '../test/fakes/guest/emulator.ts';
import { client } from './ack.ts';
import { fmtMs, fmtRatio, progress } from './stats.ts';
import { measuredService, startBare, throughput, type Throughput } from './throughput.ts';
import { ServiceProcess, StackFiles } from '../test/helpers/stack.ts';

const CONCURRENCY = 50;

/** A signed `workflow_job.queued` delivery for a new job, as GitHub posts it. */
function queuedDelivery(secret: string, repository: string, jobId: number, installation: number) {
  const now = new Date().toISOString();
  const job: FakeJob = {
    id: jobId,
    name: `bench ${jobId}`,
    repository,
    labels: ['self-hosted', 'hold'],
    script: '',
    status: 'queued',
    conclusion: null,
    runnerId: null,
    runnerName: null,
    output: '',
    exitCode: null,
    createdAt: now,
    startedAt: null,
    completedAt: null,
    event: 'push',
    headRepository: repository,
  };
  const body = JSON.stringify(workflowJobPayload('queued', job, null, installation));
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'user-agent': 'GitHub-Hookshot/bench',
      'x-github-event': 'workflow_job',
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': sign('sha256', secret, body),
    },
  };
}

export interface IngestResult {
  deliveries: number;
  service: Throughput;
  bare: Throughput;
  /** Jobs the service recorded from the measured deliveries. */
  recorded: number;
}

export async function benchWebhookIngest(deliveries: number): Promise<IngestResult> {
  const secret = randomBytes(20).toString('hex');
  const files = await StackFiles.create({
    app: {
      installations: ['bench'],
      webhookSecret: secret,
      settings: { poll_seconds: 0, redeliver_seconds: 0 },
    },
    githubToken: false,
    providers: { hold: { kind: 'memory' } }, // no guest: the one VM stays booting
    pools: [
      {
        name: 'hold',
        labels: ['hold'],
        provider: 'hold',
        providerKeys: () => ({}),
        max_vms: 1,
        timeouts: { boot: 3600, queue: 3600 },
      },
    ],
    maxVms: 1,
    emulatedGuests: true,
    logLevel: 'info',
    workers: { poll_ms: 250 },
  });
  const svc = measuredService(files);
  const bare = await startBare();
  const http = { svc: null as ReturnType<typeof client> | null, bare: client(bare.url, CONCURRENCY) };
  try {
    await svc.start();
    http.svc = client(svc.url, CONCURRENCY);
    const installation = files.fake.githubApp!.installationFor({
      kind: 'repo',
      owner: 'bench',
      repo: 'hooks',
    })!.id;
    let nextJob = 1;
    // Bodies built and signed beforehand: the client's work stays out of the measured window.
    const batch = (n: number) =>
      Array.from({ length: n }, () => queuedDelivery(secret, 'bench/hooks', nextJob++, installation));
    const post = (target: 'svc' | 'bare', pid: number, list: ReturnType<typeof batch>) =>
      throughput(http[target]!, pid, list.length, CONCURRENCY, (c, i) =>
        c.request('POST', '/hooks/github', list[i]!.body, list[i]!.headers),
      );
    const warm = Math.max(CONCURRENCY, Math.round(deliveries / 10));
    progress(`webhooks: warm-up (${warm} deliveries each)`);
    await post('bare', bare.child.pid!, batch(warm));
    await post('svc', svc.pid, batch(warm));
    progress(`webhooks: ${deliveries} signed workflow_job deliveries, bare Express then the service`);
    const bareT = await post('bare', bare.child.pid!, batch(deliveries));
    const first = nextJob;
    const svcT = await post('svc', svc.pid, batch(deliveries));
    const recorded = await svc.read(
      async (s) => (await s.listJobs({ limit: 100_000 })).filter((j) => j.jobId >= first).length,
    );
    progress(
      `webhooks: ${svcT.perS.toFixed(0)}/s vs bare ${bareT.perS.toFixed(0)}/s; ` +
        `CPU ${fmtMs(svcT.cpuPerReqMs)} vs ${fmtMs(bareT.cpuPerReqMs)} per request`,
    );
    return { deliveries, service: svcT, bare: bareT, recorded };
  } finally {
    http.svc?.close();
    http.bare.close();
    bare.child.kill();
    await svc.stop().catch(() => svc.kill9());
    await files.cleanup();
  }
}

export function reportWebhookIngest(r: IngestResult): string {
  const ratio = r.service.perS / r.bare.perS;
  const statuses = (t: Throughput) =>
    Object.entries(t.statuses)
      .map(([s, n]) => `${s} × ${n}`)
      .join(', ');
  return [
    `GitHub webhook ingest: ${r.deliveries} signed workflow_job (queued) deliveries, ${CONCURRENCY} at a time, hatchery serve vs bare Express:`,
    `  throughput ${r.service.perS.toFixed(0)}/s vs ${r.bare.perS.toFixed(0)}/s = ${fmtRatio(ratio)} (goal ≥ 0.5×: ${ratio >= 0.5 ? 'met' : 'NOT met'})`,
    `  CPU per request ${fmtMs(r.service.cpuPerReqMs)} vs ${fmtMs(r.bare.cpuPerReqMs)} (${fmtRatio(r.service.cpuPerReqMs / r.bare.cpuPerReqMs)})`,
    `  statuses: service ${statuses(r.service)}; bare ${statuses(r.bare)}; jobs recorded ${r.recorded}/${r.deliveries}`,
  ].join('\n');
}

/** One burst: `jobs` queued at once, served by `hatchery serve` through its webhooks. */
interface BurstRun {
  served: number;
  /** First queued → last job started on its runner (all served), ms. */
  totalMs: number;
  /** First queued → last JIT config granted, ms. */
  mintingMs: number;
  granted: number;
  refused: number;
  /** Rate-limit waits the service logged. */
  waitsLogged: number;
  failedVms: number;
  /** Create attempts spent (a rate limit must spend none), with why. */
  createFailures: string[];
  leftovers: number;
}

export interface JitBurstResult {
  jobs: number;
  perMinute: number;
  burst: number;
  status: 403 | 429;
  /** The same burst with no limit: what this machine serves on its own. */
  baseline: BurstRun;
  limited: BurstRun;
}

export async function benchJitBurst(opts: {
  jobs: number;
  perMinute: number;
  burst: number;
  status: 403 | 429;
}): Promise<JitBurstResult> {
  progress(`jit burst: baseline, ${opts.jobs} jobs with no rate limit`);
  const baseline = await burstRun(opts.jobs, undefined);
  progress(
    `jit burst: ${opts.jobs} jobs, the stand-in granting ${opts.perMinute} JIT configs/min (ideal ${fmtMs((opts.jobs / opts.perMinute) * 60_000)})`,
  );
  const limited = await burstRun(opts.jobs, {
    perMinute: opts.perMinute,
    burst: opts.burst,
    status: opts.status,
  });
  return { ...opts, baseline, limited };
}

async function burstRun(jobs: number, limit: SecondaryRateLimitOptions | undefined): Promise<BurstRun> {
  const secret = randomBytes(20).toString('hex');
  const emulator = new GuestEmulator();
  const files = await StackFiles.create({
    app: {
      installations: ['bench'],
      webhookSecret: secret,
      settings: { poll_seconds: 0, redeliver_seconds: 0 },
    },
    githubToken: false,
    providers: { sim: { kind: 'memory', guest_emulator: await emulator.start() } },
    pools: [{ name: 'sim', labels: ['sim'], provider: 'sim', providerKeys: () => ({}), max_vms: jobs }],
    maxVms: jobs,
    emulatedGuests: true,
    logLevel: 'info',
    workers: { poll_ms: 250 },
    fixedPort: true,
    // Unlimited: a bucket no burst empties.
    jitRateLimit: limit ?? { perMinute: 1e9, burst: 1e9 },
  });
  const svc = new ServiceProcess(files);
  const fake = files.fake;
  try {
    await svc.start();
    fake.sendWebhooks({ url: `${svc.url}/hooks/github`, secret });
    const t0 = Date.now();
    const queued = Array.from({ length: jobs }, (_, i) =>
      fake.queueJob({
        repository: 'bench/burst',
        labels: ['self-hosted', 'sim'],
        name: `burst ${i + 1}`,
        script: 'true',
      }),
    );
    const ticker = setInterval(() => {
      const started = queued.filter((j) => fake.job(j.id)!.startedAt !== null).length;
      progress(
        `jit burst: ${Math.round((Date.now() - t0) / 1000)} s: ${fake.jitRateLimit!.granted.length} granted, ${fake.jitRateLimit!.refused} refused, ${started} jobs started`,
      );
    }, 10_000);
    let done: FakeJob[];
    try {
      done = await Promise.all(queued.map((j) => fake.waitForJob(j.id, { timeoutMs: 600_000 })));
    } finally {
      clearInterval(ticker);
    }
    const lastStart = Math.max(...done.map((j) => Date.parse(j.startedAt!)));
    const granted = fake.jitRateLimit!.granted;
    // Every VM ends (destroyed after its job) and every registration goes: waited for, then counted.
    const until = Date.now() + 120_000;
    for (;;) {
      const live = await svc.read((s) => s.listVms({ states: STATES.filter((st) => !isTerminal(st)) }));
      if ((live.length === 0 && fake.runners().length === 0) || Date.now() > until) break;
      await sleep(500);
    }
    const { vms, liveRegs, createFailures } = await svc.read(async (s) => {
      const all = await s.listVms({ limit: 100_000 });
      const failures: string[] = [];
      for (const v of all.filter((x) => x.attempts > 0)) {
        for (const e of await s.listEvents(v.id))
          if (e.event === 'create_failed') failures.push(`${v.name}: ${e.note}`);
      }
      return { vms: all, liveRegs: await s.listRegistrations({ live: true }), createFailures: failures };
    });
    const waitsLogged = readFileSync(files.logFile, 'utf8')
      .split('\n')
      .filter((l) => l.includes('GitHub rate limit')).length;
    const run: BurstRun = {
      served: done.filter((j) => j.conclusion === 'success').length,
      totalMs: lastStart - t0,
      mintingMs: Math.max(...granted) - t0,
      granted: granted.length,
      refused: fake.jitRateLimit!.refused,
      waitsLogged,
      failedVms: vms.filter((v) => v.state === 'failed').length,
      createFailures,
      leftovers:
        vms.filter((v) => !isTerminal(v.state)).length +
        liveRegs.length +
        fake.runners().length +
        emulator.live().length,
    };
    progress(`jit burst: ${run.served}/${jobs} served in ${fmtMs(run.totalMs)}, ${run.refused} refusals`);
    return run;
  } finally {
    await svc.stop().catch(() => svc.kill9());
    await emulator.close();
    await files.cleanup();
  }
}

export function reportJitBurst(r: JitBurstResult): string {
  const idealMs = (r.jobs / r.perMinute) * 60_000;
  const perMin = (b: BurstRun) => b.granted / (b.mintingMs / 60_000);
  const l = r.limited;
  const b = r.baseline;
  // What the limit allows on this machine: the limit, or the machine's own rate if it is slower.
  const floorMs = Math.max(idealMs, b.totalMs);
  const line = (name: string, x: BurstRun) =>
    `  ${name}: served ${x.served}/${r.jobs} (runner online, job run) in ${fmtMs(x.totalMs)}; JIT ${perMin(x).toFixed(0)}/min; ` +
    `refusals ${x.refused}; failed VMs ${x.failedVms}; create attempts spent ${x.createFailures.length}; left behind ${x.leftovers}`;
  return [
    `JIT burst: ${r.jobs} queued jobs through POST /hooks/github (memory provider, emulated guests), the stand-in granting ${r.perMinute} JIT configs/min (bucket of ${r.burst}, refusals ${r.status} with retry-after):`,
    line('no limit (baseline)', b),
    line(`limit ${r.perMinute}/min`, l),
    `  JIT rate achieved ${perMin(l).toFixed(0)}/min vs limit ${r.perMinute}/min = ${fmtRatio(perMin(l) / r.perMinute)}`,
    `  all served in ${fmtMs(l.totalMs)} vs ideal ${fmtMs(idealMs)} (${r.jobs}/${r.perMinute} min) = ${fmtRatio(l.totalMs / idealMs)}; ` +
      `vs max(ideal, no-limit baseline ${fmtMs(b.totalMs)}) = ${fmtRatio(l.totalMs / floorMs)}`,
    `  refusals Hatchery received: ${l.refused} × ${r.status}, ${(l.refused / l.granted).toFixed(2)} per JIT config granted; waits the service logged ${l.waitsLogged}`,
    ...[...b.createFailures, ...l.createFailures].map((f) => `  create failed: ${f}`),
  ].join('\n');
}

// GitHub App autoscaling end to end on real QEMU VMs: jobs are queued in the stand-in GitHub,
// which posts signed workflow_job webhooks to the service as GitHub does; each queued job gets
// a VM with a JIT runner carrying its labels, runs on its own VM, and every VM is gone after.
// No PAT anywhere: runners are minted with the App's installation tokens.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { qemuVmsUnder } from '../helpers/processes.ts';
import { Stack } from '../helpers/stack.ts';

const REPOS = ['octo-org/app', 'octo-org/lib'];
const JOBS = 20;
const MAX_VMS = 4;

describe(`autoscaling: ${JOBS} queued jobs across 2 repositories, room for ${MAX_VMS} VMs (real VMs)`, () => {
  let stack: Stack;
  const secret = randomBytes(20).toString('hex');
  before(async () => {
    stack = await Stack.start({
      tokens: [],
      githubToken: false,
      app: { installations: ['octo-org'], webhookSecret: secret },
      pools: [{ name: 'linux', labels: ['linux', 'x64'], max_vms: MAX_VMS }],
      // Fair share between the two repositories (limits.tenants): capacity that frees goes to the
      // repository using the fewest VMs, not to the oldest job.
      extra: { limits: { max_vms: MAX_VMS, tenants: { by: 'repository' } } },
    });
  });
  after(async () => {
    await stack?.stop();
  });

  it('serves every job on its own VM, never more than the limit at once, both repositories in turn, and leaves nothing', async (t) => {
    // Never more than MAX_VMS VMs running at once, sampled from the host's QEMU processes.
    let most = 0;
    const sampler = setInterval(() => {
      most = Math.max(most, qemuVmsUnder(stack.files.stateDir).length);
    }, 100);
    t.after(() => clearInterval(sampler));
    const sender = stack.fake.sendWebhooks({ url: `${stack.service.url}/hooks/github`, secret });
    // All of the first repository's jobs before any of the second's: oldest first would serve
    // the first repository whole before the second starts; fair share must not.
    const jobs = Array.from({ length: JOBS }, (_, i) => {
      const first = i < JOBS / 2;
      return stack.fake.queueJob({
        repository: REPOS[first ? 0 : 1]!,
        labels: first ? ['self-hosted', 'linux', 'X64'] : ['self-hosted', 'Linux'],
        name: `build-${i}`,
        script: 'echo "ran on $(hostname)"',
      });
    });
    const done = await Promise.all(jobs.map((j) => stack.fake.waitForJob(j.id, { timeoutMs: 600_000 })));
    clearInterval(sampler);
    for (const j of done) {
      assert.equal(j.conclusion, 'success', j.output);
      assert.match(j.output, new RegExp(`ran on ${j.runnerName}`));
    }
    assert.equal(new Set(done.map((j) => j.runnerName)).size, JOBS, 'each job ran on its own VM');
    await sender.idle();
    // Every webhook was accepted; none was refused or left unanswered.
    const statuses = sender.deliveries.map((d) => d.statusCode);
    assert.equal(statuses.length, JOBS * 3);
    assert.ok(
      statuses.every((s) => s === 200),
      JSON.stringify(statuses),
    );

    await stack.files.nothingLeft(120_000);
    const vms = await stack.service.store.listVms();
    assert.equal(vms.length, JOBS, 'one VM per job, none extra');
    for (const vm of vms) assert.equal(vm.state, 'destroyed', `${vm.name}: ${vm.failure}`);
    assert.deepEqual(await stack.service.store.listRegistrations({ live: true }), []);
    for (const j of done) {
      const row = await stack.service.store.getJob(j.id);
      assert.equal(row?.status, 'completed');
      assert.equal(row?.runnerName, j.runnerName, 'the runner that ran it is recorded');
      assert.ok(vms.some((v) => v.name === j.runnerName && v.repository === j.repository));
    }

    // From each VM's audit trail: requested → admitted → ended.
    const trail = await Promise.all(
      vms.map(async (vm) => {
        const ev = await stack.service.store.listEvents(vm.id);
        return {
          repository: vm.repository,
          requested: ev[0]!.at,
          admitted: ev.find((e) => e.event === 'admitted')!.at,
          ended: ev.at(-1)!.at,
        };
      }),
    );
    t.diagnostic(
      `at most ${most} VMs with a QEMU process at once (sampled), ${maxAtOnce(trail)} VMs (audit trail)`,
    );
    assert.ok(most > 0 && most <= MAX_VMS, `${most} VMs with a QEMU process at once`);
    assert.ok(maxAtOnce(trail) <= MAX_VMS, `${maxAtOnce(trail)} VMs at once`);

    // Fair share, as core/quota.ts decides it: every admission while the other repository had a
    // VM waiting went to the repository holding no more VMs than the other. One VM of slack: the
    // worker counts, then admits; a VM may end, or be queued, in between.
    const unfair = fairnessBreaches(trail, 1);
    assert.deepEqual(unfair, [], 'an admission went to the repository holding more VMs');
    // Both in turn: neither repository had all its jobs done before the other's first was.
    for (const [a, b] of [REPOS, [...REPOS].reverse()]) {
      const lastA = Math.max(
        ...done.filter((j) => j.repository === a).map((j) => Date.parse(j.completedAt!)),
      );
      const firstB = Math.min(
        ...done.filter((j) => j.repository === b).map((j) => Date.parse(j.completedAt!)),
      );
      assert.ok(firstB < lastA, `${b}'s first job completed only after all of ${a}'s`);
    }
    assert.deepEqual(stack.fake.violations, []);
  });

  it('runs the jobs of workflows/autoscale.yml, each on a fresh VM', async () => {
    const wf = parse(readFileSync(new URL('../../workflows/autoscale.yml', import.meta.url), 'utf8')) as {
      jobs: Record<string, { 'runs-on': string[]; steps: { run: string }[] }>;
    };
    const before = (await stack.service.store.listVms()).length;
    const queued = Object.entries(wf.jobs).map(([name, job]) =>
      stack.fake.queueJob({
        repository: REPOS[0]!,
        labels: job['runs-on'],
        name,
        script: job.steps.map((s) => s.run).join('\n'),
      }),
    );
    const done = await Promise.all(queued.map((j) => stack.fake.waitForJob(j.id, { timeoutMs: 300_000 })));
    for (const j of done) {
      assert.equal(j.conclusion, 'success', j.output);
      assert.match(j.output, new RegExp(`on ${j.runnerName}`));
    }
    assert.notEqual(done[0]!.runnerName, done[1]!.runnerName);
    await stack.files.nothingLeft(120_000);
    assert.equal((await stack.service.store.listVms()).length - before, done.length);
    assert.deepEqual(stack.fake.violations, []);
  });
});

interface Span {
  repository: string;
  requested: number;
  admitted: number;
  ended: number;
}

/** The most VMs holding capacity at once: admitted → ended. */
function maxAtOnce(spans: readonly Span[]): number {
  const points = spans.flatMap((s) => [
    [s.admitted, 1],
    [s.ended, -1],
  ]) as [number, number][];
  points.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let live = 0;
  let most = 0;
  for (const [, d] of points) most = Math.max(most, (live += d));
  return most;
}

/**
 * Admissions that broke least-used-first: at the moment a VM of repository X was admitted, another
 * repository Y had a VM waiting and X held more than `slack` VMs more than Y.
 */
function fairnessBreaches(spans: readonly Span[], slack: number): string[] {
  const repos = [...new Set(spans.map((s) => s.repository))];
  const out: string[] = [];
  for (const vm of spans) {
    const t = vm.admitted;
    const holding = (r: string) =>
      spans.filter((s) => s !== vm && s.repository === r && s.admitted <= t && s.ended > t).length;
    const waiting = (r: string) =>
      spans.some((s) => s.repository === r && s.requested <= t && s.admitted > t);
    for (const other of repos) {
      if (other === vm.repository || !waiting(other)) continue;
      if (holding(vm.repository) > holding(other) + slack)
        out.push(
          `${vm.repository} admitted holding ${holding(vm.repository)} while ${other} held ${holding(other)} and waited`,
        );
    }
  }
  return out;
}

// GitHub App autoscaling end to end on real QEMU VMs: jobs are queued in the stand-in GitHub,
// which posts signed workflow_job webhooks to the service as GitHub does; each queued job gets
// a VM with a JIT runner carrying its labels, runs on its own VM, and every VM is gone after.
// No PAT anywhere: runners are minted with the App's installation tokens.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { Stack } from '../helpers/stack.ts';

const REPOS = ['octo-org/app', 'octo-org/lib'];
const JOBS = 8;
const MAX_VMS = 4;

describe(`autoscaling: ${JOBS} queued jobs across 2 repositories, room for ${MAX_VMS} VMs (real VMs)`, () => {
  let stack: Stack;
  const secret = randomBytes(20).toString('hex');
  before(async () => {
    stack = await Stack.start({
      tokens: [],
      githubToken: false,
      app: { installations: ['octo-org'], webhookSecret: secret },
      maxVms: MAX_VMS,
      pools: [{ name: 'linux', labels: ['linux', 'x64'], max_vms: MAX_VMS }],
    });
  });
  after(async () => {
    await stack?.stop();
  });

  it('serves every job on its own VM, never more than the limit at once, and leaves nothing', async (t) => {
    const sender = stack.fake.sendWebhooks({ url: `${stack.service.url}/hooks/github`, secret });
    const jobs = Array.from({ length: JOBS }, (_, i) =>
      stack.fake.queueJob({
        repository: REPOS[i % 2]!,
        labels: i % 2 ? ['self-hosted', 'Linux'] : ['self-hosted', 'linux', 'X64'],
        name: `build-${i}`,
        script: 'echo "ran on $(hostname)"',
      }),
    );
    const done = await Promise.all(jobs.map((j) => stack.fake.waitForJob(j.id, { timeoutMs: 400_000 })));
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

    // Never more than MAX_VMS at once: from each VM's audit trail, admitted → ended.
    const spans = await Promise.all(
      vms.map(async (vm) => {
        const ev = await stack.service.store.listEvents(vm.id);
        return [ev.find((e) => e.event === 'admitted')!.at, ev.at(-1)!.at] as const;
      }),
    );
    const points = spans.flatMap(([a, b]) => [
      [a, 1],
      [b, -1],
    ]) as [number, number][];
    points.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    let live = 0;
    let most = 0;
    for (const [, d] of points) most = Math.max(most, (live += d));
    t.diagnostic(`at most ${most} VMs at once`);
    assert.ok(most <= MAX_VMS, `${most} VMs at once`);
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

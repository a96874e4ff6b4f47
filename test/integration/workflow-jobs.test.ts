// workflow_job webhooks → VMs: every workflow_job example GitHub publishes
// (@octokit/webhooks-examples), signed and posted in their order and reversed; then the cases
// that make accounting hard: a runner that takes another job with the same labels (the two jobs
// trade VMs), a job whose `queued` never came taking a VM, a job run elsewhere, a job cancelled
// while queued, `completed` before `queued`, a job no pool serves.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { isTerminal } from '../../src/model/states.ts';
import type { VmRecord } from '../../src/store/store.ts';
import { AppService } from '../helpers/app-service.ts';

interface Example {
  action: string;
  workflow_job: { id: number; labels: string[]; runner_name: string | null };
  repository: { full_name: string };
}
const examples = (
  createRequire(import.meta.url)('@octokit/webhooks-examples/api.github.com/index.json') as {
    name: string;
    examples: Example[];
  }[]
).find((e) => e.name === 'workflow_job')!.examples;

async function ended(app: AppService, name: string): Promise<VmRecord> {
  for (;;) {
    const vm = (await app.service.store.getVm(name))!;
    if (isTerminal(vm.state)) return vm;
    await app.service.ctx.notifier.waitForChange(name, 500);
  }
}

describe('workflow_job webhooks', () => {
  let app: AppService;
  before(async () => {
    app = await AppService.start({
      pools: [
        { name: 'ubuntu', labels: ['ubuntu-latest'] },
        { name: 'k8s', labels: ['k8s'] },
        { name: 'gpu', labels: ['gpu', 'db-app', 'dc-03'] },
        { name: 'linux', labels: ['linux'] },
      ],
      installations: [
        { id: 3456996, account: 'Codertocat' },
        { id: 23154469, account: 'lineville' },
        { id: 77, account: 'octo-org' },
      ],
    });
  });
  after(async () => {
    await app?.stop();
  });

  const vmsOf = async (jobIds: number[]) =>
    (await app.service.store.listVms()).filter((v) => jobIds.some((id) => v.identity.includes(`:${id}:`)));

  it(`all ${examples.length} examples in their order: 2xx each, one VM (the queued k8s job), carrying its labels`, async () => {
    assert.equal(examples.length, 8);
    const results = [];
    for (const ex of examples) {
      const r = await app.post('workflow_job', ex);
      assert.ok(r.status === 200 || r.status === 202, JSON.stringify(r.json));
      results.push(`${ex.action}:${String(r.json.result)}`);
    }
    assert.deepEqual(results, [
      'in_progress:recorded',
      'completed:recorded',
      'completed:duplicate',
      'in_progress:stale',
      'in_progress:recorded',
      'queued:stale', // completed came first: no VM
      'queued:vm_requested',
      'waiting:stale',
    ]);
    const ids = examples.map((e) => e.workflow_job.id);
    const vms = await vmsOf(ids);
    assert.equal(vms.length, 1);
    const [vm] = vms;
    assert.equal(vm!.pool, 'k8s');
    assert.equal(vm!.repository, 'lineville/elastic-machines-testing');
    assert.deepEqual(vm!.runnerLabels, ['k8s', vm!.name]);
    const runner = await app.fake.waitForRunner((r) => r.name === vm!.name);
    assert.deepEqual([...runner.labels].sort(), ['Linux', 'X64', 'k8s', 'self-hosted', vm!.name].sort());
    const job = await app.service.store.getJob(12877621891);
    assert.equal(job?.vm, vm!.name);
    assert.equal(job?.status, 'queued');
  });

  it('the examples reversed (other job ids): the ubuntu job run by a runner not ours frees its VM', async () => {
    const shifted = [...examples].reverse().map((ex) => ({
      ...ex,
      workflow_job: { ...ex.workflow_job, id: ex.workflow_job.id + 1 },
    }));
    const results = [];
    for (const ex of shifted) {
      const r = await app.post('workflow_job', ex);
      assert.ok(r.status === 200 || r.status === 202, JSON.stringify(r.json));
      results.push(`${ex.action}:${String(r.json.result)}`);
    }
    assert.deepEqual(results, [
      'waiting:recorded',
      'queued:vm_requested',
      'queued:vm_requested',
      'in_progress:recorded',
      'in_progress:recorded', // on "GitHub Actions 5": not ours
      'completed:recorded',
      'completed:duplicate',
      'in_progress:recorded',
    ]);
    const vms = await vmsOf(shifted.map((e) => e.workflow_job.id));
    assert.deepEqual(vms.map((v) => v.pool).sort(), ['k8s', 'ubuntu']);
    const ubuntu = vms.find((v) => v.pool === 'ubuntu')!;
    assert.equal((await ended(app, ubuntu.name)).state, 'destroyed');
    assert.ok(!isTerminal((await app.service.store.getVm(vms.find((v) => v.pool === 'k8s')!.name))!.state));
  });

  const job = (
    id: number,
    action: string,
    runner: string | null = null,
    labels = ['self-hosted', 'linux'],
  ) => ({
    action,
    workflow_job: { id, run_id: 7000 + id, run_attempt: 1, labels, runner_name: runner, status: action },
    repository: { full_name: 'octo-org/app' },
    installation: { id: 77 },
  });
  const post = async (id: number, action: string, runner: string | null = null, labels?: string[]) => {
    const r = await app.post('workflow_job', job(id, action, runner, labels));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return r.json as { result: string; vms_created: string[]; vms_destroyed: string[] };
  };

  it('a runner takes another job with its labels: the two jobs trade VMs, no VM is created or lost', async () => {
    const [vmA] = (await post(5001, 'queued')).vms_created;
    const [vmB] = (await post(5002, 'queued')).vms_created;
    assert.ok(vmA && vmB);
    // GitHub gave job A to B's runner.
    const taken = await post(5001, 'in_progress', vmB);
    assert.equal(taken.result, 'bound');
    assert.deepEqual([taken.vms_created, taken.vms_destroyed], [[], []]);
    assert.equal((await app.service.store.getJob(5001))?.vm, vmB);
    assert.equal((await app.service.store.getJob(5002))?.vm, vmA, 'B waits for the VM made for A');
    // A completes on B's VM: that VM goes; A's VM is still there for B.
    assert.deepEqual((await post(5001, 'completed', vmB)).vms_destroyed, [vmB]);
    assert.ok(!isTerminal((await app.service.store.getVm(vmA))!.state));
    await post(5002, 'in_progress', vmA);
    assert.deepEqual((await post(5002, 'completed', vmA)).vms_destroyed, [vmA]);
    assert.equal((await vmsOf([5001, 5002])).length, 2);
  });

  it('a job whose queued never came takes a VM: the job that VM was for gets a new one', async () => {
    const [vmC] = (await post(5003, 'queued')).vms_created;
    const r = await post(5004, 'in_progress', vmC!);
    assert.equal(r.result, 'bound');
    assert.equal(r.vms_created.length, 1);
    const c = await app.service.store.getJob(5003);
    assert.equal(c?.vm, r.vms_created[0]);
    assert.equal(c?.vmsCreated, 2);
    assert.match(c!.note, /a new VM serves it/);
    // Delivered late, C's queued finds its (new) VM: nothing more.
    assert.equal((await post(5003, 'queued')).result, 'duplicate');
    assert.equal((await vmsOf([5003, 5004])).length, 2);
  });

  it('a late queued after its VM ran a job (in_progress not here yet) creates no second VM', async () => {
    const [vm] = (await post(5009, 'queued')).vms_created;
    // The VM's runner runs a job (the stand-in hands it one for its unique label), then the VM ends.
    const ran = app.fake.queueJob({
      repository: 'octo-org/app',
      labels: ['self-hosted', vm!],
      name: 'some job',
    });
    assert.equal((await app.fake.waitForJob(ran.id, { timeoutMs: 60_000 })).runnerName, vm);
    assert.equal((await ended(app, vm!)).state, 'destroyed');
    const late = await post(5009, 'queued');
    assert.equal(late.result, 'duplicate');
    assert.deepEqual(late.vms_created, []);
    // If that was another job (5010), its in_progress says so, and 5009 gets a VM then.
    const moved = await post(5010, 'in_progress', vm!);
    assert.equal(moved.vms_created.length, 1);
    assert.equal((await app.service.store.getJob(5009))?.vm, moved.vms_created[0]);
  });

  it('run by a runner not ours, or cancelled while queued: its VM is destroyed', async () => {
    const [vmE] = (await post(5005, 'queued')).vms_created;
    assert.deepEqual((await post(5005, 'in_progress', 'static-runner-1')).vms_destroyed, [vmE]);
    const [vmF] = (await post(5006, 'queued')).vms_created;
    assert.deepEqual((await post(5006, 'completed', null)).vms_destroyed, [vmF]);
    for (const name of [vmE!, vmF!]) assert.equal((await ended(app, name)).state, 'destroyed');
  });

  it('completed before queued, and a repeated in_progress: no VM; a job no pool serves: the API says why', async () => {
    assert.equal((await post(5007, 'completed', 'somewhere')).result, 'recorded');
    assert.equal((await post(5007, 'queued')).result, 'stale');
    assert.equal((await vmsOf([5007])).length, 0);
    const r = await post(5008, 'queued', null, ['self-hosted']);
    assert.equal(r.result, 'not_served');
    const { jobs } = await app.api<{ jobs: { job_id: number; pool: string | null; note: string }[] }>(
      '/api/v1/jobs?status=queued',
    );
    const j = jobs.find((x) => x.job_id === 5008);
    assert.equal(j?.pool, null);
    assert.match(j!.note, /names no pool label/);
    assert.deepEqual(app.fake.violations, []);
  });
});

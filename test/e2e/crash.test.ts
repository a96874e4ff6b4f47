// kill -9 of `hatchery serve` while one VM runs a job and another is being created: QEMU
// processes outlive the service (daemonized); the restarted service adopts the running VMs,
// resumes the interrupted step, and every lifecycle completes with nothing leaked.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ServiceProcess, StackFiles } from '../helpers/stack.ts';

const REPO = 'octo-org/crashy';

describe('crash recovery (kill -9 of the service, real VMs)', () => {
  let files: StackFiles;
  let svc: ServiceProcess;
  before(async () => {
    files = await StackFiles.create();
    svc = new ServiceProcess(files);
    await svc.start();
  });
  after(async () => {
    await svc?.kill9();
    await files?.cleanup();
  });

  const create = (runId: number) =>
    svc.client.control({
      action: 'create',
      repository: REPO,
      run_id: runId,
      run_attempt: 1,
      labels: ['linux'],
    });

  it('adopts running VMs, resumes unfinished steps, completes every lifecycle, leaks nothing', async (t) => {
    // VM A runs a job when the service dies.
    const a = (await create(1)).json.vms[0]!.name;
    await svc.waitState(a, ['idle']);
    const jobA = files.fake.queueJob({
      repository: REPO,
      labels: ['self-hosted', a],
      script: 'sleep 8; echo survived',
    });
    await files.fake.waitUntil(() => files.fake.job(jobA.id)?.status === 'in_progress', {
      timeoutMs: 60_000,
    });
    await svc.waitState(a, ['busy'], 10_000);

    // VM B is being created when the service dies.
    const b = (await create(2)).json.vms[0]!.name;
    const bAtKill = (await svc.waitState(b, ['provisioning', 'booting'], 10_000)).state;
    const pidBefore = svc.pid;
    await svc.kill9();
    t.diagnostic(`killed the service (pid ${pidBefore}) with A busy and B ${bAtKill}`);
    assert.ok(files.leftovers().qemu.length >= 1, 'the VMs outlive the service');

    await svc.start();
    assert.notEqual(svc.pid, pidBefore);

    // A: its job finishes while (or after) we were away; the VM drains and is destroyed.
    const doneA = await files.fake.waitForJob(jobA.id, { timeoutMs: 60_000 });
    assert.equal(doneA.conclusion, 'success', doneA.output);
    assert.match(doneA.output, /survived/);
    await svc.waitState(a, ['destroyed'], 60_000);

    // B: the interrupted create is resumed (or its VM adopted); it registers and serves a job.
    await svc.waitState(b, ['idle'], 120_000);
    const jobB = files.fake.queueJob({
      repository: REPO,
      labels: ['self-hosted', b],
      script: 'echo after-crash',
    });
    const doneB = await files.fake.waitForJob(jobB.id, { timeoutMs: 60_000 });
    assert.equal(doneB.conclusion, 'success', doneB.output);
    await svc.waitState(b, ['destroyed'], 60_000);

    // The workflow's destroy job finds nothing left to do.
    for (const runId of [1, 2]) {
      const r = await svc.client.control({
        action: 'destroy',
        repository: REPO,
        run_id: runId,
        run_attempt: 1,
        labels: ['linux'],
      });
      assert.equal(r.status, 202);
      assert.deepEqual(
        r.json.vms.map((v) => v.state),
        ['destroyed'],
      );
    }
    await files.nothingLeft();

    // Exactly one VM per name ever ran a job: B was not created twice over.
    const jobs = files.fake.jobs();
    assert.deepEqual(jobs.map((j) => j.runnerName).sort(), [a, b].sort());
    const [eventsA, eventsB] = await svc.read(async (s) => [
      await s.listEvents((await s.getVm(a))!.id),
      await s.listEvents((await s.getVm(b))!.id),
    ]);
    t.diagnostic(`A: ${eventsA.map((e) => e.event).join(' ')}`);
    t.diagnostic(`B: ${eventsB.map((e) => e.event).join(' ')}`);
    for (const events of [eventsA, eventsB]) {
      assert.equal(events.at(-1)!.toState, 'destroyed');
      assert.ok(!events.some((e) => e.toState === 'failed'));
    }
    assert.ok(eventsA.some((e) => e.event === 'job_finished'));
    assert.deepEqual(files.fake.violations, []);

    // A graceful stop afterwards: SIGTERM, exit 0.
    assert.equal(await svc.stop(), 0);
  });
});

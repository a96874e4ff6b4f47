// kill -9 of `hatchery serve` while one VM runs a job and another is being created: QEMU
// processes outlive the service (daemonized); the restarted service adopts the running VMs,
// resumes the interrupted step, and every lifecycle completes with nothing leaked.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CrashPoint } from '../../src/core/crash-points.ts';
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

// kill -9 at the dangerous moments themselves (src/core/crash-points.ts): the service stops
// itself there and the test kills it, then restarts it and checks state, the runner configs
// GitHub minted, and the registrations left.
describe('crash at the dangerous moments (kill -9, real VMs)', () => {
  let files: StackFiles;
  let svc: ServiceProcess;
  let run = 100;
  before(async () => {
    files = await StackFiles.create();
    svc = new ServiceProcess(files);
  });
  after(async () => {
    await svc?.kill9();
    await files?.cleanup();
  });

  /** Starts the service armed at `point`, creates a VM, and kills the service once it stops there. */
  async function createAndCrash(
    point: CrashPoint,
    before?: (name: string) => Promise<void>,
  ): Promise<string> {
    await svc.start(60_000, { crashAt: point });
    const r = await svc.client.control({
      action: 'create',
      repository: REPO,
      run_id: ++run,
      run_attempt: 1,
      labels: ['linux'],
    });
    assert.equal(r.status, 202);
    const name = r.json.vms[0]!.name;
    await before?.(name);
    await svc.waitStopped();
    await svc.kill9();
    return name;
  }
  const liveRegistrations = (name: string) =>
    svc.read(async (s) => s.listRegistrations({ vmId: (await s.getVm(name))!.id, live: true }));
  const events = (name: string) => svc.read(async (s) => s.listEvents((await s.getVm(name))!.id));

  /** After the restart: the VM serves one job, ends destroyed, and nothing is left. */
  async function servesAJobAndLeavesNothing(name: string): Promise<void> {
    await svc.waitState(name, ['idle'], 120_000);
    const job = files.fake.queueJob({ repository: REPO, labels: ['self-hosted', name], script: 'echo ok' });
    assert.equal((await files.fake.waitForJob(job.id, { timeoutMs: 60_000 })).conclusion, 'success');
    await svc.waitState(name, ['destroyed'], 60_000);
    await files.nothingLeft();
    assert.deepEqual(await liveRegistrations(name), []);
  }

  it('JIT config minted, not recorded: the stale registration is replaced, once, and says so', async () => {
    const minted = files.fake.issuedJitConfigs().length;
    const name = await createAndCrash('jit-minted');
    assert.equal(files.fake.issuedJitConfigs().length, minted + 1);
    assert.deepEqual(
      files.fake.runners(REPO).map((r) => r.name),
      [name],
      'GitHub has the registration',
    );
    assert.deepEqual(await liveRegistrations(name), [], 'our records do not');
    assert.equal((await svc.read((s) => s.getVm(name)))?.state, 'provisioning');
    assert.deepEqual(files.leftovers().qemu, [], 'no VM was started');

    await svc.start();
    await svc.waitState(name, ['idle'], 120_000);
    assert.equal(files.fake.issuedJitConfigs().length, minted + 2, 'minted again, exactly once');
    assert.equal(files.fake.runners(REPO).filter((r) => r.name === name).length, 1);
    const created = (await events(name)).find((e) => e.event === 'created');
    assert.match(created?.note ?? '', /registered again: the name was taken by registration \d+/);
    await servesAJobAndLeavesNothing(name);
    await svc.stop();
  });

  it('VM created, `created` not committed: the VM is adopted, no second VM, no second runner', async () => {
    const minted = files.fake.issuedJitConfigs().length;
    const name = await createAndCrash('vm-created');
    assert.equal(files.fake.issuedJitConfigs().length, minted + 1);
    assert.equal((await svc.read((s) => s.getVm(name)))?.state, 'provisioning');
    const qemu = files.leftovers().qemu;
    assert.equal(qemu.length, 1, 'its QEMU runs on without the service');

    await svc.start();
    await svc.waitState(name, ['idle'], 120_000);
    assert.equal(files.fake.issuedJitConfigs().length, minted + 1, 'no second runner config');
    assert.deepEqual(files.leftovers().qemu, qemu, 'the same QEMU process, adopted');
    const created = (await events(name)).find((e) => e.event === 'created');
    assert.match(created?.note ?? '', /adopted/);
    await servesAJobAndLeavesNothing(name);
    await svc.stop();
  });

  it('VM destroyed, its registrations and `destroy_done` not: the destroy resumes and finishes', async () => {
    const name = await createAndCrash('vm-destroyed', async (n) => {
      await svc.waitState(n, ['idle'], 120_000);
      const del = await svc.client.api('DELETE', `/api/v1/vms/${n}`);
      assert.equal(del.status, 202);
    });
    assert.equal((await svc.read((s) => s.getVm(name)))?.state, 'destroying');
    assert.deepEqual(files.leftovers().qemu, [], 'the VM itself is gone');
    assert.equal((await liveRegistrations(name)).length, 1, 'its registration is still recorded');

    await svc.start();
    await svc.waitState(name, ['destroyed'], 60_000);
    await files.nothingLeft();
    assert.deepEqual(await liveRegistrations(name), []);
    assert.deepEqual(files.fake.runners(REPO), []);
    await svc.stop();
  });
});

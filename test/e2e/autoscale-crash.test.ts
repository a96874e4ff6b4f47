// kill -9 of `hatchery serve` in the middle of a burst of autoscaled jobs (real VMs): webhooks
// sent while it is down fail, as they would on GitHub; after the restart the failed deliveries
// are redelivered and the queued jobs polled, and every job is served with nothing leaked.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { isTerminal } from '../../src/model/states.ts';
import { ServiceProcess, StackFiles } from '../helpers/stack.ts';

const REPO = 'octo-org/app';

describe('autoscaling: kill -9 of the service during a burst (real VMs)', () => {
  let files: StackFiles;
  let svc: ServiceProcess;
  const secret = randomBytes(20).toString('hex');
  before(async () => {
    files = await StackFiles.create({
      tokens: [],
      githubToken: false,
      fixedPort: true,
      app: {
        installations: ['octo-org'],
        webhookSecret: secret,
        settings: { redeliver_seconds: 3, poll_seconds: 5 },
      },
      maxVms: 3,
      pools: [{ name: 'linux', labels: ['linux'], max_vms: 3 }],
    });
    svc = new ServiceProcess(files);
  });
  after(async () => {
    await svc?.kill9();
    await files?.cleanup();
  });

  it('serves every job after the restart; no VM or registration is left', async (t) => {
    await svc.start();
    const sender = files.fake.sendWebhooks({ url: `${svc.url}/hooks/github`, secret });
    const queue = (i: number) =>
      files.fake.queueJob({
        repository: REPO,
        labels: ['self-hosted', 'linux'],
        name: `burst-${i}`,
        script: 'sleep 2; echo "ran on $(hostname)"',
      });
    const jobs = Array.from({ length: 5 }, (_, i) => queue(i));
    await files.fake.waitUntil(() => files.fake.jobs().some((j) => j.status === 'in_progress'), {
      timeoutMs: 240_000,
      what: 'a job running',
    });
    await svc.kill9();
    // While it is down: more jobs are queued; their webhooks (and those of running jobs) fail.
    jobs.push(queue(5), queue(6));
    await sender.idle();
    const failedWhileDown = sender.deliveries.filter((d) => d.statusCode === 0).length;
    t.diagnostic(`${failedWhileDown} deliveries failed while the service was down`);
    assert.ok(failedWhileDown >= 2, 'the queued webhooks of the jobs queued while down failed');

    await svc.start();
    const done = await Promise.all(jobs.map((j) => files.fake.waitForJob(j.id, { timeoutMs: 400_000 })));
    for (const j of done) assert.equal(j.conclusion, 'success', j.output);
    assert.equal(new Set(done.map((j) => j.runnerName)).size, done.length, 'each job on its own VM');
    await files.nothingLeft(180_000);
    // The files go before the destroy step's result is written: wait for that write too.
    const until = Date.now() + 60_000;
    while (
      !(await svc.read(async (s) => (await s.listVms()).every((vm) => isTerminal(vm.state)))) &&
      Date.now() < until
    )
      await new Promise((r) => setTimeout(r, 250));
    const [vms, live] = await svc.read(
      async (s) => [await s.listVms(), await s.listRegistrations({ live: true })] as const,
    );
    for (const vm of vms) assert.ok(isTerminal(vm.state), `${vm.name} is ${vm.state}`);
    assert.deepEqual(live, []);
    t.diagnostic(`${vms.length} VMs for ${done.length} jobs`);
    assert.equal(vms.length, done.length, vms.map((v) => v.identity).join(', '));
    assert.deepEqual(files.fake.violations, []);
  });
});

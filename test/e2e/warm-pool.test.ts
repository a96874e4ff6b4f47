// A warm pool on real QEMU VMs (the tiny guest, virtio-serial channel), with a GitHub App and
// its webhooks posted by the stand-in as GitHub posts them: a pool with min_idle = 1 boots a VM
// ahead, without a JIT config; a queued job takes it — its config goes over the guest channel —
// and runs on it; the pool boots the next one; a restart with min_idle = 0 retires that one, and
// nothing is left: no QEMU, no VM directory, no forwarder, no runner registration.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { VmRecord } from '../../src/store/store.ts';
import { eventually, Stack } from '../helpers/stack.ts';

describe('warm pool (real VMs)', () => {
  let stack: Stack;
  const secret = randomBytes(20).toString('hex');
  before(async () => {
    stack = await Stack.start({
      tokens: [],
      githubToken: false,
      app: { installations: ['octo-org'], webhookSecret: secret },
      pools: [{ name: 'linux', labels: ['linux', 'x64'], max_vms: 2, min_idle: 1 }],
    });
  });
  after(async () => {
    await stack?.stop();
  });

  /** The pool's one warm VM, once it is warm (booted, runner unpacked, waiting for a job). */
  const warmVm = (except?: string): Promise<VmRecord> =>
    eventually(
      async () => {
        const vms = (await stack.service.store.warmVms()).filter((v) => v.name !== except);
        return vms.length === 1 && vms[0]!.state === 'warm' ? vms[0] : undefined;
      },
      'a warm VM',
      240_000,
    );

  it('boots a VM ahead; a queued job takes it and runs on it; the pool is topped up; nothing leaks', async () => {
    const warm = await warmVm();
    assert.deepEqual(stack.fake.runners(), [], 'a warm VM has no runner registered');
    const events = await stack.events(warm.name);
    assert.deepEqual(
      events.map((e) => e.to),
      ['pending', 'provisioning', 'booting', 'booting', 'warm'],
      JSON.stringify(events),
    );

    const sender = stack.fake.sendWebhooks({ url: `${stack.service.url}/hooks/github`, secret });
    const job = stack.fake.queueJob({
      repository: 'octo-org/app',
      labels: ['self-hosted', 'linux', 'X64'],
      name: 'warm-build',
      script: 'echo "ran on $(hostname)"',
    });
    const done = await stack.fake.waitForJob(job.id, { timeoutMs: 180_000 });
    assert.equal(done.conclusion, 'success', done.output);
    assert.equal(done.runnerName, warm.name, 'the job ran on the warm VM');
    assert.match(done.output, new RegExp(`ran on ${warm.name}`));
    const row = (await stack.service.store.getJob(job.id))!;
    assert.equal(row.vm, warm.name);
    assert.equal(row.runnerName, warm.name);

    const used = await stack.waitState(warm.name, ['destroyed'], 120_000);
    assert.equal(used.repository, 'octo-org/app');
    assert.deepEqual(used.runnerLabels, ['linux', 'x64', warm.name]);
    const trail = (await stack.events(warm.name)).map((e) => e.to);
    assert.deepEqual(trail.slice(0, 8), [
      'pending',
      'provisioning',
      'booting',
      'booting',
      'warm',
      'configuring',
      'booting',
      'idle',
    ]);

    // Topped up: the next warm VM, a new one.
    const next = await warmVm(warm.name);
    assert.notEqual(next.name, warm.name);
    await sender.idle();
    assert.ok(sender.deliveries.every((d) => d.statusCode === 200));

    // min_idle lowered across a restart: the surplus warm VM is destroyed, nothing is left.
    stack.files.editConfig((config) => {
      for (const p of config.pools as Record<string, unknown>[]) p.min_idle = 0;
    });
    await stack.restart();
    const retired = await stack.waitState(next.name, ['destroyed'], 120_000);
    assert.equal(retired.failure, null);
    await stack.files.nothingLeft(120_000);
    const vms = await stack.service.store.listVms();
    assert.deepEqual(
      vms.map((v) => [v.name, v.state]).sort(),
      [
        [warm.name, 'destroyed'],
        [next.name, 'destroyed'],
      ].sort(),
    );
    assert.deepEqual(await stack.service.store.listRegistrations({ live: true }), []);
    assert.deepEqual(stack.fake.violations, []);
  });
});

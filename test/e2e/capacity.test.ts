// Capacity limits on real VMs: a pool at its max_vms queues further requests (pending) and
// admits the oldest as soon as a VM ends; a request that waits longer than the pool's queue
// timeout fails with the reason and never starts a VM.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Stack } from '../helpers/stack.ts';

const REPO = 'octo-org/busy';
const create = (runId: number, labels = ['linux']) => ({
  action: 'create',
  repository: REPO,
  run_id: runId,
  run_attempt: 1,
  labels,
});

describe('capacity (real VMs)', () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start({
      pools: [
        { name: 'linux', labels: ['linux'], max_vms: 1 },
        { name: 'short', labels: ['short'], max_vms: 1, timeouts: { queue: 3 } },
      ],
      maxVms: 2,
    });
  });
  after(async () => {
    await stack?.stop();
  });

  it('queues past max_vms and admits the oldest request when a VM ends', async () => {
    const a = (await stack.client.control(create(1))).json.vms[0]!.name;
    const b = (await stack.client.control(create(2))).json.vms[0]!.name;
    const c = (await stack.client.control(create(3))).json.vms[0]!.name;
    await stack.waitState(a, ['idle']);
    assert.equal((await stack.vm(b)).state, 'pending', 'the pool is full');
    assert.equal((await stack.vm(c)).state, 'pending');

    await stack.client.control({ ...create(1), action: 'destroy' });
    await stack.waitState(a, ['destroyed'], 30_000);
    await stack.waitState(b, ['idle'], 120_000);
    assert.equal((await stack.vm(c)).state, 'pending', 'oldest first, one at a time');
    await stack.client.control({ ...create(3), action: 'destroy' });
    assert.equal(
      (await stack.vm(c)).state,
      'destroyed',
      'a queued VM is destroyed at once: nothing exists yet',
    );
    await stack.client.control({ ...create(2), action: 'destroy' });
    await stack.waitState(b, ['destroyed'], 30_000);
  });

  it('fails a request that waits longer than the queue timeout, starting nothing', async () => {
    const first = (await stack.client.control(create(10, ['short']))).json.vms[0]!.name;
    const queued = (await stack.client.control(create(11, ['short']))).json.vms[0]!.name;
    await stack.waitState(first, ['booting', 'idle']);
    const failed = await stack.waitState(queued, ['failed'], 30_000);
    assert.equal(failed.failure, 'no capacity within 3 s');
    assert.deepEqual(
      (await stack.events(queued)).map((e) => e.to),
      ['pending', 'failed'],
    );
    await stack.client.control({ ...create(10, ['short']), action: 'destroy' });
    await stack.waitState(first, ['destroyed'], 60_000);
    await stack.files.nothingLeft();
    assert.deepEqual(stack.fake.violations, []);
  });
});

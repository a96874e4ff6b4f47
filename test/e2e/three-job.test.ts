// The three-job workflow end to end on real VMs: create → runners online → jobs → destroy, with
// the GitHub stand-in dispatching each job to its VM's unique label. Run once per guest channel:
// QEMU's own virtio-serial port, and the HTTP channel every network provider uses.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Stack } from '../helpers/stack.ts';

const REPO = 'octo-org/app';

for (const channel of ['virtio', 'http'] as const) {
  describe(`three-job workflow (control route, two labels, real VMs, ${channel} channel)`, () => {
    let stack: Stack;
    before(async () => {
      const http = channel === 'http' ? { channel } : {};
      stack = await Stack.start({
        pools: [
          { name: 'linux', labels: ['linux'], ...http },
          { name: 'debian', labels: ['debian'], ...http },
        ],
      });
    });
    after(async () => {
      await stack?.stop();
    });

    it('boots a VM per label, runs a job on each, destroys both and leaves nothing', async (t) => {
      const body = {
        action: 'create',
        repository: REPO,
        run_id: 9001,
        run_attempt: 1,
        labels: ['linux', 'debian'],
      };
      const created = await stack.client.control(body, { delivery: 'd-create-1' });
      assert.equal(created.status, 202, JSON.stringify(created.json));
      assert.equal(created.json.vms.length, 2);
      const [a, b] = created.json.vms;
      assert.ok(a && b);
      assert.notEqual(a.name, b.name);
      for (const vm of created.json.vms) {
        assert.equal(vm.state, 'pending', 'the answer comes before any VM work');
        assert.ok(vm.runner_labels.includes(vm.name), 'the unique label is the VM name');
        assert.match(vm.wait_url, new RegExp(`/api/v1/vms/${vm.name}\\?wait=ready`));
      }
      t.diagnostic(`create acked in ${created.ms.toFixed(1)} ms`);

      // Job 1 of the workflow waits for the runners through the long-poll.
      const ready = await Promise.all(
        created.json.vms.map((vm) =>
          stack.client.api(`GET`, `/api/v1/vms/${vm.name}?wait=ready&timeout=240`),
        ),
      );
      for (const r of ready) assert.equal(r.status, 200, JSON.stringify(r.json));
      for (const vm of created.json.vms) {
        const runner = stack.fake.runners(REPO).find((r) => r.name === vm.name);
        assert.ok(runner, `runner ${vm.name} registered`);
        assert.equal(runner.status, 'online');
        assert.equal(runner.ephemeral, true, 'a JIT runner is single-use');
        assert.ok(runner.labels.includes(vm.name));
      }

      // Job 2: one job per VM, on `runs-on: [self-hosted, <name>]`.
      const jobs = created.json.vms.map((vm) =>
        stack.fake.queueJob({
          repository: REPO,
          labels: ['self-hosted', vm.name],
          name: `test-${vm.name}`,
          script: 'echo "ran on $(hostname)"',
        }),
      );
      const done = await Promise.all(jobs.map((j) => stack.fake.waitForJob(j.id, { timeoutMs: 120_000 })));
      for (const [i, j] of done.entries()) {
        const vm = created.json.vms[i]!;
        assert.equal(j.conclusion, 'success', j.output);
        assert.equal(j.runnerName, vm.name, 'each job ran on its own VM');
        assert.match(j.output, new RegExp(`ran on ${vm.name}`));
      }

      // After its single job the runner exits and the VM powers itself off: Hatchery destroys it.
      for (const vm of created.json.vms) await stack.waitState(vm.name, ['destroyed'], 60_000);

      // Job 3 (if: always()): destroy — everything is gone already, and that is a success.
      const destroyed = await stack.client.control(
        { ...body, action: 'destroy' },
        { delivery: 'd-destroy-1' },
      );
      assert.equal(destroyed.status, 202);
      assert.deepEqual(
        destroyed.json.vms.map((v) => v.state),
        ['destroyed', 'destroyed'],
      );

      await stack.files.nothingLeft();
      assert.deepEqual(await stack.service.store.listRegistrations({ live: true }), []);

      for (const vm of created.json.vms) {
        const events = await stack.events(vm.name);
        assert.deepEqual(
          events.map((e) => `${e.event}→${e.to}`),
          [
            'requested→pending',
            'admitted→provisioning',
            'created→booting',
            'guest_booted→booting',
            'runner_registered→idle',
            'job_started→busy',
            'job_finished→draining',
            'vm_exited→destroying',
            'destroy_done→destroyed',
          ],
          `${vm.name}: ${JSON.stringify(events)}`,
        );
      }
      assert.deepEqual(stack.fake.violations, []);
    });
  });
}

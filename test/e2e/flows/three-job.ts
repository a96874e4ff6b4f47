// The three-job workflow (workflows/three-job.yml) against a running stack, with every assertion
// the e2e tests make about it, whatever provider and guest channel serve its pools: create → the
// runners online → a job on each VM → the VMs destroy themselves → the destroy job finds nothing
// left. Shared by the per-channel QEMU test (three-job.test.ts) and the Vagrant pools (vagrant.test.ts).
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { Stack } from '../../helpers/stack.ts';

export const THREE_JOB_REPO = 'octo-org/app';

/** The lifecycle of a VM that ran one job and powered itself off, as its audit trail shows it. */
export const ONE_JOB_LIFECYCLE = [
  'requested→pending',
  'admitted→provisioning',
  'created→booting',
  'guest_booted→booting',
  'runner_registered→idle',
  'job_started→busy',
  'job_finished→draining',
  'vm_exited→destroying',
  'destroy_done→destroyed',
];

/** `labels`: two labels, each served by a pool of the stack. */
export async function threeJobWorkflow(
  stack: Stack,
  t: TestContext,
  opts: { runId: number; labels: [string, string] },
): Promise<void> {
  const body = {
    action: 'create',
    repository: THREE_JOB_REPO,
    run_id: opts.runId,
    run_attempt: 1,
    labels: opts.labels,
  };
  const created = await stack.client.control(body, { delivery: `d-create-${opts.runId}` });
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
    created.json.vms.map((vm) => stack.client.api(`GET`, `/api/v1/vms/${vm.name}?wait=ready&timeout=240`)),
  );
  for (const r of ready) assert.equal(r.status, 200, JSON.stringify(r.json));
  for (const vm of created.json.vms) {
    const runner = stack.fake.runners(THREE_JOB_REPO).find((r) => r.name === vm.name);
    assert.ok(runner, `runner ${vm.name} registered`);
    assert.equal(runner.status, 'online');
    assert.equal(runner.ephemeral, true, 'a JIT runner is single-use');
    assert.ok(runner.labels.includes(vm.name));
  }

  // Job 2: one job per VM, on `runs-on: [self-hosted, <name>]`.
  const jobs = created.json.vms.map((vm) =>
    stack.fake.queueJob({
      repository: THREE_JOB_REPO,
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
  for (const vm of created.json.vms) await stack.waitState(vm.name, ['destroyed'], 120_000);

  // Job 3 (if: always()): destroy — everything is gone already, and that is a success.
  const destroyed = await stack.client.control(
    { ...body, action: 'destroy' },
    { delivery: `d-destroy-${opts.runId}` },
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
      ONE_JOB_LIFECYCLE,
      `${vm.name}: ${JSON.stringify(events)}`,
    );
  }
  assert.deepEqual(stack.fake.violations, []);
}

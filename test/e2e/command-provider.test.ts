// The three-job workflow on a pool served by the external-command provider, running the sample
// executable (examples/command-provider/qemu-vm.sh) on real VMs, next to a pool on the built-in
// QEMU provider in the same service: create → runners online → jobs → destroy → nothing left.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SAMPLE, sampleImages } from '../helpers/command-provider.ts';
import { killAll, qemuPidsUnder } from '../helpers/processes.ts';
import { Stack } from '../helpers/stack.ts';

const REPO = 'octo-org/app';

const FULL_HOST = `cat >/dev/null
case $HATCHERY_OPERATION in
  create) echo "lab-3: 0 of 4 VM slots free" >&2
          echo '{"error": {"message": "no capacity", "retryable": false}}'; exit 1 ;;
  list) echo '{"vms": []}' ;;
  get) echo '{"vm": null}' ;;
  *) echo '{}' ;;
esac`;

describe('three-job workflow on a command-provider pool (sample script, real VMs)', () => {
  let stack: Stack;
  let imagesRoot: string;
  let cmdState: string;
  before(async () => {
    imagesRoot = mkdtempSync(path.join(tmpdir(), 'hatchery-cmd-images-'));
    stack = await Stack.start({
      providers: {
        cmd: {
          kind: 'command',
          // Relative to the config file's directory (working_dir): the stack's own directory.
          command: [SAMPLE, '--state-dir', 'cmd-vms', '--images-dir', await sampleImages(imagesRoot)],
          timeout_seconds: 60,
          // The sample gives each VM a virtio-serial socket, as the QEMU provider does.
          guest_channel: 'unix',
        },
        // An executable whose creates always fail, saying why on stderr (no VM ever starts).
        full: {
          kind: 'command',
          command: ['/bin/sh', '-c', FULL_HOST],
        },
      },
      pools: [
        {
          name: 'linux',
          labels: ['linux'],
          provider: 'cmd',
          providerKeys: (forward) => ({ options: { network: 'restricted', forwards: [forward] } }),
        },
        { name: 'debian', labels: ['debian'] },
        { name: 'full', labels: ['full'], provider: 'full', providerKeys: () => ({}) },
      ],
    });
    cmdState = path.join(stack.files.dir, 'cmd-vms');
  });
  /** A VM's console (live or kept), for the failure message of a VM that did not come up. */
  const consoleTail = (name: string): string => {
    for (const dir of [cmdState, stack.files.stateDir]) {
      for (const file of [path.join(dir, name, 'console.log'), path.join(dir, '.console', `${name}.log`)]) {
        if (existsSync(file)) return readFileSync(file, 'utf8').slice(-3000);
      }
    }
    return '(none)';
  };
  after(async () => {
    if (cmdState) killAll(qemuPidsUnder(cmdState));
    await stack?.stop();
    rmSync(imagesRoot, { recursive: true, force: true });
  });

  it('boots the command pool VM beside a QEMU pool VM, runs a job on each, destroys both', async () => {
    const body = {
      action: 'create',
      repository: REPO,
      run_id: 9101,
      run_attempt: 1,
      labels: ['linux', 'debian'],
    };
    const created = await stack.client.control(body, { delivery: 'd-cmd-create-1' });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const [linux, debian] = created.json.vms;
    assert.ok(linux && debian);
    assert.equal((await stack.vm(linux.name)).provider, 'cmd');
    assert.equal((await stack.vm(debian.name)).provider, 'qemu');

    const ready = await Promise.all(
      created.json.vms.map((vm) => stack.client.api('GET', `/api/v1/vms/${vm.name}?wait=ready&timeout=240`)),
    );
    for (const [i, r] of ready.entries()) {
      const name = created.json.vms[i]!.name;
      assert.equal(r.status, 200, `${JSON.stringify(r.json)}\nits console:\n${consoleTail(name)}`);
    }
    // The command pool's VM is the sample's: its directory is under the sample's state dir.
    assert.ok(existsSync(path.join(cmdState, linux.name, 'meta.json')), 'the sample script made the VM');
    assert.equal(existsSync(path.join(stack.files.stateDir, linux.name)), false);
    for (const vm of created.json.vms) {
      const runner = stack.fake.runners(REPO).find((r) => r.name === vm.name);
      assert.equal(runner?.status, 'online', `runner ${vm.name} online`);
      assert.equal(runner.ephemeral, true);
    }

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
      assert.equal(j.runnerName, vm.name);
      assert.match(j.output, new RegExp(`ran on ${vm.name}`));
    }

    for (const vm of created.json.vms) await stack.waitState(vm.name, ['destroyed'], 60_000);
    const destroyed = await stack.client.control(
      { ...body, action: 'destroy' },
      { delivery: 'd-cmd-destroy-1' },
    );
    assert.equal(destroyed.status, 202);
    assert.deepEqual(
      destroyed.json.vms.map((v) => v.state),
      ['destroyed', 'destroyed'],
    );

    await stack.files.nothingLeft();
    assert.deepEqual(qemuPidsUnder(cmdState), [], 'no QEMU of the sample is left');
    assert.deepEqual(
      readdirSync(cmdState).filter((d) => !d.startsWith('.')),
      [],
      'no VM directory of the sample is left',
    );
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

  it("a failed create lands in the VM's audit trail with the executable's stderr; nothing is left", async () => {
    const body = { action: 'create', repository: REPO, run_id: 9102, run_attempt: 1, labels: ['full'] };
    const created = await stack.client.control(body);
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const name = created.json.vms[0]!.name;
    const vm = await stack.waitState(name, ['failed'], 60_000);
    assert.equal(
      vm.failure,
      'create failed: create ' + name + ': no capacity (exit 1); stderr: lab-3: 0 of 4 VM slots free',
    );
    const failed = (await stack.events(name)).find((e) => e.event === 'create_failed');
    assert.match(
      failed?.note ?? '',
      /not retryable: create \S+: no capacity \(exit 1\); stderr: lab-3: 0 of 4 VM slots free$/,
    );
    assert.deepEqual(await stack.service.store.listRegistrations({ live: true }), []);
    assert.equal(
      stack.fake.runners(REPO).some((r) => r.name === name),
      false,
      'its runner registration was removed',
    );
  });
});

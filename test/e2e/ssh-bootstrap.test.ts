// A pool with `bootstrap = "ssh"` end to end on a real QEMU VM: the tiny-ssh guest gets only a
// login key from the hypervisor; Hatchery waits for its sshd, pins its host key on first use,
// copies the bootstrap and its config over SFTP and starts it; the runner registers over the
// HTTP guest channel, a job runs, the VM is destroyed, and nothing is left — its key pair
// included.
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Stack } from '../helpers/stack.ts';

const REPO = 'octo-org/app';

describe('bootstrap = "ssh" (real QEMU VM, dropbear in the guest, HTTP channel)', () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start({ pools: [{ name: 'sshpool', labels: ['ssh'], bootstrap: 'ssh' }] });
  });
  after(async () => {
    await stack?.stop();
  });

  it('boots, bootstraps over SSH, runs a job and leaves nothing, key pair included', async () => {
    const body = { action: 'create', repository: REPO, run_id: 7301, run_attempt: 1, labels: ['ssh'] };
    const created = await stack.client.control(body);
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const name = created.json.vms[0]!.name;

    const ready = await stack.client.api('GET', `/api/v1/vms/${name}?wait=ready&timeout=240`);
    assert.equal(ready.status, 200, JSON.stringify(ready.json));
    const runner = stack.fake.runners(REPO).find((r) => r.name === name);
    assert.ok(runner, 'the runner registered');
    assert.equal(runner.status, 'online');

    // The VM reports over HTTP; its host key was pinned at first use; its key pair is private.
    const vm = await stack.vm(name);
    assert.deepEqual(vm.providerData.channel, { kind: 'http' });
    const pinned = vm.providerData.sshHostKey;
    assert.match(String(pinned), /^SHA256:[A-Za-z0-9+/]{43}$/);
    const keyFile = path.join(stack.files.sshKeysDir, `${name}.key`);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const events = await stack.events(name);
    const createdEvent = events.find((e) => e.event === 'created');
    assert.ok(
      createdEvent?.note.includes(
        `bootstrap started over SSH (host key ${String(pinned)} pinned now (first use))`,
      ),
      JSON.stringify(events),
    );

    const job = stack.fake.queueJob({
      repository: REPO,
      labels: ['self-hosted', name],
      name: 'over-ssh',
      script: 'echo "ran on the ssh-bootstrapped VM"',
    });
    const done = await stack.fake.waitForJob(job.id, { timeoutMs: 120_000 });
    assert.equal(done.conclusion, 'success', done.output);
    assert.equal(done.runnerName, name);
    assert.match(done.output, /ran on the ssh-bootstrapped VM/);

    await stack.waitState(name, ['destroyed'], 60_000);
    await stack.files.nothingLeft();
    assert.equal(existsSync(keyFile), false, 'the private key went with the VM');
    assert.deepEqual(
      (await stack.events(name)).map((e) => `${e.event}→${e.to}`),
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
    );
    assert.deepEqual(stack.fake.violations, []);
  });
});

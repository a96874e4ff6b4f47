// kill -9 of the service in the middle of an SSH bootstrap (bootstrap = "ssh", real QEMU VMs):
// the host key was pinned at first use, nothing copied yet. The restarted service resumes the
// provision step on the running VM and logs in again: when the guest still presents the pinned
// key, the bootstrap is copied and started and the runner serves its job; when the guest now
// presents another key (here: its sshd made a new one), the login is refused before anything
// is sent, and the VM fails with a reason that names both keys.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openSsh, runCommand } from '../../src/remote/ssh.ts';
import { ServiceProcess, StackFiles } from '../helpers/stack.ts';

const REPO = 'octo-org/resume';

describe('SSH bootstrap resumed after kill -9 (real VMs)', () => {
  let files: StackFiles;
  let svc: ServiceProcess;
  before(async () => {
    files = await StackFiles.create({ pools: [{ name: 'sshpool', labels: ['ssh'], bootstrap: 'ssh' }] });
    svc = new ServiceProcess(files);
  });
  after(async () => {
    await svc?.kill9();
    await files?.cleanup();
  });

  const control = (action: string, runId: number) =>
    svc.client.control({ action, repository: REPO, run_id: runId, run_attempt: 1, labels: ['ssh'] });

  /** Starts a VM and kills the service once its host key is pinned, before anything is copied. */
  async function crashAfterPinning(runId: number): Promise<{ name: string; pinned: string }> {
    await svc.start(60_000, { crashAt: 'ssh-host-key-pinned' });
    const name = (await control('create', runId)).json.vms[0]!.name;
    await svc.waitStopped();
    await svc.kill9();
    const vm = await svc.read((s) => s.getVm(name));
    const pinned = vm?.providerData.sshHostKey;
    assert.match(String(pinned), /^SHA256:/, 'the key was pinned before the crash');
    assert.equal(vm?.state, 'provisioning');
    assert.ok(files.leftovers().qemu.length >= 1, 'the VM outlives the service');
    return { name, pinned: String(pinned) };
  }

  /** Logs in to the VM as Hatchery would (its key, its forward), trusting the pinned key. */
  async function guestShell(name: string, expected: string, command: string): Promise<string> {
    const meta = JSON.parse(readFileSync(path.join(files.stateDir, name, 'meta.json'), 'utf8')) as {
      sshPort: number;
    };
    const privateKey = readFileSync(path.join(files.sshKeysDir, `${name}.key`));
    const conn = await openSsh(
      { host: '127.0.0.1', port: meta.sshPort, user: 'root', privateKey },
      { expected, readyTimeoutMs: 20_000 },
    );
    try {
      const r = await runCommand(conn.client, command, { timeoutMs: 20_000 });
      assert.equal(r.code, 0, r.output.lines(10).join('\n'));
      return r.output.lines(20).join('\n');
    } finally {
      conn.close();
    }
  }

  it('resumes on the pinned key and serves the job', async () => {
    const { name, pinned } = await crashAfterPinning(1);
    // Nothing was copied before the crash.
    assert.equal(
      await guestShell(name, pinned, `sh -c 'test -e .hatchery/started && echo yes || echo no'`),
      'no',
    );

    await svc.start();
    await svc.waitState(name, ['idle'], 180_000);
    const vm = await svc.read((s) => s.getVm(name));
    assert.equal(vm?.providerData.sshHostKey, pinned, 'the pinned key stays');
    const events = await svc.read(async (s) => s.listEvents(vm!.id));
    const created = events.find((e) => e.event === 'created');
    assert.ok(
      created?.note.includes(`bootstrap started over SSH (host key ${pinned} as pinned at first use)`),
      JSON.stringify(events),
    );
    const job = files.fake.queueJob({
      repository: REPO,
      labels: ['self-hosted', name],
      script: 'echo resumed',
    });
    const done = await files.fake.waitForJob(job.id, { timeoutMs: 120_000 });
    assert.equal(done.conclusion, 'success', done.output);
    await svc.waitState(name, ['destroyed'], 60_000);
    await svc.stop();
    await files.nothingLeft();
  });

  it('refuses a guest that presents another key on reconnect: the VM fails, nothing is sent', async () => {
    const { name, pinned } = await crashAfterPinning(2);
    // The machine behind the address changes its key: dropbear makes new host keys and restarts.
    await guestShell(
      name,
      pinned,
      `sh -c 'rm -f /etc/dropbear/*; kill "$(cat /run/dropbear.pid)"; sleep 0.5; dropbear -R -s -p 22 -P /run/dropbear.pid'`,
    );
    await assert.rejects(
      guestShell(name, pinned, 'true'),
      /host key mismatch/,
      'the guest has a new key now',
    );

    await svc.start();
    const vm = await svc
      .waitState(name, ['failed'], 120_000)
      .catch(async () => svc.read((s) => s.getVm(name)));
    assert.equal(vm?.state, 'failed', JSON.stringify(vm));
    assert.match(
      vm.failure ?? '',
      new RegExp(
        `^create failed: ssh root@127\\.0\\.0\\.1:\\d+: host key mismatch: expected ${pinned.replace(/[+/]/g, '\\$&')}, the server presented SHA256:`,
      ),
    );
    assert.match(vm.failure ?? '', /refused before logging in, nothing was sent$/);
    const events = await svc.read(async (s) => s.listEvents(vm.id));
    assert.equal(events.filter((e) => e.event === 'create_failed').length, 1, 'not retried');
    assert.equal(
      files.fake.runners(REPO).find((r) => r.name === name),
      undefined,
      'no runner was minted for it',
    );
    await svc.stop();
    await files.nothingLeft();
  });
});

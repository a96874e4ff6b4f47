// The Debian runner image (packer/debian-runner) end to end: built as an operator builds it
// (packer/debian-runner/build.sh, cached by its inputs' hash), then one whole lifecycle on it
// through Hatchery, three-job style: create → runner online → a job runs via the GitHub
// stand-in → the VM is destroyed → nothing is left. The job reports what the image is made of.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readConsole } from '../../src/providers/qemu/provider.ts';
import { buildDebianImage, type DebianImage } from '../helpers/debian-image.ts';
import { Stack } from '../helpers/stack.ts';

const REPO = 'octo-org/debian';
const LABEL = 'debian-runner';

// What the job prints: the image's identity, its apt sources, its tools, who runs the job.
const JOB_SCRIPT = [
  '. /etc/os-release && echo "os=$ID $VERSION_CODENAME"',
  'echo "user=$(id -un)"',
  'sudo -n true && echo sudo=yes',
  'for t in curl git tar gzip; do command -v "$t" >/dev/null && echo "tool=$t"; done',
  'command -v wget >/dev/null || echo "wget=absent"',
  'grep -h "^Suites:" /etc/apt/sources.list.d/*.sources',
  // The build upgraded from -updates and -security (apt's own log, kept in the image).
  'grep -q "full-upgrade" /var/log/apt/history.log && echo upgraded=yes',
].join('\n');

describe('debian-runner image (Packer): one lifecycle through Hatchery', () => {
  let image: DebianImage;
  let stack: Stack;

  before(async () => {
    // Minutes when an input changed: say what is happening.
    image = await buildDebianImage((step) => process.stderr.write(`debian-runner image: ${step}\n`));
    stack = await Stack.start({
      pools: [
        {
          name: 'debian',
          labels: [LABEL],
          image: image.name,
          memory: 1024,
          // A systemd boot under TCG: about 40 s on an idle machine, minutes on a busy one
          // (4+ min measured with the 2 cores shared by five jobs). Deadlines, not expectations.
          timeouts: { boot: 900 },
        },
      ],
    });
  });
  after(async () => {
    await stack?.stop();
  });

  it('create → runner online → job → destroyed, nothing left', async (t) => {
    t.diagnostic(
      `image ${image.name}: ${image.built ? 'built' : 'cached'} in ${(image.ms / 1000).toFixed(1)} s`,
    );
    const body = { action: 'create', repository: REPO, run_id: 7006, run_attempt: 1, labels: [LABEL] };
    const started = performance.now();
    const created = await stack.client.control(body, { delivery: 'd-debian-create' });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const [vm] = created.json.vms;
    assert.ok(vm && created.json.vms.length === 1);

    // A failure here is usually the image's: its boot is in the VM's console log.
    const consoleTail = async () =>
      `\n--- console:\n${(await readConsole(stack.files.stateDir, vm.name)) ?? ''}`;
    // The workflow's wait step repeats the long-poll while it answers 408 (curl --retry); so does
    // this one, each poll under fetch's 300 s limit on a reply, for at most the boot deadline.
    let ready = await stack.client.api('GET', `/api/v1/vms/${vm.name}?wait=ready&timeout=240`);
    for (let polls = 1; ready.status === 408 && polls < 4; polls++) {
      ready = await stack.client.api('GET', `/api/v1/vms/${vm.name}?wait=ready&timeout=240`);
    }
    assert.equal(ready.status, 200, JSON.stringify(ready.json) + (await consoleTail()));
    t.diagnostic(`create → runner online ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const runner = stack.fake.runners(REPO).find((r) => r.name === vm.name);
    assert.ok(runner, `runner ${vm.name} registered`);
    assert.equal(runner.status, 'online');
    assert.equal(runner.ephemeral, true);

    const job = stack.fake.queueJob({
      repository: REPO,
      labels: ['self-hosted', vm.name],
      name: 'facts',
      script: JOB_SCRIPT,
    });
    const done = await stack.fake.waitForJob(job.id, { timeoutMs: 300_000 });
    assert.equal(done.conclusion, 'success', done.output + (await consoleTail()));
    assert.equal(done.runnerName, vm.name);
    const out = done.output.split('\n');
    for (const line of [
      'os=debian bookworm',
      'user=runner',
      'sudo=yes',
      'tool=curl',
      'tool=git',
      'tool=tar',
      'tool=gzip',
      'wget=absent',
      'Suites: bookworm bookworm-updates',
      'Suites: bookworm-security',
      'upgraded=yes',
    ]) {
      assert.ok(out.includes(line), `the job printed no "${line}":\n${done.output}`);
    }
    // sudo looks the VM's own name up: it must resolve locally (the VM has no DNS).
    assert.doesNotMatch(done.output, /unable to resolve host/);

    // The ephemeral runner exits after its job, the VM powers off, Hatchery destroys it.
    await stack.waitState(vm.name, ['destroyed'], 300_000);
    const destroyed = await stack.client.control(
      { ...body, action: 'destroy' },
      { delivery: 'd-debian-destroy' },
    );
    assert.equal(destroyed.status, 202);
    assert.deepEqual(
      destroyed.json.vms.map((v) => v.state),
      ['destroyed'],
    );
    await stack.files.nothingLeft();
    assert.deepEqual(await stack.service.store.listRegistrations({ live: true }), []);
    assert.deepEqual(
      (await stack.events(vm.name)).map((e) => `${e.event}→${e.to}`),
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

// The end-to-end tests on Vagrant pools (Vagrant + vagrant-libvirt, the project's Vagrantfile
// and `tiny` box, TCG), guests reporting over the service's HTTP guest channel: the three-job
// workflow and SpinW's two legacy clients with the same flows and assertions as on QEMU
// (flows/), a `vagrant destroy` that fails once, and kill -9 of the service during a
// `vagrant up` and during a job. One private libvirtd for the whole file (scripts/libvirt.sh);
// at its end no domain, no QEMU, no libvirtd and no process is left in its namespace.
// Vagrant VMs boot in 30–60 s here: the scenarios share VMs where they can (6 boots in all,
// and one `vagrant up` cut short).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { processesIn } from '../../src/providers/vagrant/strays.ts';
import {
  failNextDestroy,
  PrivateLibvirtd,
  teardownMarks,
  vagrantLeftovers,
  vagrantSection,
} from '../helpers/libvirt.ts';
import { Relay } from '../helpers/legacy-clients.ts';
import { killAll } from '../helpers/processes.ts';
import {
  eventually,
  GUEST_SERVICE,
  ServiceProcess,
  Stack,
  StackFiles,
  type PoolSpec,
  type StackOptions,
} from '../helpers/stack.ts';
import {
  actionLifecycle,
  actionStackOptions,
  run,
  spinwUnsignedLifecycle,
  unsignedStackOptions,
} from './flows/legacy.ts';
import { threeJobWorkflow } from './flows/three-job.ts';

const root = mkdtempSync(path.join(tmpdir(), 'hatchery-vagrant-e2e-'));
let libvirtd: PrivateLibvirtd;

before(() => {
  libvirtd = PrivateLibvirtd.start(path.join(root, 'libvirt'));
});

after(() => {
  const left = libvirtd.stop();
  rmSync(root, { recursive: true, force: true });
  assert.deepEqual(left, { domains: [], survivors: [], libvirtd: [] }, 'left in the private libvirtd');
});

/** The vagrant provider's state dir, relative to a stack's own directory (removed with it). */
const VAGRANT_STATE = 'vagrant';
const projectDir = (files: StackFiles, vm: string) => path.join(files.dir, VAGRANT_STATE, vm);

/** A stack whose `vagrant` provider runs on this file's libvirtd; nothingLeft() covers its VMs. */
const onVagrant = (more: StackOptions = {}): StackOptions => ({
  providers: { vagrant: vagrantSection(libvirtd, VAGRANT_STATE) },
  leftovers: (files) => vagrantLeftovers(libvirtd, path.join(files.dir, VAGRANT_STATE)),
  ...more,
});
/** A Vagrant pool: its guests reach the stand-in GitHub and the service through forwards. */
const vagrantPool = (name: string): PoolSpec => ({
  name,
  labels: [name],
  provider: 'vagrant',
  channel: 'http',
});

describe("SpinW's own step (unsigned curl | jq) on a Vagrant pool; its `vagrant destroy` fails once", () => {
  let stack: Stack;
  let relay: Relay;
  before(async () => {
    stack = await Stack.start(unsignedStackOptions(onVagrant({ pools: [vagrantPool('linux')] })));
    relay = await Relay.start(() => stack.service.url);
  });
  after(async () => {
    await relay?.close();
    await stack?.stop();
  });

  it('passes with a runner on a Vagrant VM; the failed destroy is retried, the teardown ran once', async () => {
    const name = await spinwUnsignedLifecycle(stack, relay, run('8890001', '1'), {
      // The VM is idle (running): `vagrant destroy` runs the teardown trigger, then fails.
      beforeDestroy: (vm) => void failNextDestroy(projectDir(stack.files, vm)),
    });

    // The destroy step failed once (Vagrant's error in the audit trail), was retried after a
    // backoff, and succeeded.
    const events = await stack.events(name);
    assert.deepEqual(
      events.slice(-3).map((e) => `${e.event}→${e.to}`),
      ['destroy_requested→destroying', 'destroy_failed→destroying', 'destroy_done→destroyed'],
      JSON.stringify(events),
    );
    assert.match(
      events.at(-2)!.note,
      /vagrant destroy failed \(\d+\): .*injected destroy failure.*; retrying$/,
    );

    // The teardown trigger ran on the first attempt only: the guest's teardown hook stopped the
    // runner and powered the VM off, so the retry found it shut off. The provider keeps the
    // guest's console after the destroy.
    const console_ = (await stack.service.providers.named('vagrant')!.console!(name)) ?? '';
    assert.equal(teardownMarks(console_, name), 1, console_);
    assert.equal(console_.split('\n').filter((l) => l.includes('teardown: stopping the runner')).length, 1);
  });
});

describe('the distributhor/workflow-webhook action (signed) on a Vagrant pool', () => {
  let stack: Stack;
  let relay: Relay;
  before(async () => {
    stack = await Stack.start(actionStackOptions([vagrantPool('linux')], onVagrant()));
    relay = await Relay.start(() => stack.service.url);
  });
  after(async () => {
    await relay?.close();
    await stack?.stop();
  });

  it('creates runners for an unchanged SpinW workflow, runs its job, destroys on the same delivery id', () =>
    actionLifecycle(stack, relay, run('7790001', '42')));
});

describe('three-job workflow on Vagrant pools (control route, two labels, HTTP channel)', () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start(onVagrant({ pools: [vagrantPool('linux'), vagrantPool('debian')] }));
  });
  after(async () => {
    await stack?.stop();
  });

  it('boots a VM per label, runs a job on each, destroys both and leaves nothing', (t) =>
    threeJobWorkflow(stack, t, { runId: 9201, labels: ['linux', 'debian'] }));
});

// kill -9 of `hatchery serve` while VM A runs a job and VM B's `vagrant up` is under way.
// Every `vagrant` command runs in a process group of its own, so B's `up` outlives the service
// and would go on provisioning the guest with the dead process's config; a service manager
// would have killed it with the service's cgroup instead. Either way the restarted service
// finds a half-up project dir. The test holds the stray `up` where it is (SIGSTOP), so that the
// restart finds it mid-way however fast or slow the machine: the resumed create must end it,
// destroy the half-up VM and create it again. That second start stops at the `vm-created`
// crash point (the VM is up, `created` not recorded) and is killed too: the third start adopts
// B. A's job runs across the first kill; A is adopted, its job ends, it is destroyed.
describe('kill -9 of the service during `vagrant up` and during a job (Vagrant pool)', () => {
  let files: StackFiles;
  let svc: ServiceProcess;
  before(async () => {
    files = await StackFiles.create(onVagrant({ pools: [vagrantPool('linux')] }));
    svc = new ServiceProcess(files);
  });
  after(async () => {
    await svc?.kill9();
    // Only needed when the test failed: strays it held (they would stay stopped for good).
    if (files) killAll(processesIn(path.join(files.dir, VAGRANT_STATE)));
    await files?.cleanup();
  });

  const REPO = 'octo-org/crashy';
  const create = (runId: number) =>
    svc.client.control({
      action: 'create',
      repository: REPO,
      run_id: runId,
      run_attempt: 1,
      labels: ['linux'],
    });
  const health = `http://${GUEST_SERVICE.replace(/:80$/, '')}/healthz`;
  /**
   * A job that ends only once the service has gone away and come back (busybox wget in the
   * guest; under `timeout`: Debian's static busybox 1.35 wget crashes on its own -T).
   */
  const SPANS_A_RESTART = [
    `while timeout 5 wget -q -O /dev/null ${health}; do sleep 1; done`,
    'echo "the service is gone"',
    `until timeout 5 wget -q -O /dev/null ${health}; do sleep 1; done`,
    'echo survived',
  ].join('\n');
  const events = (name: string) => svc.read(async (s) => s.listEvents((await s.getVm(name))!.id));
  const pgid = (pid: number) => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  };
  const alive = (pid: number) => existsSync(`/proc/${pid}`);

  it('ends the stray `vagrant up` and starts B over, adopts B once up and A while busy, serves both jobs', async (t) => {
    await svc.start();
    // A: busy when the service dies.
    const a = (await create(1)).json.vms[0]!.name;
    await svc.waitState(a, ['idle'], 300_000);
    const jobA = files.fake.queueJob({
      repository: REPO,
      labels: ['self-hosted', a],
      script: SPANS_A_RESTART,
    });
    await files.fake.waitUntil(() => files.fake.job(jobA.id)?.status === 'in_progress', {
      timeoutMs: 60_000,
    });
    await svc.waitState(a, ['busy'], 30_000);

    // B: killed during its `vagrant up`, once libvirt has its domain (booting, not provisioned).
    const b = (await create(2)).json.vms[0]!.name;
    const bDir = projectDir(files, b);
    await eventually(() => (libvirtd.domains().includes(b) ? true : undefined), `a domain for ${b}`, 300_000);
    const firstDomain = libvirtd.virsh('domuuid', b).trim();
    await svc.kill9();
    const strays = processesIn(bDir);
    assert.ok(strays.length > 0, '`vagrant up` outlives the service');
    for (const group of new Set(strays.map(pgid))) process.kill(-group, 'SIGSTOP');
    t.diagnostic(`killed the service with A busy and B's vagrant up under way (held: ${strays.join(', ')})`);
    assert.equal((await svc.read((s) => s.getVm(b)))?.state, 'provisioning');
    assert.equal(existsSync(path.join(bDir, '.hatchery', 'up-done')), false, "B's up did not finish");
    const minted = files.fake.issuedJitConfigs().length;

    // Second start: A's job ends (the service is back); B's create starts over and stops at vm-created.
    await svc.start(60_000, { crashAt: 'vm-created' });
    const doneA = await files.fake.waitForJob(jobA.id, { timeoutMs: 120_000 });
    assert.equal(doneA.conclusion, 'success', doneA.output);
    assert.match(doneA.output, /the service is gone[\s\S]*survived/);
    await svc.waitStopped(400_000);
    await svc.kill9();
    assert.deepEqual(strays.filter(alive), [], 'the stray vagrant processes were ended');
    assert.notEqual(libvirtd.virsh('domuuid', b).trim(), firstDomain, 'the half-up VM was replaced');
    assert.ok(existsSync(path.join(bDir, '.hatchery', 'up-done')), "B's second up finished");
    assert.equal(existsSync(path.join(bDir, '.hatchery', 'guest-config')), false, 'no JIT config at rest');
    assert.equal(files.fake.issuedJitConfigs().length, minted + 1, 'B minted once more for its new VM');
    const said = readFileSync(files.logFile, 'utf8')
      .split('\n')
      .find((l) => l.includes('ended vagrant processes a dead service left') && l.includes(b));
    assert.ok(said, 'the service says it ended the stray processes');
    assert.equal(said.match(/"provider":/g)?.length, 1, `the provider named once: ${said}`);

    // Third start: B is up, not recorded: adopted (no third VM, no third runner config).
    await svc.start();
    await svc.waitState(b, ['idle'], 300_000);
    assert.equal(files.fake.issuedJitConfigs().length, minted + 1);
    assert.match((await events(b)).find((e) => e.event === 'created')?.note ?? '', /adopted/);
    const jobB = files.fake.queueJob({
      repository: REPO,
      labels: ['self-hosted', b],
      script: 'echo after-crash',
    });
    const doneB = await files.fake.waitForJob(jobB.id, { timeoutMs: 120_000 });
    assert.equal(doneB.conclusion, 'success', doneB.output);
    for (const vm of [a, b]) await svc.waitState(vm, ['destroyed'], 120_000);

    // The workflows' destroy jobs find nothing left to do.
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
    assert.deepEqual(await svc.read((s) => s.listRegistrations({ live: true })), []);

    // One job per VM, each on its own VM; no VM failed.
    assert.deepEqual(
      files.fake
        .jobs()
        .map((j) => j.runnerName)
        .sort(),
      [a, b].sort(),
    );
    for (const vm of [a, b]) {
      const trail = await events(vm);
      t.diagnostic(`${vm}: ${trail.map((e) => e.event).join(' ')}`);
      assert.equal(trail.at(-1)!.toState, 'destroyed');
      assert.ok(!trail.some((e) => e.toState === 'failed'), JSON.stringify(trail));
    }
    assert.ok((await events(a)).some((e) => e.event === 'job_finished'));
    assert.deepEqual(files.fake.violations, []);
    assert.equal(await svc.stop(), 0);
  });
});

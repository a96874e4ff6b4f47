// Warm pools on the in-memory provider, whose VMs are emulated guests that play linux.sh and the
// runner against the GitHub stand-in: a pool with min_idle boots VMs ahead without a JIT config;
// a queued job (a signed workflow_job webhook) or an explicit create takes one, its JIT config
// goes over the guest channel (virtio-style socket, and the HTTP channel's long-poll), the job
// runs on it, the pool is topped up; past warm_max_age a warm VM is replaced; a lowered min_idle
// retires the surplus; requests waiting for room evict warm VMs; a restart adopts them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { applyEvent } from '../../src/core/apply.ts';
import { isTerminal } from '../../src/model/states.ts';
import type { VmRecord } from '../../src/store/store.ts';
import { AppService } from '../helpers/app-service.ts';

const REPO = 'octo-org/warm';

async function until<T>(app: AppService, what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const warmOf = async (app: AppService, pool: string): Promise<VmRecord[]> =>
  (await app.service.store.warmVms()).filter((v) => v.pool === pool);

/** The pool's warm VMs once exactly `n` are warm (booted, waiting for a job). */
const warmReady = (app: AppService, pool: string, n: number): Promise<VmRecord[]> =>
  until(app, `${n} warm VMs in ${pool}`, async () => {
    const vms = await warmOf(app, pool);
    return vms.length === n && vms.every((v) => v.state === 'warm') ? vms : undefined;
  });

describe('warm pools (in-memory provider, emulated guests)', () => {
  let app: AppService;
  before(async () => {
    app = await AppService.start({
      pools: [
        { name: 'linux', labels: ['linux'], max_vms: 3, min_idle: 1 },
        { name: 'web', labels: ['web'], max_vms: 2, min_idle: 1, channel: 'http' },
        { name: 'cold', labels: ['cold'], max_vms: 2 },
      ],
      maxVms: 6,
      installations: [{ id: 7, account: 'octo-org' }],
    });
  });
  after(async () => {
    await app?.stop();
  });

  for (const [pool, channel] of [
    ['linux', 'unix socket (virtio-serial)'],
    ['web', 'HTTP channel long-poll'],
  ] as const) {
    it(`a queued job takes the warm VM (${channel}); its job runs there; the pool is topped up`, async () => {
      const [warm] = await warmReady(app, pool, 1);
      assert.deepEqual(warm!.runnerLabels, [], 'no runner, no labels until a job takes it');
      assert.equal(warm!.repository, '');
      const sender = app.fake.sendWebhooks({ url: `${app.service.url}/hooks/github`, secret: app.secret });
      const job = app.fake.queueJob({ repository: REPO, labels: ['self-hosted', pool], name: `on-${pool}` });
      const done = await app.fake.waitForJob(job.id, { timeoutMs: 60_000 });
      await sender.idle();
      assert.equal(done.conclusion, 'success', done.output);
      assert.equal(done.runnerName, warm!.name, 'the job ran on the warm VM');

      const row = (await app.service.store.getJob(job.id))!;
      assert.equal(row.vm, warm!.name, 'the job is bound to the VM it took');
      assert.equal(row.vmsCreated, 1);
      const vm = await until(app, `${warm!.name} to end`, async () => {
        const v = (await app.service.store.getVm(warm!.name))!;
        return isTerminal(v.state) ? v : undefined;
      });
      assert.equal(vm.state, 'destroyed', vm.failure ?? '');
      assert.equal(vm.source, 'github');
      assert.equal(vm.repository, REPO);
      assert.deepEqual(vm.runnerLabels, [pool, warm!.name]);
      const path = [...new Set((await app.service.store.listEvents(vm.id)).map((e) => e.toState))];
      // Then draining (the guest's job-finished) or straight to destroying (the `completed` webhook).
      assert.deepEqual(path.slice(0, 7), [
        'pending',
        'provisioning',
        'booting',
        'warm',
        'configuring',
        'idle',
        'busy',
      ]);
      // Topped up: a new warm VM, not the one taken.
      const [next] = await warmReady(app, pool, 1);
      assert.notEqual(next!.name, warm!.name);
      assert.deepEqual(await app.service.store.listRegistrations({ vmId: vm.id, live: true }), []);
    });
  }

  it('an explicit create takes a warm VM too: the answer names it, its runner comes online', async () => {
    const [warm] = await warmReady(app, 'linux', 1);
    const r = await app.service.intake.create({
      source: 'control',
      repository: REPO,
      labels: ['linux'],
      runId: '77',
      runAttempt: 1,
    });
    assert.equal(r.results[0]!.vm.name, warm!.name);
    assert.deepEqual(r.results[0]!.vm.runnerLabels, ['linux', warm!.name]);
    const online = await until(app, 'runner online', async () => {
      const v = (await app.service.store.getVm(warm!.name))!;
      return v.state === 'idle' ? v : undefined;
    });
    assert.equal(online.identity, `control:${REPO}:77:1:linux`);
    assert.ok(app.fake.runners().some((x) => x.name === warm!.name && x.status === 'online'));
    // A repeated request finds the same VM; destroy it as the workflow's last job does.
    const again = await app.service.intake.create({
      source: 'control',
      repository: REPO,
      labels: ['linux'],
      runId: '77',
      runAttempt: 1,
    });
    assert.equal(again.results[0]!.created, false);
    assert.equal(again.results[0]!.vm.name, warm!.name);
    await app.service.intake.destroy({
      source: 'control',
      repository: REPO,
      labels: ['linux'],
      runId: '77',
      runAttempt: 1,
      by: 'test',
    });
    await warmReady(app, 'linux', 1);
  });

  it('a pool without min_idle keeps none; its requests boot VMs as before', async () => {
    assert.deepEqual(await warmOf(app, 'cold'), []);
    const r = await app.service.intake.create({
      source: 'control',
      repository: REPO,
      labels: ['cold'],
      runId: '78',
      runAttempt: 1,
    });
    assert.equal(r.results[0]!.vm.state, 'pending');
    await app.service.intake.destroyByName(r.results[0]!.vm.name, 'test');
  });

  it('a warm VM past warm_max_age is recycled (destroyed, no failure) and replaced', async () => {
    const [warm] = await warmReady(app, 'linux', 1);
    const turnedWarm = (await app.service.store.listEvents(warm!.id)).find((e) => e.toState === 'warm')!;
    assert.equal(warm!.deadlineAt, turnedWarm.at + 3600 * 1000, 'due at warm_max_age (default 3600 s)');
    // The event the worker fires at that deadline (an hour is long for a test).
    await applyEvent(app.service.ctx, warm!.name, { type: 'timeout' });
    const gone = await until(app, 'recycled', async () => {
      const v = (await app.service.store.getVm(warm!.name))!;
      return isTerminal(v.state) ? v : undefined;
    });
    assert.equal(gone.state, 'destroyed');
    assert.equal(gone.failure, null);
    const [fresh] = await warmReady(app, 'linux', 1);
    assert.notEqual(fresh!.name, warm!.name);
  });

  it('a warm VM that dies is replaced', async () => {
    const [warm] = await warmReady(app, 'linux', 1);
    const provider = app.service.providers.named('sim')!;
    await provider.destroy(warm!.name); // behind the service's back: its guest channel closes
    const dead = await until(app, 'noticed', async () => {
      const v = (await app.service.store.getVm(warm!.name))!;
      return isTerminal(v.state) ? v : undefined;
    });
    assert.equal(dead.state, 'failed');
    assert.match(dead.failure ?? '', /while warm/);
    const [fresh] = await warmReady(app, 'linux', 1);
    assert.notEqual(fresh!.name, warm!.name);
  });

  it('a restart adopts warm VMs (none leaked, none doubled); a lowered min_idle retires the surplus', async () => {
    const [linux] = await warmReady(app, 'linux', 1);
    const [web] = await warmReady(app, 'web', 1);
    await app.restart((config) => {
      for (const p of config.pools as Record<string, unknown>[]) if (p.name === 'web') p.min_idle = 0;
    });
    const retired = await until(app, 'the surplus retired', async () => {
      const v = (await app.service.store.getVm(web!.name))!;
      return isTerminal(v.state) ? v : undefined;
    });
    assert.equal(retired.state, 'destroyed');
    assert.match(
      (await app.service.store.listEvents(retired.id)).map((e) => e.note).join('\n'),
      /warm pool: more than min_idle = 0/,
    );
    // The linux VM is the same one, still warm, its guest linked again: a job takes it.
    assert.deepEqual(
      (await warmReady(app, 'linux', 1)).map((v) => v.name),
      [linux!.name],
    );
    assert.ok(app.service.links.has(linux!.name), 'its guest channel was adopted');
    assert.deepEqual(await warmOf(app, 'web'), []);
    const sender = app.fake.sendWebhooks({ url: `${app.service.url}/hooks/github`, secret: app.secret });
    const job = app.fake.queueJob({
      repository: REPO,
      labels: ['self-hosted', 'linux'],
      name: 'after-restart',
    });
    const done = await app.fake.waitForJob(job.id, { timeoutMs: 60_000 });
    await sender.idle();
    assert.equal(done.runnerName, linux!.name);
    // Nothing at the provider that the store does not account for.
    await warmReady(app, 'linux', 1);
    const live = (await app.service.store.listVms()).filter((v) => !isTerminal(v.state)).map((v) => v.name);
    const running = (await app.service.providers.named('sim')!.list()).map((v) => v.name);
    assert.deepEqual(running.sort(), live.sort());
  });
});

// The reconciler's sweeps, one failure mode each, against a real SQLite store, the real QEMU
// provider's state directory and the GitHub stand-in: zombies, vanished VMs, registrations a
// destroy could not remove, and ghost registrations nobody recorded.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { applyEvent } from '../../src/core/apply.ts';
import type { CoreContext } from '../../src/core/context.ts';
import { GuestLinks } from '../../src/core/guest-links.ts';
import { Notifier } from '../../src/core/notifier.ts';
import { DELIVERY_RETENTION_MS, Reconciler } from '../../src/core/reconcile.ts';
import { createRunnersApi } from '../../src/github/runners.ts';
import { silentLogger } from '../../src/log.ts';
import { QemuProvider } from '../../src/providers/qemu/provider.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { FakeGitHub } from '../fakes/github/server.ts';
import { newVm } from '../helpers/vms.ts';

const REPO = 'octo/reconcile';
const TOKEN = 'ghp_reconciletoken00000000000000000000';

describe('reconciler sweeps', () => {
  let dir: string;
  let store: SqliteStore;
  let fake: FakeGitHub;
  let ctx: CoreContext;
  let reconciler: Reconciler;
  const github = () => createRunnersApi({ apiUrl: fake.url, token: TOKEN });

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hatchery-reconcile-'));
    store = new SqliteStore(path.join(dir, 'db.sqlite'));
    fake = await FakeGitHub.start({ tokens: [TOKEN] });
    const provider = new QemuProvider({
      stateDir: path.join(dir, 'vms'),
      instanceId: 'mine',
      accel: 'tcg',
      resolveImage: () => Promise.reject(new Error('no VM is created in these tests')),
    });
    const { config } = loadConfig({ env: {}, dotenv: false });
    ctx = {
      store,
      providerFor: () => provider,
      channelUrl: () => 'http://127.0.0.1:9',
      providers: () => [provider],
      runnersFor: () => github(),
      pools: config.pools,
      maxVms: 8,
      runnerDownload: null,
      runnerGroupId: 1,
      bootstraps: { linux: '', windows: '' },
      instanceId: 'mine',
      clock: Date.now,
      log: silentLogger(),
      notifier: new Notifier(),
    };
    // Ghosts on every pass here (20 in production).
    reconciler = new Reconciler(ctx, new GuestLinks(ctx), 60_000, 1);
  });
  after(async () => {
    await reconciler.stop();
    await store.close();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  let n = 0;
  async function vm(state: 'pending' | 'destroyed' | 'idle'): Promise<string> {
    n++;
    const name = `hatchery-linux-${n}-1-abc${n}00`.slice(0, 40);
    await store.insertVm(newVm(n, { name, repository: REPO, initialDeadline: 3600 }), Date.now());
    if (state === 'destroyed') await applyEvent(ctx, name, { type: 'destroy_requested', by: 'test' });
    if (state === 'idle') {
      for (const type of ['admitted', 'created', 'runner_registered'] as const)
        await applyEvent(ctx, name, { type });
    }
    return name;
  }

  /** A VM directory as the QEMU provider leaves it, with no QEMU running. */
  function vmDir(name: string, instanceId: string): string {
    const d = path.join(dir, 'vms', name);
    mkdirSync(d, { recursive: true });
    writeFileSync(
      path.join(d, 'meta.json'),
      JSON.stringify({
        name,
        instanceId,
        pool: 'linux',
        image: 'tiny',
        tags: {},
        createdAt: new Date().toISOString(),
      }),
    );
    return d;
  }

  it('destroys a zombie (a VM no live row owns) on its second sighting, never another installation’s', async () => {
    const ended = await vm('destroyed');
    const zombie = vmDir(ended, 'mine');
    const orphan = vmDir('hatchery-orphan-1-1-fff000', 'mine'); // no row at all
    const foreign = vmDir('hatchery-foreign-1-1-eee000', 'someone-else');
    const first = await reconciler.sweep();
    assert.deepEqual(first.zombiesDestroyed, [], 'a first sighting could be a create in flight');
    assert.ok(existsSync(zombie) && existsSync(orphan));
    const second = await reconciler.sweep();
    assert.deepEqual(second.zombiesDestroyed.sort(), [ended, 'hatchery-orphan-1-1-fff000'].sort());
    assert.ok(!existsSync(zombie) && !existsSync(orphan));
    assert.ok(existsSync(foreign), "another installation's VM is not ours to destroy");
  });

  it('forgets delivery ids older than the retention, keeps the recent ones', async () => {
    const now = Date.now();
    await store.recordDelivery('github', 'fifteen-days-old', now - 15 * 24 * 3600_000);
    await store.recordDelivery('github', 'thirteen-days-old', now - 13 * 24 * 3600_000);
    await store.recordDelivery('control', 'just-now', now);
    await reconciler.sweep();
    assert.equal(DELIVERY_RETENTION_MS, 14 * 24 * 3600_000);
    assert.equal(await store.deliverySeen('github', 'fifteen-days-old'), false);
    assert.equal(await store.deliverySeen('github', 'thirteen-days-old'), true);
    assert.equal(await store.deliverySeen('control', 'just-now'), true);
  });

  it('turns a VM the store runs but the provider lost into vm_exited, then destroys it', async () => {
    const lost = await vm('idle');
    const report = await reconciler.sweep();
    assert.deepEqual(report.vanished, [lost]);
    const row = (await store.getVm(lost))!;
    assert.equal(row.state, 'destroying');
    assert.equal(row.action, 'destroy', 'a worker carries the destroy out');
    assert.match(row.failure ?? '', /VM stopped unexpectedly while idle/);
  });

  it('removes a registration whose VM ended while GitHub was unreachable, once GitHub is back', async () => {
    const ended = await vm('destroyed');
    const jit = await github().generateJitConfig(REPO, { name: ended, labels: [ended], runnerGroupId: 1 });
    await store.recordRegistration({
      vmId: (await store.getVm(ended))!.id,
      repository: REPO,
      runnerId: jit.runnerId,
      runnerName: ended,
      createdAt: Date.now(),
    });
    const refused = `connect ECONNREFUSED 127.0.0.1:${new URL(fake.url).port}`;

    await fake.goOffline();
    const during = await reconciler.sweep();
    assert.equal(during.registrationsRemoved, 0);
    assert.equal(during.ghostsRemoved, 0);
    assert.deepEqual(during.errors, [
      `remove runner ${jit.runnerId} of ${ended}: delete runner ${jit.runnerId} of ${REPO}: ${refused}`,
      `ghost sweep of ${REPO}: list runners of ${REPO}: ${refused}`,
    ]);
    assert.deepEqual(
      (await store.listRegistrations({ live: true })).map((r) => r.runnerId),
      [jit.runnerId],
      'kept for the next pass',
    );
    assert.deepEqual(
      fake.runners(REPO).map((r) => r.name),
      [ended],
    );

    await fake.goOnline();
    const after = await reconciler.sweep();
    assert.equal(after.registrationsRemoved, 1);
    assert.equal(after.ghostsRemoved, 0);
    assert.deepEqual(after.errors, []);
    assert.deepEqual(
      fake.runners(REPO).map((r) => r.name),
      [],
    );
    assert.deepEqual(await store.listRegistrations({ live: true }), []);
  });

  it('removes ghost registrations of our ended VMs, and only those', async () => {
    const ended = await vm('destroyed'); // minted, then the service died before recording it
    const live = await vm('pending');
    const api = github();
    for (const name of [ended, live, 'hatchery-not-ours-1-1-ddd000', 'build-box-7']) {
      await api.generateJitConfig(REPO, { name, labels: [name], runnerGroupId: 1 });
    }
    const report = await reconciler.sweep();
    assert.equal(report.ghostsRemoved, 1);
    assert.deepEqual(
      fake
        .runners(REPO)
        .map((r) => r.name)
        .sort(),
      [live, 'hatchery-not-ours-1-1-ddd000', 'build-box-7'].sort(),
      'live VMs, unknown names and other runners are left alone',
    );
    assert.deepEqual(report.errors, []);
    assert.deepEqual(fake.violations, []);
  });
});

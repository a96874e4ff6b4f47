// Store tests on a real SQLite file each. Written as a contract (defineStoreContract) so the
// PostgreSQL store will run the very same tests.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { next, type LifecycleEvent, type Timeouts } from '../../src/core/lifecycle.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import type { Store, Transition, VmRecord } from '../../src/store/store.ts';
import { newVm } from '../helpers/vms.ts';

const T: Timeouts = { queue: 60, provision: 60, boot: 60, idle: 60, job: 60, drain: 60, warm: 60 };

/** The decide function the core uses: the pure lifecycle, applied to the row. */
const apply =
  (event: LifecycleEvent) =>
  (vm: VmRecord): Transition | null => {
    const o = next(vm, event, T);
    return o.kind === 'next' ? { event, decision: o.decision } : null;
  };

function defineStoreContract(kind: string, makeStore: () => Promise<Store>): void {
  describe(`${kind} store`, () => {
    it('deduplicates deliveries per source', async () => {
      const s = await makeStore();
      assert.equal(await s.recordDelivery('github', 'd1', 1), true);
      assert.equal(await s.recordDelivery('github', 'd1', 2), false);
      assert.equal(await s.recordDelivery('control', 'd1', 3), true);
    });

    it('forgets delivery ids received before a time, a bounded batch at a time', async () => {
      const s = await makeStore();
      for (let i = 0; i < 5; i++) await s.recordDelivery('github', `old-${i}`, 100 + i);
      await s.recordDelivery('control', 'recent', 1000);
      assert.equal(await s.pruneDeliveries(500, 3), 3, 'at most the batch');
      assert.equal(await s.pruneDeliveries(500, 3), 2);
      assert.equal(await s.pruneDeliveries(500, 3), 0);
      assert.equal(await s.deliverySeen('github', 'old-4'), false);
      assert.equal(await s.recordDelivery('github', 'old-4', 1001), true, 'a forgotten id is new again');
      assert.equal(await s.deliverySeen('control', 'recent'), true);
      assert.equal(
        await s.recordDelivery('control', 'recent', 1002),
        false,
        'a kept one is still a duplicate',
      );
    });

    it('inserts a VM once per live identity, and again after the first is destroyed', async () => {
      const s = await makeStore();
      const a = await s.insertVm(newVm(1), 1000);
      const b = await s.insertVm(newVm(1, { name: 'hatchery-other-name' }), 1001);
      assert.equal(a.created, true);
      assert.equal(b.created, false);
      assert.equal(b.vm.name, a.vm.name);
      assert.equal(a.vm.state, 'pending');
      assert.equal(a.vm.deadlineAt, 1000 + 60_000);
      await s.transition(a.vm.name, apply({ type: 'destroy_requested', by: 'test' }), 1002);
      const c = await s.insertVm(newVm(1, { name: 'hatchery-linux-1-1-abcdef-g2' }), 1003);
      assert.equal(c.created, true);
      assert.equal(await s.countByIdentity(newVm(1).identity), 2);
      assert.equal((await s.findByIdentity(newVm(1).identity))?.name, 'hatchery-linux-1-1-abcdef-g2');
    });

    it('writes a transition and its audit event in one step', async () => {
      const s = await makeStore();
      const { vm } = await s.insertVm(newVm(2), 1000);
      const r = await s.transition(vm.name, apply({ type: 'admitted' }), 2000);
      assert.equal(r.applied, true);
      assert.equal(r.vm?.state, 'provisioning');
      assert.equal(r.vm?.action, 'provision');
      assert.equal(r.vm?.deadlineAt, 2000 + 60_000);
      const events = await s.listEvents(vm.id);
      assert.deepEqual(
        events.map((e) => [e.event, e.fromState, e.toState]),
        [
          ['requested', 'pending', 'pending'],
          ['admitted', 'pending', 'provisioning'],
        ],
      );
    });

    it('writes nothing for an ignored event', async () => {
      const s = await makeStore();
      const { vm } = await s.insertVm(newVm(3), 1000);
      const r = await s.transition(vm.name, apply({ type: 'job_started' }), 2000);
      assert.equal(r.applied, false);
      assert.equal((await s.listEvents(vm.id)).length, 1);
    });

    it('refuses a transition outside the table', async () => {
      const s = await makeStore();
      const { vm } = await s.insertVm(newVm(4), 1000);
      const bogus = (v: VmRecord): Transition => ({
        event: { type: 'created' },
        decision: { ...v, state: 'busy', action: null, delayMs: 0, deadline: null, note: 'bogus' },
      });
      await assert.rejects(s.transition(vm.name, bogus, 2000), /pending → busy is not an allowed transition/);
      assert.equal((await s.getVm(vm.name))?.state, 'pending');
    });

    it('leases a due action to one claimant only, and takes over an expired lease', async () => {
      const s = await makeStore();
      const { vm } = await s.insertVm(newVm(5), 1000);
      await s.transition(vm.name, apply({ type: 'admitted' }), 1000);
      const first = await s.claim('w1', 2000, 10_000, 10);
      const second = await s.claim('w2', 2001, 10_000, 10);
      assert.deepEqual(
        first.map((v) => v.name),
        [vm.name],
      );
      assert.deepEqual(second, []);
      const taken = await s.claim('w2', 12_001, 10_000, 10);
      assert.equal(taken[0]?.leaseOwner, 'w2');
      // The first worker's late result is refused (compare-and-set on the lease).
      const late = await s.transition(vm.name, apply({ type: 'created' }), 12_002, {
        owner: 'w1',
        expiresAt: 12_000,
      });
      assert.equal(late.leaseLost, true);
      assert.equal(late.vm?.state, 'provisioning');
      const ok = await s.transition(vm.name, apply({ type: 'created' }), 12_003, {
        owner: 'w2',
        expiresAt: taken[0]!.leaseExpiresAt!,
      });
      assert.equal(ok.applied, true);
      assert.equal(ok.vm?.state, 'booting');
      assert.equal(ok.vm?.leaseOwner, null, 'the lease is released with the result');
    });

    it('does not claim an action before its backoff ends', async () => {
      const s = await makeStore();
      const { vm } = await s.insertVm(newVm(6), 1000);
      await s.transition(vm.name, apply({ type: 'admitted' }), 1000);
      const [c] = await s.claim('w', 1000, 5000, 1);
      await s.transition(vm.name, apply({ type: 'create_failed', error: 'x', retryable: true }), 1100, {
        owner: 'w',
        expiresAt: c!.leaseExpiresAt!,
      });
      assert.deepEqual(await s.claim('w', 1500, 5000, 1), []);
      assert.equal((await s.claim('w', 2100, 5000, 1)).length, 1);
    });

    it('renews a held lease only', async () => {
      const s = await makeStore();
      const { vm } = await s.insertVm(newVm(7), 1000);
      await s.transition(vm.name, apply({ type: 'admitted' }), 1000);
      const [c] = await s.claim('w', 1000, 5000, 1);
      const renewed = await s.renew(vm.name, { owner: 'w', expiresAt: c!.leaseExpiresAt! }, 5000, 3000);
      assert.deepEqual(renewed, { owner: 'w', expiresAt: 8000 });
      assert.equal(await s.renew(vm.name, { owner: 'x', expiresAt: 8000 }, 5000, 3000), null);
    });

    it('lists VMs whose deadline passed, live ones only', async () => {
      const s = await makeStore();
      const a = await s.insertVm(newVm(8), 1000);
      await s.insertVm(newVm(9), 50_000);
      assert.deepEqual(
        (await s.due(61_000)).map((v) => v.name),
        [a.vm.name],
      );
      await s.transition(a.vm.name, apply({ type: 'destroy_requested', by: 't' }), 61_000);
      assert.deepEqual(await s.due(61_001), []);
    });

    it('keeps provider data, guest seq and runner registrations', async () => {
      const s = await makeStore();
      const { vm } = await s.insertVm(newVm(10), 1000);
      await s.setProviderData(vm.name, { channel: { kind: 'unix', path: '/x' } }, 1001);
      await s.setProviderData(vm.name, { pid: 42 }, 1002);
      // Guest messages are taken once and in order, whether they carry a lifecycle event or not.
      const seq = async (n: number) => (await s.transition(vm.name, () => null, 1003, undefined, n)).guest;
      assert.deepEqual(
        [await seq(1), await seq(2), await seq(2), await seq(5), await seq(3)],
        ['next', 'next', 'duplicate', 'gap', 'next'],
      );
      const got = await s.getVm(vm.name);
      assert.deepEqual(got?.providerData, { channel: { kind: 'unix', path: '/x' }, pid: 42 });
      assert.equal(got?.guestSeq, 3);
      await s.recordRegistration({
        vmId: vm.id,
        repository: 'o/r',
        runnerId: 7,
        runnerName: vm.name,
        createdAt: 1,
      });
      assert.equal((await s.listRegistrations({ live: true })).length, 1);
      await s.markRegistrationRemoved(vm.id, 7, 5);
      assert.equal((await s.listRegistrations({ live: true })).length, 0);
      assert.equal((await s.listRegistrations({ vmId: vm.id }))[0]?.removedAt, 5);
    });

    it('lists every match unless a limit is given, newest first, in pages by id', async () => {
      const s = await makeStore();
      const names: string[] = [];
      for (let i = 0; i < 1205; i++) names.push((await s.insertVm(newVm(1000 + i), 1000)).vm.name);
      const all = await s.listVms({ states: ['pending'] });
      assert.equal(all.length, 1205, 'no silent cap');
      assert.deepEqual(
        all.map((v) => v.name),
        [...names].reverse(),
      );
      const seen: string[] = [];
      let before: number | undefined;
      for (;;) {
        const page = await s.listVms({ limit: 500, ...(before ? { before } : {}) });
        seen.push(...page.map((v) => v.name));
        if (page.length < 500) break;
        before = page.at(-1)!.id;
      }
      assert.deepEqual(seen, [...names].reverse());
      assert.deepEqual(
        (await s.getVms([names[3]!, 'hatchery-absent', names[1200]!])).map((v) => v.name).sort(),
        [names[3]!, names[1200]!].sort(),
      );
    });

    it('writes asked for together (one turn of the event loop) each succeed or fail alone, in order', async () => {
      const s = await makeStore();
      const [a, b, c] = await Promise.all([newVm(30), newVm(31), newVm(32)].map((v) => s.insertVm(v, 1000)));
      const bogus = (v: VmRecord): Transition => ({
        event: { type: 'created' },
        decision: { ...v, state: 'busy', action: null, delayMs: 0, deadline: null, note: 'bogus' },
      });
      // Not awaited one by one: issued in the same turn, as a burst of requests or guest messages.
      const writes = [
        s.transition(a!.vm.name, apply({ type: 'admitted' }), 2000),
        s.transition(b!.vm.name, bogus, 2000),
        s.insertVms([newVm(33)], 2000, { source: 'control', id: 'd-together' }),
        // A request whose second VM cannot be written (its name is taken): none of it is.
        s.insertVms([newVm(34), newVm(35, { name: c!.vm.name })], 2000, { source: 'control', id: 'd-half' }),
        s.transition(c!.vm.name, apply({ type: 'admitted' }), 2000),
        // The same VM twice: the second sees the first's write (admitted, then a destroy asked for).
        s.transition(a!.vm.name, apply({ type: 'destroy_requested', by: 'test' }), 2001),
      ];
      const settled = await Promise.allSettled(writes);
      assert.deepEqual(
        settled.map((r) => r.status),
        ['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
      );
      assert.match(String((settled[1] as PromiseRejectedResult).reason), /pending → busy is not an allowed/);
      assert.equal((await s.getVm(b!.vm.name))?.state, 'pending', 'the refused one changed nothing');
      assert.deepEqual(
        (await s.listEvents(b!.vm.id)).map((e) => e.event),
        ['requested'],
      );
      assert.equal(
        await s.findByIdentity(newVm(34).identity),
        null,
        'a request is written whole or not at all',
      );
      assert.equal(await s.recordDelivery('control', 'd-half', 2002), true);
      assert.equal((await s.getVm(c!.vm.name))?.state, 'provisioning');
      assert.equal((await s.findByIdentity(newVm(33).identity))?.state, 'pending');
      assert.equal(await s.recordDelivery('control', 'd-together', 2002), false, 'its delivery was recorded');
      assert.deepEqual(
        (await s.listEvents(a!.vm.id)).map((e) => `${e.fromState}→${e.toState}`),
        ['pending→pending', 'pending→provisioning', 'provisioning→provisioning'],
      );
      assert.equal((await s.getVm(a!.vm.name))?.destroyRequested, true);
    });

    it('records a request whole: its VMs and its delivery id in one transaction', async () => {
      const s = await makeStore();
      const one = await s.insertVms([newVm(20), newVm(21)], 1000, { source: 'control', id: 'd-1' });
      assert.deepEqual(
        one.results.map((r) => r.created),
        [true, true],
      );
      assert.equal(one.duplicate, false);
      assert.deepEqual(one.results[0]!.vm, await s.getVm(one.results[0]!.vm.name), 'the row as written');
      const again = await s.insertVms([newVm(20)], 1001, { source: 'control', id: 'd-1' });
      assert.deepEqual(
        [again.results[0]!.created, again.results[0]!.vm.name, again.duplicate],
        [false, one.results[0]!.vm.name, true],
      );
    });

    it('returns the row as written by a transition (the same as reading it back)', async () => {
      const s = await makeStore();
      const { vm } = await s.insertVm(newVm(22), 1000);
      const r = await s.transition(vm.name, apply({ type: 'admitted' }), 2000, undefined, 1);
      assert.equal(r.guest, 'next');
      assert.deepEqual(r.vm, await s.getVm(vm.name));
      const lease = { owner: 'w', expiresAt: 0 };
      const [claimed] = await s.claim('w', 3000, 1000, 1);
      lease.expiresAt = claimed!.leaseExpiresAt!;
      const done = await s.transition(vm.name, apply({ type: 'created' }), 3500, lease);
      assert.equal(done.vm?.leaseOwner, null);
      assert.deepEqual(done.vm, await s.getVm(vm.name));
    });

    it("erases a legacy VM's credential once it has ended and no registration is left", async () => {
      const s = await makeStore();
      const { vm } = await s.insertVm(newVm(23, { credential: 'U2FsdGVkX1-secret' }), 1000);
      await s.recordRegistration({
        vmId: vm.id,
        repository: 'o/r',
        runnerId: 9,
        runnerName: vm.name,
        createdAt: 1,
      });
      for (const e of [
        { type: 'admitted' },
        { type: 'created' },
        { type: 'destroy_requested', by: 't' },
        { type: 'destroy_done' },
      ] as LifecycleEvent[])
        await s.transition(vm.name, apply(e), 2000);
      const ended = await s.getVm(vm.name);
      assert.equal(ended?.state, 'destroyed');
      assert.equal(ended?.credential, 'U2FsdGVkX1-secret', 'still needed: a registration is left');
      assert.deepEqual(
        (await s.listRegistrations({ live: true, ofEndedVms: true })).map((r) => r.runnerId),
        [9],
      );
      await s.markRegistrationRemoved(vm.id, 9, 3000);
      assert.equal((await s.getVm(vm.name))?.credential, null);
      // A row that ended before this rule existed is erased at start-up.
      const { vm: old } = await s.insertVm(newVm(24, { credential: 'U2FsdGVkX1-old' }), 1000);
      await s.transition(old.name, apply({ type: 'destroy_requested', by: 't' }), 1001);
      assert.equal((await s.getVm(old.name))?.credential, null, 'pending → destroyed: erased at once');
      assert.equal(await s.eraseSpentCredentials(), 0);
    });
  });
}

const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-store-'));
const opened: SqliteStore[] = [];
after(async () => {
  // Close every database before removing its directory: an open handle would keep the WAL.
  for (const s of opened) await s.close();
  rmSync(dir, { recursive: true, force: true });
});
let n = 0;
defineStoreContract('sqlite', async () => {
  const s = new SqliteStore(path.join(dir, `t${++n}.db`));
  opened.push(s);
  return s;
});

describe('sqlite writes', () => {
  it('a transition rewrites only the columns it changes: no index page for an unchanged column', async () => {
    // SQLite rewrites every index on a column named in an UPDATE's SET, even to the same value;
    // each page it touches is a WAL frame at the commit. A guest message that only advances the
    // guest's sequence number changes one row of the table and no indexed column: one frame.
    const file = path.join(dir, 'frames.db');
    const s = new SqliteStore(file);
    opened.push(s);
    const vms = await Promise.all(Array.from({ length: 50 }, (_, i) => s.insertVm(newVm(900 + i), 1000)));
    for (const { vm } of vms) await s.transition(vm.name, apply({ type: 'admitted' }), 1001);
    const frames = () => (statSync(`${file}-wal`).size - 32) / (4096 + 24);
    const before = frames();
    const r = await s.transition(vms[7]!.vm.name, () => null, 1002, undefined, 1);
    assert.equal(r.vm?.guestSeq, 1);
    assert.equal(frames() - before, 1);
    // A state change writes its audit event and the indexes on the columns that changed, and
    // leaves the row as the next read sees it.
    const t = await s.transition(vms[7]!.vm.name, apply({ type: 'destroy_requested', by: 'test' }), 1003);
    const got = await s.getVm(vms[7]!.vm.name);
    assert.deepEqual(got, t.vm);
    assert.equal(got?.guestSeq, 1);
  });
});

describe('sqlite migrations', () => {
  it('applies each migration once, and records the schema version', async () => {
    const file = path.join(dir, 'migrate.db');
    const a = new SqliteStore(file);
    opened.push(a);
    assert.equal(a.schemaVersion(), 4);
    assert.deepEqual(a.migrate(), [], 'a second run applies nothing');
    const b = new SqliteStore(file);
    opened.push(b);
    assert.equal(b.schemaVersion(), 4);
  });
});

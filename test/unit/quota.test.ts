// Admission's rules (core/quota.ts), one test per rule in the order the module states them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { admit, queueOrder, tenantOf, vmWeight, type Limits, type Usage } from '../../src/core/quota.ts';

const p = (name: string, pool: string, tenant = '') => ({ name, pool, tenant });
const use = (perPool: Record<string, number>, more: Partial<Usage> = {}): Usage => ({
  perPool,
  starting: 0,
  perTenant: {},
  ...more,
});
/** Fair share, every VM weighing 1, quotas as given (default none). */
const fair = (base: Omit<Limits, 'tenants'>, quotas: Record<string, number> = {}): Limits => ({
  ...base,
  tenants: { weight: {}, quota: (t) => quotas[t] ?? Infinity },
});

describe('admit: without tenants (oldest first)', () => {
  it('admits oldest first up to the pool limit', () => {
    assert.deepEqual(
      admit([p('a', 'l'), p('b', 'l'), p('c', 'l')], use({ l: 1 }), { total: 10, perPool: { l: 2 } }),
      ['a'],
    );
  });
  it('does not let a full pool block another pool', () => {
    assert.deepEqual(
      admit([p('a', 'full'), p('b', 'free')], use({ full: 1 }), { total: 10, perPool: { full: 1, free: 1 } }),
      ['b'],
    );
  });
  it('respects the overall limit across pools', () => {
    assert.deepEqual(
      admit([p('a', 'x'), p('b', 'y'), p('c', 'y')], use({ x: 1 }), { total: 3, perPool: { x: 5, y: 5 } }),
      ['a', 'b'],
    );
  });
  it('admits nothing for a pool without a limit', () => {
    assert.deepEqual(admit([p('a', 'gone')], use({}), { total: 3, perPool: {} }), []);
  });
  it('ignores tenants: one tenant may take every slot', () => {
    const pending = [p('a1', 'l', 'a'), p('a2', 'l', 'a'), p('b1', 'l', 'b')];
    assert.deepEqual(admit(pending, use({}), { total: 2, perPool: { l: 9 } }), ['a1', 'a2']);
  });
});

describe('admit: the cap on VMs starting at once (max_provisioning)', () => {
  it('counts those starting now and each one admitted', () => {
    const pending = [p('a', 'l'), p('b', 'l'), p('c', 'l')];
    assert.deepEqual(
      admit(pending, use({ l: 3 }, { starting: 1 }), { total: 9, perPool: { l: 9 }, starting: 2 }),
      ['a'],
    );
    assert.deepEqual(
      admit(pending, use({ l: 3 }, { starting: 2 }), { total: 9, perPool: { l: 9 }, starting: 2 }),
      [],
    );
  });
  it('counts only starting VMs, not all that run', () => {
    // 5 VMs run, none starting: the cap of 2 lets 2 start.
    const pending = [p('a', 'l'), p('b', 'l'), p('c', 'l')];
    assert.deepEqual(admit(pending, use({ l: 5 }), { total: 9, perPool: { l: 9 }, starting: 2 }), ['a', 'b']);
  });
});

describe('admit: fair share across tenants', () => {
  it('gives freed capacity to the tenant using the least, not to the oldest request', () => {
    // a holds 3, b holds 0; a's requests are older: b still goes first.
    const pending = [p('a4', 'l', 'a'), p('a5', 'l', 'a'), p('b1', 'l', 'b'), p('b2', 'l', 'b')];
    const usage = use({ l: 3 }, { perTenant: { a: 3 } });
    assert.deepEqual(admit(pending, usage, fair({ total: 5, perPool: { l: 9 } })), ['b1', 'b2']);
  });
  it('alternates between tenants once they are even, oldest first on a tie', () => {
    const pending = [
      p('a1', 'l', 'a'),
      p('a2', 'l', 'a'),
      p('a3', 'l', 'a'),
      p('b1', 'l', 'b'),
      p('b2', 'l', 'b'),
    ];
    assert.deepEqual(admit(pending, use({}), fair({ total: 4, perPool: { l: 9 } })), [
      'a1',
      'b1',
      'a2',
      'b2',
    ]);
  });
  it('weighs VMs: a tenant running one big VM waits behind one running two small ones', () => {
    const limits: Limits = {
      total: 9,
      perPool: { big: 9, small: 9 },
      tenants: { weight: { big: vmWeight(4096, 1.25), small: vmWeight(1024, 1.25) }, quota: () => Infinity },
    };
    // a: one 4-GiB VM (weight 5.66); b: two 1-GiB VMs (weight 2): b is the lesser user.
    const usage = use({ big: 1, small: 2 }, { perTenant: { a: vmWeight(4096, 1.25), b: 2 } });
    assert.deepEqual(admit([p('a2', 'small', 'a'), p('b3', 'small', 'b')], usage, { ...limits, total: 4 }), [
      'b3',
    ]);
  });
  it('keeps each tenant within its quota, in weight, without blocking the others', () => {
    const pending = [p('a2', 'l', 'a'), p('a3', 'l', 'a'), p('b1', 'l', 'b')];
    const usage = use({ l: 1 }, { perTenant: { a: 1 } });
    assert.deepEqual(admit(pending, usage, fair({ total: 9, perPool: { l: 9 } }, { a: 2 })), ['b1', 'a2']);
  });
  it('still respects the pool and global limits', () => {
    const pending = [p('a1', 'x', 'a'), p('b1', 'x', 'b'), p('b2', 'y', 'b')];
    assert.deepEqual(admit(pending, use({ x: 1 }), fair({ total: 2, perPool: { x: 1, y: 5 } })), ['b2']);
  });
  it('never drops: what is not admitted now is admitted when room frees', () => {
    const pending = [p('a1', 'l', 'a'), p('a2', 'l', 'a'), p('b1', 'l', 'b')];
    const first = admit(pending, use({}), fair({ total: 1, perPool: { l: 1 } }));
    assert.deepEqual(first, ['a1']);
    const rest = pending.filter((v) => !first.includes(v.name));
    assert.deepEqual(admit(rest, use({}), fair({ total: 9, perPool: { l: 9 } })), ['a2', 'b1']);
  });
});

describe('queueOrder', () => {
  it('is the order admit takes them, capacity aside', () => {
    const pending = [p('a1', 'l', 'a'), p('a2', 'l', 'a'), p('b1', 'l', 'b')];
    const usage = use({ l: 4 }, { perTenant: { a: 4 } });
    assert.deepEqual(queueOrder(pending, usage, fair({ total: 4, perPool: { l: 4 } }, { a: 4 })), [
      'b1',
      'a1',
      'a2',
    ]);
    assert.deepEqual(queueOrder(pending, usage, { total: 4, perPool: { l: 4 } }), ['a1', 'a2', 'b1']);
  });
});

describe('tenants and weights', () => {
  it('a tenant is the owner or the repository, case-insensitively', () => {
    assert.equal(tenantOf('Octo-Org/App', 'owner'), 'octo-org');
    assert.equal(tenantOf('Octo-Org/App', 'repository'), 'octo-org/app');
  });
  it('a VM weighs memory_GiB ^ exponent', () => {
    assert.equal(vmWeight(1024, 1.25), 1);
    assert.ok(Math.abs(vmWeight(4096, 1.25) - 4 ** 1.25) < 1e-12);
    assert.equal(vmWeight(2048, 1), 2);
  });
});

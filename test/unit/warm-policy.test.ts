// The warm pool policy: what to boot ahead and what to retire, from counts alone (no I/O).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planWarmPools, type WarmPoolView } from '../../src/core/warm-policy.ts';
import type { VmState } from '../../src/model/states.ts';

type Over = Partial<Omit<WarmPoolView, 'warm'>> & { warm?: [string, VmState][] };
const pool = ({ warm = [], ...over }: Over = {}): WarmPoolView => ({
  pool: 'linux',
  minIdle: 2,
  maxVms: 4,
  active: 0,
  pending: 0,
  ...over,
  warm: warm.map(([name, state]) => ({ name, state })),
});

describe('planWarmPools: deficit', () => {
  it('boots min_idle VMs into an empty pool', () => {
    assert.deepEqual(planWarmPools([pool()], 8), { boot: { linux: 2 }, retire: [] });
  });
  it('counts warm VMs in every state before destroying, started or not', () => {
    const p = pool({
      active: 1,
      pending: 1,
      warm: [
        ['a', 'pending'],
        ['b', 'booting'],
      ],
    });
    assert.deepEqual(planWarmPools([p], 8), { boot: {}, retire: [] });
    assert.deepEqual(planWarmPools([pool({ active: 1, warm: [['a', 'warm']] })], 8).boot, { linux: 1 });
  });
  it("stays within the pool's max_vms, what runs and what waits counted", () => {
    assert.deepEqual(planWarmPools([pool({ maxVms: 4, active: 3 })], 8).boot, { linux: 1 });
    assert.deepEqual(planWarmPools([pool({ maxVms: 4, active: 4 })], 8).boot, {});
  });
  it('stays within the global limit, across pools in order', () => {
    const plan = planWarmPools([pool({ pool: 'a' }), pool({ pool: 'b' })], 3);
    assert.deepEqual(plan.boot, { a: 2, b: 1 });
  });
  it('boots nothing into room a pending request waits for', () => {
    // 4 slots, 2 busy, 2 requests waiting: no room for a guess.
    assert.deepEqual(planWarmPools([pool({ active: 2, pending: 2 })], 8), { boot: {}, retire: [] });
    assert.deepEqual(
      planWarmPools(
        [pool({ pool: 'a', active: 0, pending: 0 }), pool({ pool: 'b', minIdle: 0, pending: 3 })],
        4,
      ).boot,
      { a: 1 },
    );
  });
  it('keeps nothing for a pool with min_idle 0', () => {
    assert.deepEqual(planWarmPools([pool({ minIdle: 0 })], 8), { boot: {}, retire: [] });
  });
});

describe('planWarmPools: surplus', () => {
  it('retires warm VMs beyond min_idle, the oldest warm one first', () => {
    const p = pool({
      minIdle: 1,
      active: 3,
      warm: [
        ['old', 'warm'],
        ['mid', 'warm'],
        ['new', 'warm'],
      ],
    });
    assert.deepEqual(
      planWarmPools([p], 8).retire.map((r) => r.name),
      ['old', 'mid'],
    );
  });
  it('retires those that cost least first: not started, then booting (newest first), then warm', () => {
    const p = pool({
      minIdle: 0,
      active: 4,
      pending: 1,
      warm: [
        ['w', 'warm'],
        ['b1', 'booting'],
        ['p', 'pending'],
        ['b2', 'booting'],
      ],
    });
    const plan = planWarmPools([p], 8);
    assert.deepEqual(
      plan.retire.map((r) => r.name),
      ['p', 'b2', 'b1', 'w'],
    );
    assert.match(plan.retire[0]!.why, /more than min_idle = 0/);
  });
  it('retires every warm VM of a pool no longer configured (min_idle 0, max_vms 0)', () => {
    const p = pool({ pool: 'gone', minIdle: 0, maxVms: 0, active: 1, warm: [['x', 'warm']] });
    assert.deepEqual(
      planWarmPools([p], 8).retire.map((r) => r.name),
      ['x'],
    );
  });
  it('does not replace what it retires in the same pass', () => {
    const p = pool({
      minIdle: 1,
      active: 2,
      warm: [
        ['a', 'warm'],
        ['b', 'warm'],
      ],
    });
    assert.deepEqual(planWarmPools([p], 8).boot, {});
  });
});

describe('planWarmPools: real work first', () => {
  it("evicts the pool's warm VMs for its requests waiting for room they hold", () => {
    // max 2, both slots warm, 3 jobs waiting: 2 could run.
    const p = pool({
      maxVms: 2,
      active: 2,
      pending: 3,
      warm: [
        ['a', 'booting'],
        ['b', 'warm'],
      ],
    });
    const plan = planWarmPools([p], 8);
    assert.deepEqual(plan.retire.map((r) => r.name).sort(), ['a', 'b']);
    assert.match(plan.retire[0]!.why, /wait for the room/);
    assert.deepEqual(plan.boot, {});
  });
  it('evicts only as many as the waiting requests need, oldest first', () => {
    const p = pool({
      maxVms: 3,
      active: 3,
      pending: 1,
      warm: [
        ['a', 'warm'],
        ['b', 'warm'],
      ],
    });
    assert.deepEqual(
      planWarmPools([p], 8).retire.map((r) => r.name),
      ['a'],
    );
  });
  it('evicts nothing while there is room: the worker admits the request', () => {
    const p = pool({
      maxVms: 4,
      active: 2,
      pending: 1,
      warm: [
        ['a', 'warm'],
        ['b', 'warm'],
      ],
    });
    assert.deepEqual(planWarmPools([p], 8).retire, []);
  });
  it("evicts another pool's warm VMs when the global limit keeps a request out", () => {
    const a = pool({
      pool: 'a',
      minIdle: 2,
      maxVms: 4,
      active: 2,
      warm: [
        ['a1', 'warm'],
        ['a2', 'warm'],
      ],
    });
    const b = pool({ pool: 'b', minIdle: 0, maxVms: 4, active: 0, pending: 1 });
    const plan = planWarmPools([a, b], 2);
    assert.deepEqual(
      plan.retire.map((r) => r.name),
      ['a1'],
    );
    assert.match(plan.retire[0]!.why, /limits\.max_vms/);
  });
  it('does not evict for a request its own pool limit keeps out anyway', () => {
    const a = pool({
      pool: 'a',
      maxVms: 4,
      active: 2,
      warm: [
        ['a1', 'warm'],
        ['a2', 'warm'],
      ],
    });
    const b = pool({ pool: 'b', minIdle: 0, maxVms: 1, active: 1, pending: 1 });
    assert.deepEqual(planWarmPools([a, b], 3).retire, []);
  });
  it('does not count warm VMs not yet started as holding room', () => {
    const p = pool({ maxVms: 1, active: 1, pending: 2, warm: [['a', 'pending']] });
    // The only active VM is a real one: nothing warm to evict for the one real request waiting.
    assert.deepEqual(planWarmPools([p], 8).retire, []);
  });
});

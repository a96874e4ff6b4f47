import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { admit } from '../../src/core/quota.ts';

const p = (name: string, pool: string) => ({ name, pool });

describe('admit', () => {
  it('admits oldest first up to the pool limit', () => {
    assert.deepEqual(
      admit([p('a', 'l'), p('b', 'l'), p('c', 'l')], { l: 1 }, { total: 10, perPool: { l: 2 } }),
      ['a'],
    );
  });
  it('does not let a full pool block another pool', () => {
    assert.deepEqual(
      admit([p('a', 'full'), p('b', 'free')], { full: 1 }, { total: 10, perPool: { full: 1, free: 1 } }),
      ['b'],
    );
  });
  it('respects the overall limit across pools', () => {
    assert.deepEqual(
      admit([p('a', 'x'), p('b', 'y'), p('c', 'y')], { x: 1 }, { total: 3, perPool: { x: 5, y: 5 } }),
      ['a', 'b'],
    );
  });
  it('admits nothing for a pool without a limit', () => {
    assert.deepEqual(admit([p('a', 'gone')], {}, { total: 3, perPool: {} }), []);
  });
});

// What the host answers a guest on the HTTP channel (core/guest-inbox.ts, pure): `sync` after a
// gap, `shutdown` while the VM is being destroyed, unless its provider's destroy runs the guest's
// teardown hook itself and has not failed yet (the hook would be skipped on a powered-off VM).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hostLines, inboxAccepts } from '../../src/core/guest-inbox.ts';

describe('hostLines', () => {
  const vm = (state: 'idle' | 'destroying', destroyAttempts = 0) => ({ state, destroyAttempts });

  it('asks for a replay after a gap, and for nothing otherwise', () => {
    assert.deepEqual(hostLines(vm('idle'), 'gap'), ['sync']);
    assert.deepEqual(hostLines(vm('idle'), 'next'), []);
    assert.deepEqual(hostLines(vm('idle'), 'duplicate'), []);
  });

  it('tells a VM being destroyed to shut down', () => {
    assert.deepEqual(hostLines(vm('destroying'), 'next'), ['shutdown']);
    assert.deepEqual(hostLines(vm('destroying'), 'gap'), ['sync', 'shutdown']);
    assert.deepEqual(hostLines(vm('destroying'), 'next', { destroyTearsDown: false }), ['shutdown']);
  });

  it('leaves the teardown to a provider whose destroy runs it, until a destroy attempt failed', () => {
    assert.deepEqual(hostLines(vm('destroying'), 'next', { destroyTearsDown: true }), []);
    assert.deepEqual(hostLines(vm('destroying', 1), 'next', { destroyTearsDown: true }), ['shutdown']);
    assert.deepEqual(hostLines(vm('idle', 1), 'next', { destroyTearsDown: true }), []);
  });
});

describe('inboxAccepts', () => {
  it('takes messages of a created VM, asks to retry before, and refuses an ended one', () => {
    assert.equal(inboxAccepts('provisioning'), 'not_ready');
    assert.equal(inboxAccepts('booting'), 'yes');
    assert.equal(inboxAccepts('destroying'), 'yes');
    assert.equal(inboxAccepts('destroyed'), 'gone');
    assert.equal(inboxAccepts('failed'), 'gone');
  });
});

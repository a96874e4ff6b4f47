// One describe per state, in the lifecycle's own order (Ubicloud style), plus a table over every
// (state, event) pair checking the invariants the store relies on.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  EVENT_TYPES,
  MAX_CREATE_ATTEMPTS,
  STATES,
  TRANSITIONS,
  backoffMs,
  next,
  type Decision,
  type LifecycleEvent,
  type LifecycleVm,
  type Timeouts,
  type VmState,
} from '../../src/core/lifecycle.ts';

const T: Timeouts = { queue: 3600, provision: 300, boot: 60, idle: 900, job: 7200, drain: 30, warm: 1800 };

const vm = (state: VmState, extra: Partial<LifecycleVm> = {}): LifecycleVm => ({
  state,
  destroyRequested: false,
  failure: null,
  attempts: 0,
  destroyAttempts: 0,
  ...extra,
});

const sample: Record<LifecycleEvent['type'], LifecycleEvent> = {
  admitted: { type: 'admitted' },
  destroy_requested: { type: 'destroy_requested', by: 'test' },
  create_cancelled: { type: 'create_cancelled' },
  created: { type: 'created' },
  create_failed: { type: 'create_failed', error: 'qemu exited 1', retryable: true },
  guest_booted: { type: 'guest_booted' },
  awaiting_jit: { type: 'awaiting_jit' },
  taken: { type: 'taken', by: 'job 42' },
  jit_delivered: { type: 'jit_delivered' },
  configure_failed: { type: 'configure_failed', error: 'GitHub answered 502', retryable: true },
  runner_registered: { type: 'runner_registered' },
  job_started: { type: 'job_started', job: 'build' },
  job_finished: { type: 'job_finished', result: 'Succeeded' },
  runner_exited: { type: 'runner_exited', code: 0 },
  guest_error: { type: 'guest_error', message: 'checksum mismatch' },
  vm_exited: { type: 'vm_exited' },
  timeout: { type: 'timeout' },
  destroy_done: { type: 'destroy_done' },
  destroy_failed: { type: 'destroy_failed', error: 'EBUSY' },
};

function decided(v: LifecycleVm, e: LifecycleEvent): Decision {
  const o = next(v, e, T);
  assert.equal(o.kind, 'next', `expected a transition for ${v.state} + ${e.type}, got ${JSON.stringify(o)}`);
  return (o as { decision: Decision }).decision;
}

/** Ubicloud's `hop`: the VM moves to `state` and the worker must run `action`. */
function hops(v: LifecycleVm, e: LifecycleEvent, state: VmState, action: Decision['action']): Decision {
  const d = decided(v, e);
  assert.equal(d.state, state, `${v.state} + ${e.type}: state`);
  assert.equal(d.action, action, `${v.state} + ${e.type}: action`);
  return d;
}

function ignores(v: LifecycleVm, e: LifecycleEvent): void {
  assert.equal(next(v, e, T).kind, 'ignored', `${v.state} + ${e.type} should be ignored`);
}

describe('every (state, event) pair', () => {
  for (const state of STATES) {
    for (const type of EVENT_TYPES) {
      it(`${state} + ${type} is ignored or an allowed transition`, () => {
        for (const [destroyRequested, source] of [
          [false, 'github'],
          [true, 'github'],
          [false, 'warm'],
        ] as const) {
          const o = next(vm(state, { destroyRequested, source }), sample[type], T);
          if (o.kind === 'ignored') {
            assert.ok(o.reason.length > 0);
            continue;
          }
          const d = o.decision;
          assert.ok(
            d.state === state || TRANSITIONS[state].includes(d.state),
            `${state} → ${d.state} is not in the transition table`,
          );
          assert.ok(d.note.length > 0, 'every transition is explained in the audit trail');
          if (d.state === 'destroying')
            assert.equal(d.action, 'destroy', 'destroying always has a destroy step');
          if (d.state === 'destroyed' || d.state === 'failed') assert.equal(d.action, null);
          if (d.state === 'failed') assert.ok(d.failure, 'failed always carries a reason');
        }
      });
    }
  }
  it('covers every event type', () => {
    assert.deepEqual(Object.keys(sample).sort(), [...EVENT_TYPES].sort());
  });
});

describe('pending', () => {
  it('goes to provisioning with a provision step when admitted', () => {
    const d = hops(vm('pending'), sample.admitted, 'provisioning', 'provision');
    assert.equal(d.deadline, T.provision);
  });
  it('is destroyed at once when destroy is requested (nothing exists yet)', () => {
    hops(vm('pending'), sample.destroy_requested, 'destroyed', null);
  });
  it('fails when no capacity frees up within the queue timeout', () => {
    const d = hops(vm('pending'), sample.timeout, 'failed', null);
    assert.match(d.failure ?? '', /no capacity/);
  });
  it('ignores guest events', () => ignores(vm('pending'), sample.runner_registered));
});

describe('provisioning', () => {
  it('goes to booting when create succeeds, with the boot deadline', () => {
    const d = hops(vm('provisioning'), sample.created, 'booting', null);
    assert.equal(d.deadline, T.boot);
  });
  it('retries a retryable create failure with backoff, keeping the deadline', () => {
    const d = hops(vm('provisioning', { attempts: 0 }), sample.create_failed, 'provisioning', 'provision');
    assert.equal(d.attempts, 1);
    assert.equal(d.delayMs, backoffMs(1));
    assert.equal(d.deadline, 'keep');
  });
  it(`destroys and fails after ${MAX_CREATE_ATTEMPTS} create attempts`, () => {
    const d = hops(
      vm('provisioning', { attempts: MAX_CREATE_ATTEMPTS - 1 }),
      sample.create_failed,
      'destroying',
      'destroy',
    );
    assert.match(d.failure ?? '', /create failed: qemu exited 1/);
  });
  it('does not retry a non-retryable create failure', () => {
    const d = hops(
      vm('provisioning'),
      { type: 'create_failed', error: 'no such image', retryable: false },
      'destroying',
      'destroy',
    );
    assert.match(d.failure ?? '', /no such image/);
  });
  it('remembers a destroy request while create runs, and keeps the provision step', () => {
    const d = hops(vm('provisioning'), sample.destroy_requested, 'provisioning', 'provision');
    assert.equal(d.destroyRequested, true);
  });
  it('destroys (without failure) when created after a destroy request', () => {
    const d = hops(vm('provisioning', { destroyRequested: true }), sample.created, 'destroying', 'destroy');
    assert.equal(d.failure, null);
  });
  it('destroys when the create step is cancelled', () => {
    hops(vm('provisioning', { destroyRequested: true }), sample.create_cancelled, 'destroying', 'destroy');
  });
  it('destroys when a failed create was meant to be destroyed anyway', () => {
    const d = hops(
      vm('provisioning', { destroyRequested: true }),
      sample.create_failed,
      'destroying',
      'destroy',
    );
    assert.equal(d.failure, null);
  });
  it('destroys and fails on timeout', () => {
    const d = hops(vm('provisioning'), sample.timeout, 'destroying', 'destroy');
    assert.match(d.failure ?? '', /provisioning timed out/);
  });
});

describe('booting', () => {
  it('records the guest boot without restarting the boot deadline', () => {
    const d = hops(vm('booting'), sample.guest_booted, 'booting', null);
    assert.equal(d.deadline, 'keep');
  });
  it('goes to idle when the runner registers, with the idle deadline', () => {
    assert.equal(hops(vm('booting'), sample.runner_registered, 'idle', null).deadline, T.idle);
  });
  it('goes straight to busy if the job start arrives first', () => {
    hops(vm('booting'), sample.job_started, 'busy', null);
  });
  it('destroys and fails with the reason when the runner never registers (boot timeout)', () => {
    const d = hops(vm('booting'), sample.timeout, 'destroying', 'destroy');
    assert.equal(d.failure, `boot timeout: the runner did not register within ${T.boot} s`);
  });
  it('destroys and fails on a guest error', () => {
    const d = hops(vm('booting'), sample.guest_error, 'destroying', 'destroy');
    assert.match(d.failure ?? '', /checksum mismatch/);
  });
  it('destroys and fails when the VM stops', () => {
    assert.match(
      hops(vm('booting'), sample.vm_exited, 'destroying', 'destroy').failure ?? '',
      /stopped unexpectedly/,
    );
  });
  it('destroys on request', () => {
    hops(vm('booting'), sample.destroy_requested, 'destroying', 'destroy');
  });
});

describe('booting, a VM booted ahead (warm pool)', () => {
  const ahead = (extra: Partial<LifecycleVm> = {}) => vm('booting', { source: 'warm', ...extra });
  it('turns warm when its guest waits for a JIT config, with the warm_max_age deadline', () => {
    assert.equal(hops(ahead(), sample.awaiting_jit, 'warm', null).deadline, T.warm);
  });
  it('ignores awaiting_jit from a VM bound to a job (it has its config)', () => {
    ignores(vm('booting', { source: 'github' }), sample.awaiting_jit);
    ignores(vm('booting'), sample.awaiting_jit);
  });
  it('fails on boot timeout like any VM (booted, runner downloaded: it never said so)', () => {
    assert.match(hops(ahead(), sample.timeout, 'destroying', 'destroy').failure ?? '', /boot timeout/);
  });
});

describe('warm', () => {
  const warm = (extra: Partial<LifecycleVm> = {}) => vm('warm', { source: 'warm', ...extra });
  it('goes to configuring with a configure step when a job takes it, its attempts reset', () => {
    const d = hops(warm({ attempts: 2 }), sample.taken, 'configuring', 'configure');
    assert.equal(d.attempts, 0);
    assert.equal(d.deadline, T.boot);
    assert.match(d.note, /taken by job 42/);
  });
  it('is recycled (destroyed, no failure) past warm_max_age', () => {
    const d = hops(warm(), sample.timeout, 'destroying', 'destroy');
    assert.equal(d.failure, null);
    assert.match(d.note, /warm_max_age/);
  });
  it('fails when the VM stops (the warm pool replaces it)', () => {
    assert.match(hops(warm(), sample.vm_exited, 'destroying', 'destroy').failure ?? '', /while warm/);
  });
  it('fails on a guest error (e.g. its own JIT timeout)', () => {
    assert.match(hops(warm(), sample.guest_error, 'destroying', 'destroy').failure ?? '', /guest error/);
  });
  it('destroys on request', () => {
    hops(warm(), sample.destroy_requested, 'destroying', 'destroy');
  });
  it('ignores runner events it cannot have (no JIT config yet)', () => {
    ignores(warm(), sample.runner_registered);
    ignores(warm(), sample.job_started);
    ignores(warm(), sample.awaiting_jit);
  });
});

describe('configuring', () => {
  const configuring = (extra: Partial<LifecycleVm> = {}) => vm('configuring', { source: 'github', ...extra });
  it('goes to booting when the JIT config was sent, with a fresh boot deadline', () => {
    assert.equal(hops(configuring(), sample.jit_delivered, 'booting', null).deadline, T.boot);
  });
  it('retries a retryable configure failure with backoff, keeping the deadline', () => {
    const d = hops(configuring(), sample.configure_failed, 'configuring', 'configure');
    assert.equal(d.attempts, 1);
    assert.equal(d.delayMs, backoffMs(1));
    assert.equal(d.deadline, 'keep');
  });
  it(`destroys and fails after ${MAX_CREATE_ATTEMPTS} configure attempts, or a non-retryable failure`, () => {
    const d = hops(
      configuring({ attempts: MAX_CREATE_ATTEMPTS - 1 }),
      sample.configure_failed,
      'destroying',
      'destroy',
    );
    assert.match(d.failure ?? '', /configure failed: GitHub answered 502/);
    hops(
      configuring(),
      { type: 'configure_failed', error: 'no credential', retryable: false },
      'destroying',
      'destroy',
    );
  });
  it('goes to idle if the runner registers before the step records its result', () => {
    hops(configuring(), sample.runner_registered, 'idle', null);
  });
  it('goes to busy if the job start arrives first', () => {
    hops(configuring(), sample.job_started, 'busy', null);
  });
  it('fails when the runner exits without a job, or the VM stops', () => {
    assert.match(
      hops(configuring(), sample.runner_exited, 'destroying', 'destroy').failure ?? '',
      /before running a job/,
    );
    assert.match(hops(configuring(), sample.vm_exited, 'destroying', 'destroy').failure ?? '', /configuring/);
  });
  it('destroys and fails when the config is not delivered in time', () => {
    assert.match(
      hops(configuring(), sample.timeout, 'destroying', 'destroy').failure ?? '',
      /configure timeout/,
    );
  });
  it('destroys on request (the step, if running, finds it destroying)', () => {
    hops(configuring(), sample.destroy_requested, 'destroying', 'destroy');
  });
});

describe('idle', () => {
  it('goes to busy when the job starts, with the job deadline', () => {
    assert.equal(hops(vm('idle'), sample.job_started, 'busy', null).deadline, T.job);
  });
  it('destroys without failure on idle timeout', () => {
    assert.equal(hops(vm('idle'), sample.timeout, 'destroying', 'destroy').failure, null);
  });
  it('fails when the runner exits without a job', () => {
    assert.match(
      hops(vm('idle'), sample.runner_exited, 'destroying', 'destroy').failure ?? '',
      /before running a job/,
    );
  });
  it('ignores a repeated registration', () => ignores(vm('idle'), sample.runner_registered));
});

describe('busy', () => {
  it('goes to draining when the job finishes, with the drain deadline', () => {
    assert.equal(hops(vm('busy'), sample.job_finished, 'draining', null).deadline, T.drain);
  });
  it('goes to draining when the runner exits', () => {
    hops(vm('busy'), sample.runner_exited, 'draining', null);
  });
  it('destroys and fails on job timeout', () => {
    assert.match(hops(vm('busy'), sample.timeout, 'destroying', 'destroy').failure ?? '', /job timeout/);
  });
  it('ignores a repeated job start', () => ignores(vm('busy'), sample.job_started));
});

describe('draining', () => {
  it('destroys without failure when the VM powers off', () => {
    assert.equal(hops(vm('draining'), sample.vm_exited, 'destroying', 'destroy').failure, null);
  });
  it('destroys when the VM does not power off in time', () => {
    hops(vm('draining'), sample.timeout, 'destroying', 'destroy');
  });
  it('ignores the runner exit that follows the job', () => ignores(vm('draining'), sample.runner_exited));
});

describe('destroying', () => {
  it('ends destroyed when destroy succeeds', () => {
    hops(vm('destroying'), sample.destroy_done, 'destroyed', null);
  });
  it('ends failed, with the reason, when it was destroyed because of a failure', () => {
    const d = hops(vm('destroying', { failure: 'boot timeout' }), sample.destroy_done, 'failed', null);
    assert.equal(d.failure, 'boot timeout');
  });
  it('retries a failed destroy forever with capped backoff', () => {
    const d = hops(vm('destroying', { destroyAttempts: 20 }), sample.destroy_failed, 'destroying', 'destroy');
    assert.equal(d.destroyAttempts, 21);
    assert.equal(d.delayMs, 60_000);
  });
  it('ignores a second destroy request', () => ignores(vm('destroying'), sample.destroy_requested));
  it('ignores guest events', () => ignores(vm('destroying'), sample.job_started));
});

describe('destroyed and failed', () => {
  for (const state of ['destroyed', 'failed'] as const) {
    it(`${state} ignores every event`, () => {
      for (const e of Object.values(sample)) ignores(vm(state), e);
    });
  }
});

describe('backoffMs', () => {
  it('doubles from 1 s and caps at 60 s', () => {
    assert.deepEqual([1, 2, 3, 7, 30].map(backoffMs), [1000, 2000, 4000, 60_000, 60_000]);
  });
});

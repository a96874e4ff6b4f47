// The VM lifecycle as a pure state machine: next(vm, event, timeouts) → a decision (new state,
// the one action a worker must carry out, the deadline of the new state) or "ignored".
// No I/O, no clock, no config reads: the caller passes everything in, so every (state, event)
// pair is tested without a VM (test/unit/lifecycle.test.ts).
//
//   pending → provisioning → booting → idle → busy → draining → destroying → destroyed
//                                                                         ↘ failed (with reason)
// `destroy_requested` is accepted in every state (a semaphore, as in Ubicloud): where an action is
// in flight (provisioning) it is remembered and acted on when that action ends.
// Warm pools (docs/adr/2026-12-02-warm-pools.md): a VM booted ahead without a JIT config goes
// booting → warm when its guest says it waits for one (`awaiting_jit`); a job takes it (`taken`)
// → configuring, whose `configure` action mints the config and sends it over the guest channel
// (`jit_delivered`) → booting, and from there as any VM. A warm VM past the pool's warm_max_age
// times out and is destroyed (recycled: no failure); the warm pool then boots a fresh one.

import { INITIAL_STATE, isTerminal, type Action, type StateChange, type VmState } from '../model/states.ts';

// The vocabulary (states, groups, transitions) lives in a leaf module the store shares.
export * from '../model/states.ts';

export type LifecycleEvent =
  | { type: 'admitted' }
  | { type: 'destroy_requested'; by: string }
  | { type: 'create_cancelled' }
  | { type: 'created'; note?: string }
  | { type: 'create_failed'; error: string; retryable: boolean }
  | { type: 'guest_booted' }
  | { type: 'awaiting_jit' }
  | { type: 'taken'; by: string }
  | { type: 'jit_delivered' }
  | { type: 'configure_failed'; error: string; retryable: boolean }
  | { type: 'runner_registered' }
  | { type: 'job_started'; job?: string }
  | { type: 'job_finished'; result?: string }
  | { type: 'runner_exited'; code?: number }
  | { type: 'guest_error'; message: string }
  | { type: 'vm_exited' }
  | { type: 'timeout' }
  | { type: 'destroy_done' }
  | { type: 'destroy_failed'; error: string };

export type EventType = LifecycleEvent['type'];
export const EVENT_TYPES: readonly EventType[] = [
  'admitted',
  'destroy_requested',
  'create_cancelled',
  'created',
  'create_failed',
  'guest_booted',
  'awaiting_jit',
  'taken',
  'jit_delivered',
  'configure_failed',
  'runner_registered',
  'job_started',
  'job_finished',
  'runner_exited',
  'guest_error',
  'vm_exited',
  'timeout',
  'destroy_done',
  'destroy_failed',
];

/** The part of a VM record the lifecycle reads. */
export interface LifecycleVm {
  state: VmState;
  destroyRequested: boolean;
  /** Set on the way to `failed`: why the VM did not serve its job. */
  failure: string | null;
  /** provider.create attempts made so far. */
  attempts: number;
  /** Consecutive failed destroy attempts. */
  destroyAttempts: number;
  /** `warm`: booted ahead for its pool, bound to no job yet (only such a VM turns warm). */
  source?: string;
}

/** Seconds; from the pool's config. */
export interface Timeouts {
  queue: number;
  provision: number;
  boot: number;
  idle: number;
  job: number;
  drain: number;
  /** A warm VM's max age (the pool's warm_max_age): waiting for a job longer, it is recycled. */
  warm: number;
}

export const MAX_CREATE_ATTEMPTS = 3;

export type Decision = StateChange;

export type Outcome = { kind: 'next'; decision: Decision } | { kind: 'ignored'; reason: string };

/** Exponential backoff: 1 s, 2 s, 4 s … capped at 60 s. */
export function backoffMs(attempt: number): number {
  return Math.min(60_000, 1000 * 2 ** Math.max(0, attempt - 1));
}

/** Seconds a VM may stay in `state` before a `timeout` event; null: no deadline. */
export function deadlineFor(state: VmState, t: Timeouts): number | null {
  switch (state) {
    case INITIAL_STATE:
      return t.queue;
    case 'provisioning':
      return t.provision;
    case 'booting':
    case 'configuring':
      return t.boot;
    case 'warm':
      return t.warm;
    case 'idle':
      return t.idle;
    case 'busy':
      return t.job;
    case 'draining':
      return t.drain;
    default:
      return null;
  }
}

export function next(vm: LifecycleVm, event: LifecycleEvent, t: Timeouts): Outcome {
  const base = {
    destroyRequested: vm.destroyRequested,
    failure: vm.failure,
    attempts: vm.attempts,
    destroyAttempts: vm.destroyAttempts,
    delayMs: 0,
  };
  const go = (
    state: VmState,
    action: Action | null,
    note: string,
    extra: Partial<Omit<Decision, 'state' | 'action' | 'note'>> = {},
  ): Outcome => ({
    kind: 'next',
    // Staying in a state keeps its deadline: a boot report must not restart the boot timeout.
    decision: {
      ...base,
      deadline: state === vm.state ? 'keep' : deadlineFor(state, t),
      ...extra,
      state,
      action,
      note,
    },
  });
  const destroy = (note: string, failure: string | null = vm.failure): Outcome =>
    go('destroying', 'destroy', note, { failure, destroyAttempts: 0 });
  const ignore = (reason: string): Outcome => ({ kind: 'ignored', reason });

  if (isTerminal(vm.state)) return ignore(`VM is ${vm.state}`);

  // Events every live state handles the same way.
  switch (event.type) {
    case 'destroy_requested':
      if (vm.state === 'destroying') return ignore('already destroying');
      if (vm.state === 'pending')
        return go('destroyed', null, `destroy requested by ${event.by} before provisioning`);
      if (vm.state === 'provisioning') {
        // provider.create may be running: destroy when it returns (created/create_failed/cancelled).
        return go('provisioning', 'provision', `destroy requested by ${event.by}; after the create step`, {
          destroyRequested: true,
        });
      }
      return destroy(`destroy requested by ${event.by}`);
    case 'guest_error':
      if (vm.state === 'destroying' || vm.state === 'pending' || vm.state === 'provisioning') {
        return ignore(`guest error in ${vm.state}`);
      }
      return destroy(`guest reported an error: ${event.message}`, `guest error: ${event.message}`);
    case 'timeout':
      return onTimeout(vm, t, go, destroy, ignore);
    default:
      break;
  }

  switch (vm.state) {
    case 'pending':
      if (event.type === 'admitted') return go('provisioning', 'provision', 'capacity available');
      break;

    case 'provisioning':
      switch (event.type) {
        case 'created':
          if (vm.destroyRequested) return destroy('created, but destroy was requested meanwhile');
          return go(
            'booting',
            null,
            `VM created; waiting for the runner to register${event.note ? ` (${event.note})` : ''}`,
          );
        case 'create_cancelled':
          return destroy('create skipped: destroy was requested');
        case 'create_failed': {
          const attempts = vm.attempts + 1;
          if (vm.destroyRequested) return destroy(`create failed (${event.error}); destroy was requested`);
          if (event.retryable && attempts < MAX_CREATE_ATTEMPTS) {
            return go('provisioning', 'provision', `create failed (${event.error}); retrying`, {
              attempts,
              delayMs: backoffMs(attempts),
            });
          }
          const why = event.retryable ? `after ${attempts} attempts` : 'not retryable';
          return destroy(`create failed ${why}: ${event.error}`, `create failed: ${event.error}`);
        }
      }
      break;

    case 'warm':
      switch (event.type) {
        case 'taken':
          // Its create attempts are spent: `attempts` now counts configure attempts.
          return go('configuring', 'configure', `taken by ${event.by}`, { attempts: 0 });
        case 'vm_exited':
          return destroy('warm VM stopped', 'VM stopped unexpectedly while warm');
        case 'runner_exited':
          return destroy(
            `runner exited (${event.code ?? '?'}) before it had a JIT config`,
            `runner exited (code ${event.code ?? 'unknown'}) while warm`,
          );
      }
      break;

    case 'configuring':
      switch (event.type) {
        case 'jit_delivered':
          return go('booting', null, 'JIT config sent over the guest channel; waiting for the runner');
        case 'configure_failed': {
          const attempts = vm.attempts + 1;
          if (event.retryable && attempts < MAX_CREATE_ATTEMPTS) {
            return go('configuring', 'configure', `configure failed (${event.error}); retrying`, {
              attempts,
              delayMs: backoffMs(attempts),
            });
          }
          const why = event.retryable ? `after ${attempts} attempts` : 'not retryable';
          return destroy(`configure failed ${why}: ${event.error}`, `configure failed: ${event.error}`);
        }
        // The guest may report before the step records its result: the config evidently arrived.
        case 'runner_registered':
          return go('idle', null, 'runner registered');
        case 'job_started':
          return go('busy', null, `job started${event.job ? `: ${event.job}` : ''}`);
        case 'job_finished':
          return go('draining', null, `job finished${event.result ? `: ${event.result}` : ''}`);
        case 'runner_exited':
          return destroy(
            `runner exited (${event.code ?? '?'}) without running a job`,
            `runner exited (code ${event.code ?? 'unknown'}) before running a job`,
          );
        case 'vm_exited':
          return destroy('VM stopped while configuring', 'VM stopped unexpectedly while configuring');
      }
      break;

    case 'booting':
    case 'idle':
    case 'busy':
      switch (event.type) {
        case 'guest_booted':
          return vm.state === 'booting' ? go('booting', null, 'guest booted') : ignore('late boot report');
        case 'awaiting_jit':
          // Only a VM booted ahead waits for its config; any other has it in its guest config.
          return vm.state === 'booting' && vm.source === 'warm'
            ? go('warm', null, 'warm: the runner waits for a job and its JIT config')
            : ignore(`awaiting_jit does not apply to this VM in ${vm.state}`);
        case 'runner_registered':
          return vm.state === 'booting'
            ? go('idle', null, 'runner registered')
            : ignore('already registered');
        case 'job_started':
          return vm.state === 'busy'
            ? ignore('job already started')
            : go('busy', null, `job started${event.job ? `: ${event.job}` : ''}`);
        case 'job_finished':
          return go('draining', null, `job finished${event.result ? `: ${event.result}` : ''}`);
        case 'runner_exited':
          if (vm.state === 'busy')
            return go('draining', null, `runner exited (${event.code ?? '?'}) during its job`);
          return destroy(
            `runner exited (${event.code ?? '?'}) without running a job`,
            `runner exited (code ${event.code ?? 'unknown'}) before running a job`,
          );
        case 'vm_exited':
          return destroy(`VM stopped while ${vm.state}`, `VM stopped unexpectedly while ${vm.state}`);
      }
      break;

    case 'draining':
      switch (event.type) {
        case 'vm_exited':
          return destroy('VM powered off after its job');
        case 'runner_exited':
        case 'job_finished':
          return ignore('already draining');
      }
      break;

    case 'destroying':
      switch (event.type) {
        case 'destroy_done':
          return vm.failure
            ? go('failed', null, `destroyed; failed: ${vm.failure}`)
            : go('destroyed', null, 'destroyed');
        case 'destroy_failed': {
          const destroyAttempts = vm.destroyAttempts + 1;
          // Never give up: a VM we stop trying to destroy is a leak. Back off instead.
          return go('destroying', 'destroy', `destroy failed (${event.error}); retrying`, {
            destroyAttempts,
            delayMs: backoffMs(destroyAttempts),
          });
        }
      }
      break;
  }
  return ignore(`${event.type} does not apply in ${vm.state}`);
}

function onTimeout(
  vm: LifecycleVm,
  t: Timeouts,
  go: (s: VmState, a: Action | null, note: string, extra?: Partial<Decision>) => Outcome,
  destroy: (note: string, failure?: string | null) => Outcome,
  ignore: (reason: string) => Outcome,
): Outcome {
  switch (vm.state) {
    case 'pending':
      return go('failed', null, `no capacity within ${t.queue} s`, {
        failure: `no capacity within ${t.queue} s`,
      });
    case 'provisioning':
      // The worker aborts a create that outlives its lease; this catches a create stuck in backoff.
      return vm.destroyRequested
        ? destroy('provisioning timed out; destroy was requested')
        : destroy(
            `provisioning took longer than ${t.provision} s`,
            `provisioning timed out after ${t.provision} s`,
          );
    case 'booting':
      return destroy(
        `runner did not register within ${t.boot} s`,
        `boot timeout: the runner did not register within ${t.boot} s`,
      );
    case 'warm':
      // Recycled, not failed: a fresh warm VM replaces it (warm-pools.ts).
      return destroy(`warm for ${t.warm} s without a job (warm_max_age): recycled`);
    case 'configuring':
      return destroy(
        `its JIT config was not delivered within ${t.boot} s`,
        `configure timeout: the JIT config was not delivered within ${t.boot} s`,
      );
    case 'idle':
      return destroy(`no job within ${t.idle} s (idle timeout)`);
    case 'busy':
      return destroy(`job ran longer than ${t.job} s`, `job timeout: the job ran longer than ${t.job} s`);
    case 'draining':
      return destroy(`VM did not power off within ${t.drain} s after its job; destroying it`);
    default:
      return ignore(`no timeout in ${vm.state}`);
  }
}

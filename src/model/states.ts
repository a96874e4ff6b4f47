// The lifecycle's vocabulary: its states, how they group, which may follow which, and the record
// of one decided change. A leaf module (it imports nothing), so that the store, the SQL it
// writes and the HTTP views share it with core/lifecycle.ts — the one state machine, which
// re-exports all of this — without the store importing core.
//
//   pending → provisioning → booting → idle → busy → draining → destroying → destroyed
//                                                                         ↘ failed (with reason)
// A VM booted ahead for a pool (`min_idle`, docs/adr/2026-12-02-warm-pools.md) detours:
//   booting → warm (its runner waits for a JIT config) → configuring (a job took it: the config
//   is minted and sent over the guest channel) → booting (until the runner registers) → idle …

export const STATES = [
  'pending',
  'provisioning',
  'booting',
  'warm',
  'configuring',
  'idle',
  'busy',
  'draining',
  'destroying',
  'destroyed',
  'failed',
] as const;
export type VmState = (typeof STATES)[number];

/** Where every VM starts: waiting for capacity (its deadline is the pool's queue timeout). */
export const INITIAL_STATE = 'pending' satisfies VmState;

/** The end: nothing runs, nothing more happens. */
export const TERMINAL_STATES: readonly VmState[] = ['destroyed', 'failed'];
/** Every state before the end: one live VM per identity at most (a unique index in the store). */
export const LIVE_STATES: readonly VmState[] = STATES.filter((s) => !TERMINAL_STATES.includes(s));
/** The VM may exist at the provider, so it counts against capacity. */
export const PROVIDER_STATES: readonly VmState[] = [
  'provisioning',
  'booting',
  'warm',
  'configuring',
  'idle',
  'busy',
  'draining',
  'destroying',
];
/** The VM runs and its guest channel is (or should be) linked: the reconciler compares these. */
export const LINKED_STATES: readonly VmState[] = [
  'booting',
  'warm',
  'configuring',
  'idle',
  'busy',
  'draining',
];
/** The runner has registered (and may already be working or done). */
export const READY_STATES: readonly VmState[] = ['idle', 'busy', 'draining'];
/** A VM in one of these will never become ready. */
export const ENDING_STATES: readonly VmState[] = ['destroying', ...TERMINAL_STATES];

export const isTerminal = (s: VmState): boolean => TERMINAL_STATES.includes(s);
export const isVmState = (s: string): s is VmState => (STATES as readonly string[]).includes(s);

/** Which state may follow which: the store re-checks every write against this table (garm). */
export const TRANSITIONS: Readonly<Record<VmState, readonly VmState[]>> = {
  pending: ['provisioning', 'destroyed', 'failed'],
  provisioning: ['booting', 'destroying'],
  booting: ['warm', 'idle', 'busy', 'draining', 'destroying'],
  warm: ['configuring', 'destroying'],
  configuring: ['booting', 'idle', 'busy', 'draining', 'destroying'],
  idle: ['busy', 'draining', 'destroying'],
  busy: ['draining', 'destroying'],
  draining: ['destroying'],
  destroying: ['destroyed', 'failed'],
  destroyed: [],
  failed: [],
};

/**
 * The side effect a worker carries out for a VM. `configure`: mint the JIT config of a warm VM
 * a job took and send it over the guest channel.
 */
export type Action = 'provision' | 'configure' | 'destroy';

/** One decided change of a VM, as the store writes it (core/lifecycle.ts decides it). */
export interface StateChange {
  state: VmState;
  destroyRequested: boolean;
  failure: string | null;
  attempts: number;
  destroyAttempts: number;
  /** The action a worker must run next; null: wait for an event. */
  action: Action | null;
  /** Run the action no sooner than this many ms from now (retry backoff). */
  delayMs: number;
  /** Seconds until a `timeout` event for the new state; null: none; 'keep': the state's running deadline. */
  deadline: number | null | 'keep';
  /** One line for the audit trail. */
  note: string;
}

/** `'a', 'b'` — a state group as an SQL list (the values are the constants above, never input). */
export function sqlList(states: readonly VmState[]): string {
  return states.map((s) => `'${s}'`).join(', ');
}

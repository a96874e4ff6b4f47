// Waiting for VMs to become ready (their runner registered), for long-polls and the legacy
// blocking create. Re-reads the store after every wake-up: the store is the truth.
import type { Store, VmRecord } from '../store/store.ts';
import { ENDING_STATES, READY_STATES } from './lifecycle.ts';
import type { Notifier } from './notifier.ts';

export type WaitOutcome = 'ready' | 'ended' | 'timeout' | 'aborted' | 'missing';

export function readiness(vm: VmRecord): 'ready' | 'ended' | 'waiting' {
  if (READY_STATES.includes(vm.state)) return 'ready';
  if (ENDING_STATES.includes(vm.state)) return 'ended';
  return 'waiting';
}

/** Waits until every named VM is ready (or one ends, or time runs out). */
export async function waitForReady(
  deps: { store: Store; notifier: Notifier },
  names: string[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ outcome: WaitOutcome; vms: VmRecord[] }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const vms: VmRecord[] = [];
    for (const n of names) {
      const vm = await deps.store.getVm(n);
      if (!vm) return { outcome: 'missing', vms };
      vms.push(vm);
    }
    const states = vms.map(readiness);
    if (states.includes('ended')) return { outcome: 'ended', vms };
    if (states.every((s) => s === 'ready')) return { outcome: 'ready', vms };
    const left = deadline - Date.now();
    if (signal?.aborted) return { outcome: 'aborted', vms };
    if (left <= 0) return { outcome: 'timeout', vms };
    const waiting = vms.find((_, i) => states[i] === 'waiting')!;
    // Poll at least every second too: another replica may be the one applying events.
    await deps.notifier.waitForChange(waiting.name, Math.min(left, 1000), signal);
  }
}

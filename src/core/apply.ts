// The one way a lifecycle event reaches the store: the pure decision runs inside the store's
// transaction, then the change is logged and waiters are woken.
import type { Lease, TransitionResult } from '../store/store.ts';
import type { CoreContext } from './context.ts';
import { timeoutsFor } from './context.ts';
import { next, type LifecycleEvent } from './lifecycle.ts';

export type Applied = TransitionResult;

export async function applyEvent(
  ctx: Pick<CoreContext, 'store' | 'pools' | 'clock' | 'log' | 'notifier'>,
  name: string,
  event: LifecycleEvent | null,
  opts: {
    /** The worker's lease: the write happens only while it holds it, and releases it. */
    lease?: Lease;
    /** The guest message that carried the event: its seq is recorded in the same write. */
    guestSeq?: number;
  } = {},
): Promise<Applied> {
  let from: string | null = null;
  let ignored: string | null = null;
  const r = await ctx.store.transition(
    name,
    (vm) => {
      from = vm.state;
      if (!event) return null;
      const o = next(vm, event, timeoutsFor(ctx, vm.pool));
      if (o.kind === 'ignored') {
        ignored = o.reason;
        return null;
      }
      return { event, decision: o.decision };
    },
    ctx.clock(),
    opts.lease,
    opts.guestSeq,
  );
  if (r.leaseLost) {
    ctx.log.error(
      { vm: name, event: event?.type },
      'lease lost: another worker took this step over; result dropped',
    );
  } else if (r.applied && r.vm && event) {
    ctx.log.info(
      { vm: name, event: event.type, from, to: r.vm.state, failure: r.vm.failure ?? undefined },
      'transition',
    );
    ctx.notifier.changed(name, r.vm, event.type);
  } else if (ignored && event) {
    ctx.log.debug({ vm: name, event: event.type, state: from, reason: ignored }, 'event ignored');
  }
  return r;
}

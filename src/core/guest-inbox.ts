// Guest messages, whatever carried them (a VM's virtio-serial link, or the HTTP guest channel),
// enter the lifecycle here: each seq once and in order, in the same write as its event. For the
// HTTP channel the inbox also authenticates the VM's token and answers with host → guest lines.
import { toLifecycleEvent, type GuestMessage } from '../guest/protocol.ts';
import type { GuestOrder, VmRecord } from '../store/store.ts';
import { applyEvent } from './apply.ts';
import { channelTokenMatches, channelTokenVm } from './channel-token.ts';
import type { CoreContext } from './context.ts';
import { isTerminal, type VmState } from './lifecycle.ts';

/** Applies one guest message to its VM; returns where its seq stood, and the VM after it. */
export async function takeGuestMessage(
  ctx: Pick<CoreContext, 'store' | 'pools' | 'clock' | 'log' | 'notifier'>,
  name: string,
  msg: GuestMessage,
): Promise<{ order: GuestOrder; vm: VmRecord | null }> {
  const r = await applyEvent(ctx, name, toLifecycleEvent(msg), { guestSeq: msg.seq });
  // The event it carried is logged with its transition: the message itself only at debug.
  if (r.guest === 'next') {
    ctx.log.debug(
      { vm: name, seq: msg.seq, guest: msg.name, detail: msg.detail || undefined },
      'guest message',
    );
  }
  return { order: r.guest ?? 'duplicate', vm: r.vm };
}

export type InboxAnswer =
  /** No such VM, no token, or the token does not match: nothing is applied. */
  | { kind: 'unauthorized' }
  /** The VM has ended: its token is dead. */
  | { kind: 'gone'; state: VmState }
  /** The create step still runs: the guest retries (its message is not taken yet). */
  | { kind: 'not_ready'; state: VmState }
  | { kind: 'taken'; order: GuestOrder; lines: string[] };

/** Whether a VM in `state` takes guest messages over HTTP (pure). */
export function inboxAccepts(state: VmState): 'yes' | 'not_ready' | 'gone' {
  if (isTerminal(state)) return 'gone';
  // Until `created` is recorded the VM's provider data and deadlines are not in place; a
  // message taken now would be ignored by the lifecycle and its seq spent.
  if (state === 'pending' || state === 'provisioning') return 'not_ready';
  return 'yes';
}

/**
 * What the host says back to a guest after a message (pure): replay after a gap, or stop.
 * `destroyTearsDown`: the VM's provider runs the guest's teardown hook in its destroy (Vagrant's
 * before-destroy trigger). That hook gets the first go: a `shutdown` now would have the guest
 * power itself off before it, and the provider skip it. Once a destroy attempt has failed, the
 * guest is told too, so that its runner does not stay online while destroys keep failing.
 */
export function hostLines(
  vm: Pick<VmRecord, 'state' | 'destroyAttempts'>,
  order: GuestOrder,
  opts: { destroyTearsDown?: boolean } = {},
): string[] {
  const lines: string[] = [];
  if (order === 'gap') lines.push('sync');
  if (vm.state === 'destroying' && (!opts.destroyTearsDown || vm.destroyAttempts > 0)) lines.push('shutdown');
  return lines;
}

export class GuestInbox {
  constructor(private readonly ctx: CoreContext) {}

  async receive(token: string | undefined, msg: GuestMessage): Promise<InboxAnswer> {
    const name = token ? channelTokenVm(token) : null;
    if (!token || !name) return { kind: 'unauthorized' };
    const vm = await this.ctx.store.getVm(name);
    if (!vm || !channelTokenMatches(token, vm.channelTokenHash)) return { kind: 'unauthorized' };
    const accepts = inboxAccepts(vm.state);
    if (accepts !== 'yes') return { kind: accepts, state: vm.state };
    const { order, vm: after } = await takeGuestMessage(this.ctx, name, msg);
    return {
      kind: 'taken',
      order,
      lines: hostLines(after ?? vm, order, { destroyTearsDown: this.tearsDown(vm) }),
    };
  }

  private tearsDown(vm: VmRecord): boolean {
    try {
      return this.ctx.providerFor(vm).destroyRunsTeardown === true;
    } catch {
      return false; // its pool is gone: nothing else will stop the guest
    }
  }
}

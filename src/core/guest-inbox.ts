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
  | { kind: 'taken'; order: GuestOrder; lines: string[] }
  /** A long-poll's answer: the host's lines for the guest (none when its wait ran out). */
  | { kind: 'lines'; lines: string[] };

/** The longest a guest's long-poll is held: well under the guests' 15-s request timeout. */
export const MAX_POLL_WAIT_S = 10;

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
      lines: [
        ...hostLines(after ?? vm, order, { destroyTearsDown: this.tearsDown(vm) }),
        ...(this.ctx.hostLines?.take(name) ?? []),
      ],
    };
  }

  /**
   * A guest's long-poll (`GET …?wait=<s>`): its host lines as soon as there are any (a warm VM's
   * `jit`, a `shutdown`), else an empty answer after `waitS` seconds. Applies nothing.
   */
  async poll(token: string | undefined, waitS: number, signal: AbortSignal): Promise<InboxAnswer> {
    const name = token ? channelTokenVm(token) : null;
    if (!token || !name) return { kind: 'unauthorized' };
    let vm = await this.ctx.store.getVm(name);
    if (!vm || !channelTokenMatches(token, vm.channelTokenHash)) return { kind: 'unauthorized' };
    const until = Date.now() + Math.min(waitS, MAX_POLL_WAIT_S) * 1000;
    for (;;) {
      const accepts = inboxAccepts(vm.state);
      if (accepts !== 'yes') return { kind: accepts, state: vm.state };
      // The guest hung up: take nothing (a line taken now would be lost with the answer).
      if (signal.aborted) return { kind: 'lines', lines: [] };
      const lines = [
        ...hostLines(vm, 'next', { destroyTearsDown: this.tearsDown(vm) }),
        ...(this.ctx.hostLines?.take(name) ?? []),
      ];
      const left = until - Date.now();
      if (lines.length || left <= 0) return { kind: 'lines', lines };
      // Woken by a line for it or any change of the VM (e.g. destroying: `shutdown`).
      const woken = new AbortController();
      const stop = (): void => woken.abort();
      signal.addEventListener('abort', stop, { once: true });
      await Promise.race([
        this.ctx.hostLines?.waitFor(name, left, woken.signal) ?? new Promise(() => undefined),
        this.ctx.notifier.waitForChange(name, left, woken.signal),
      ]);
      woken.abort();
      signal.removeEventListener('abort', stop);
      vm = (await this.ctx.store.getVm(name)) ?? vm;
    }
  }

  private tearsDown(vm: VmRecord): boolean {
    try {
      return this.ctx.providerFor(vm).destroyRunsTeardown === true;
    } catch {
      return false; // its pool is gone: nothing else will stop the guest
    }
  }
}

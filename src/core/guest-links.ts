// Keeps one channel open to each running VM whose guest talks over a unix socket (QEMU's
// virtio-serial port) and turns its messages into lifecycle events. A link follows the VM's
// state: opened when it enters a linked state (after create), closed when it leaves them (before
// destroy, so the exit is not reported). At start-up the reconciler opens one for every running
// VM: that is how a restarted service adopts them (the guest replays on `sync`; applied seqs are
// skipped). VMs on the HTTP channel need no link: they call the service (guest-inbox.ts).
import type { ChannelAddress } from '../providers/provider.ts';
import { GuestChannel } from '../guest/channel.ts';
import type { GuestMessage } from '../guest/protocol.ts';
import type { VmRecord } from '../store/store.ts';
import { applyEvent } from './apply.ts';
import type { CoreContext } from './context.ts';
import { takeGuestMessage } from './guest-inbox.ts';
import { LINKED_STATES } from './lifecycle.ts';

export class GuestLinks {
  private readonly links = new Map<string, GuestChannel>();
  private readonly unsubscribe: () => void;

  constructor(private readonly ctx: CoreContext) {
    this.unsubscribe = ctx.notifier.onTransition((vm, event) => {
      if (LINKED_STATES.includes(vm.state)) {
        // Just created: no host was ever connected, so the guest has lost nothing (its writes
        // block until we connect) and there is nothing to ask it to replay.
        this.ensure(vm, { replay: event !== 'created' }).catch((e: Error) =>
          ctx.log.error({ vm: vm.name, err: e.message }, 'cannot open guest channel'),
        );
      } else {
        this.close(vm.name);
      }
    });
  }

  has(name: string): boolean {
    return this.links.has(name);
  }

  /**
   * Opens the VM's channel unless it is open already. A missing socket means the VM is gone.
   * `replay` (default): ask the guest to resend its events, as an earlier host may have missed some.
   */
  async ensure(vm: VmRecord, opts: { replay?: boolean } = {}): Promise<void> {
    if (this.links.has(vm.name) || !LINKED_STATES.includes(vm.state)) return;
    const address = vm.providerData.channel as ChannelAddress | undefined;
    if (address?.kind !== 'unix') return;
    const link = new GuestChannel(address.path, vm.guestSeq);
    this.links.set(vm.name, link);
    // Messages of one VM are applied strictly in order.
    let chain: Promise<unknown> = Promise.resolve();
    const enqueue = (f: () => Promise<unknown>): void => {
      chain = chain
        .then(f)
        .catch((e: Error) => this.ctx.log.error({ vm: vm.name, err: e.message }, 'guest message failed'));
    };
    link.on('message', (msg) => enqueue(() => this.onMessage(vm.name, msg)));
    link.on('closed', (reason) =>
      enqueue(async () => {
        if (this.links.get(vm.name) === link) this.links.delete(vm.name);
        this.ctx.log.info({ vm: vm.name, reason }, 'guest channel closed');
        await applyEvent(this.ctx, vm.name, { type: 'vm_exited' });
      }),
    );
    try {
      await link.connect({ replay: opts.replay ?? true });
    } catch (e) {
      this.links.delete(vm.name);
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ECONNREFUSED') {
        this.ctx.log.info({ vm: vm.name, code }, 'guest channel is gone: the VM has stopped');
        await applyEvent(this.ctx, vm.name, { type: 'vm_exited' });
      } else {
        this.ctx.log.warn(
          { vm: vm.name, err: (e as Error).message },
          'cannot open guest channel; will retry',
        );
      }
    }
  }

  /**
   * Sends a host → guest line (e.g. `jit …`) over the VM's link, opening it if needed; resolves
   * once written. Rejects when the VM has no unix channel or the link cannot be opened.
   */
  async send(vm: VmRecord, line: string): Promise<void> {
    await this.ensure(vm);
    const link = this.links.get(vm.name);
    if (!link) throw new Error(`no guest channel to ${vm.name}`);
    await link.write(line);
  }

  /** A round trip through the VM's guest (GuestChannel.roundTrip): the channel's own latency. */
  async roundTrip(name: string): Promise<number> {
    const link = this.links.get(name);
    if (!link) throw new Error(`no guest channel to ${name}`);
    return link.roundTrip();
  }

  private async onMessage(name: string, msg: GuestMessage): Promise<void> {
    await takeGuestMessage(this.ctx, name, msg);
  }

  /** Closes our end (the VM keeps running). */
  close(name: string): void {
    const link = this.links.get(name);
    this.links.delete(name);
    link?.close();
  }

  closeAll(): void {
    this.unsubscribe();
    for (const name of [...this.links.keys()]) this.close(name);
  }
}

// Host → guest lines that a worker step sends (the `jit` message to a warm VM a job took). Over a
// unix link (QEMU's virtio-serial port) a line is written at once. A guest on the HTTP channel can
// only be answered, so its lines wait here, in this process, for the guest's next request — its
// long-poll (`GET /guest/v1/messages?wait=…`) or its next message — and the sender learns when
// they were handed over. Nothing here is stored: a JIT config is a secret and never written to
// disk; a step that crashes before delivery mints a new one when it is resumed.
import { EventEmitter } from 'node:events';
import type { VmRecord } from '../store/store.ts';
import type { GuestLinks } from './guest-links.ts';

interface Pending {
  line: string;
  handed: () => void;
}

export class HostLines {
  private readonly boxes = new Map<string, Pending[]>();
  private readonly posted = new EventEmitter();

  constructor(private readonly links: Pick<GuestLinks, 'send'>) {
    this.posted.setMaxListeners(0);
  }

  /**
   * Sends `line` to the VM's guest: resolves once written to its unix link, or once an HTTP
   * request of the guest took it; rejects after `timeoutMs` (the line is withdrawn) or on abort.
   */
  async deliver(vm: VmRecord, line: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const kind = (vm.providerData.channel as { kind?: string } | undefined)?.kind;
    if (kind === 'unix') return this.links.send(vm, line);
    if (kind !== 'http') throw new Error(`${vm.name} has no guest channel`);
    signal?.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const withdraw = (why: Error): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const box = this.boxes.get(vm.name)?.filter((p) => p !== pending) ?? [];
        if (box.length) this.boxes.set(vm.name, box);
        else this.boxes.delete(vm.name);
        reject(why);
      };
      const onAbort = (): void => withdraw(signal!.reason as Error);
      const timer = setTimeout(
        () => withdraw(new Error(`the guest of ${vm.name} did not ask for its lines within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const pending: Pending = {
        line,
        handed: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.boxes.set(vm.name, [...(this.boxes.get(vm.name) ?? []), pending]);
      this.posted.emit(vm.name);
    });
  }

  /** The lines waiting for this VM's guest, handed over now (their senders are told). */
  take(name: string): string[] {
    const box = this.boxes.get(name);
    if (!box) return [];
    this.boxes.delete(name);
    for (const p of box) p.handed();
    return box.map((p) => p.line);
  }

  has(name: string): boolean {
    return this.boxes.has(name);
  }

  /** Resolves when a line is posted for `name`, after `ms`, or on abort (whichever comes first). */
  waitFor(name: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.posted.off(name, done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.posted.on(name, done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

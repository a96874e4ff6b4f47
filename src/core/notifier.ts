// In-process wake-ups: the worker sleeps until there is work or its poll interval passes; API
// long-polls sleep until their VM changes. The store stays the truth: a waiter always re-reads
// it after waking, so a missed or extra wake-up is harmless (and replicas fall back to polling).
import { EventEmitter } from 'node:events';
import type { VmRecord } from '../store/store.ts';

export class Notifier {
  private readonly emitter = new EventEmitter();
  /** Work was signalled while nobody waited: the next waitForWork returns at once (no lost wake). */
  private workPending = false;

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  /** A VM's record changed; `vm`: a lifecycle transition wrote this row, on `event`. */
  changed(name: string, vm?: VmRecord, event?: string): void {
    if (vm) this.emitter.emit('transition', vm, event);
    this.emitter.emit(`vm:${name}`);
    this.wake();
  }

  /**
   * Called with the row after every transition this process writes (e.g. to follow a VM's state),
   * and the lifecycle event that made it, when known.
   */
  onTransition(listener: (vm: VmRecord, event?: string) => void): () => void {
    this.emitter.on('transition', listener);
    return () => this.emitter.off('transition', listener);
  }

  /** New VMs wait for capacity (intake): admission is worth a look now. */
  queued(): void {
    this.emitter.emit('queued');
    this.wake();
  }

  onQueued(listener: () => void): () => void {
    this.emitter.on('queued', listener);
    return () => this.emitter.off('queued', listener);
  }

  /** Something for the worker (new request, new action). */
  wake(): void {
    this.workPending = true;
    this.emitter.emit('work');
  }

  /** Resolves on the next change of `name`, or after `ms`, or when `signal` aborts. */
  waitForChange(name: string, ms: number, signal?: AbortSignal): Promise<void> {
    return this.waitFor(`vm:${name}`, ms, signal);
  }

  waitForWork(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.workPending) {
      this.workPending = false;
      return Promise.resolve();
    }
    return this.waitFor('work', ms, signal).then(() => {
      this.workPending = false;
    });
  }

  private waitFor(event: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.emitter.off(event, done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.emitter.on(event, done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

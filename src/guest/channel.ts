// Host end of a VM's virtio-serial channel: one connection per VM (QEMU serves one client at a
// time, a second silently takes over), `sync` on connect so the guest replays what we missed,
// messages deduplicated by seq. The socket closes only when QEMU exits: that is `closed`.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { MAX_LINE, parseGuestLine, type GuestMessage } from './protocol.ts';

export interface GuestChannelEvents {
  message: [GuestMessage];
  /** QEMU exited (or the socket vanished): no more messages will come. */
  closed: [reason: string];
  /** Any event line, replays included (roundTrip waits for one). */
  line: [];
}

export class GuestChannel extends EventEmitter<GuestChannelEvents> {
  private sock: net.Socket | null = null;
  private buffer = '';
  private lastSeq: number;
  private ended = false;
  /** The connect in progress or done: a write waits for it. */
  private connecting: Promise<void> | null = null;

  constructor(
    readonly socketPath: string,
    /** Messages with seq ≤ this were applied before (e.g. before a service restart). */
    appliedSeq = 0,
  ) {
    super();
    this.lastSeq = appliedSeq;
  }

  /**
   * Connects and, with `replay` (the default), asks the guest to resend its events: bytes in
   * flight when an earlier host went away are lost. The first host a VM ever has needs no replay
   * (the guest's writes block until then). Rejects if the socket is not there.
   * A unix-socket connect never waits on the peer: it succeeds or fails at once in the kernel.
   * The timer is a backstop only, and a long one: under load the event loop can be late by
   * seconds, the timer then runs before the (already completed) connect's callback, and a short
   * one would drop a connection the guest has seen — its events written meanwhile would be lost.
   */
  connect(opts: { replay?: boolean; timeoutMs?: number } = {}): Promise<void> {
    this.connecting = this.open(opts.timeoutMs ?? 30_000, opts.replay ?? true);
    return this.connecting;
  }

  private open(timeoutMs: number, replay: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(this.socketPath);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`channel ${this.socketPath}: connect timeout`));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        this.sock = sock;
        sock.setEncoding('utf8');
        sock.on('data', (d: string) => this.onData(d));
        sock.on('close', () => this.finish('VM channel closed (QEMU exited)'));
        sock.on('error', () => undefined); // 'close' follows
        if (replay) this.syncAfterFirstRead(sock);
        resolve();
      });
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  /**
   * Asks for a replay, but only once what the guest wrote before we connected has been read. A
   * guest may write its last events and power off between the kernel's connect and our connect
   * callback (a late event loop, e.g. adopting many VMs at start-up): a write to the closed peer
   * fails with EPIPE and Node then destroys the socket with those events unread in its receive
   * buffer, and the VM is reported as stopped unexpectedly. Reading starts on the next tick and
   * the socket's read is done in the next poll phase: the second check phase comes after it.
   * What a guest writes after that read and just before exiting is still lost if it exits in the
   * instant before our write: only a host that (re)connects to a running VM asks for a replay.
   */
  private syncAfterFirstRead(sock: net.Socket): void {
    setImmediate(() =>
      setImmediate(() => {
        if (this.sock === sock) sock.write('sync\n');
      }),
    );
  }

  send(line: string): void {
    if (/[\r\n]/.test(line)) throw new Error('channel lines cannot contain newlines');
    this.sock?.write(`${line}\n`);
  }

  /** Sends one line; resolves once the kernel took it (rejects if the channel is not open). */
  async write(line: string): Promise<void> {
    if (/[\r\n]/.test(line)) throw new Error('channel lines cannot contain newlines');
    if (!this.sock && !this.ended) await this.connecting;
    const sock = this.sock;
    if (!sock) return Promise.reject(new Error(`channel ${this.socketPath} is not open`));
    return new Promise((resolve, reject) => sock.write(`${line}\n`, (e) => (e ? reject(e) : resolve())));
  }

  /**
   * One round trip through the guest: `sync` out, the first replayed event back (ms). Its events
   * are replays, so nothing is applied twice. Needs at least one event sent by the guest.
   */
  async roundTrip(timeoutMs = 30_000): Promise<number> {
    const started = performance.now();
    const back = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('line', done);
        reject(new Error(`channel ${this.socketPath}: no reply to sync within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.off('line', done);
        resolve();
      };
      this.on('line', done);
    });
    await this.write('sync');
    await back;
    return performance.now() - started;
  }

  close(): void {
    this.ended = true;
    this.sock?.destroy();
    this.sock = null;
  }

  get appliedSeq(): number {
    return this.lastSeq;
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let i;
    while ((i = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, i);
      this.buffer = this.buffer.slice(i + 1);
      const msg = parseGuestLine(line);
      if (msg) this.emit('line');
      if (!msg || msg.seq <= this.lastSeq) continue; // unknown, or a replay of what we have
      if (msg.seq !== this.lastSeq + 1) {
        // A gap: something was lost in flight. Ask for a replay rather than apply out of order.
        this.sock?.write('sync\n');
        continue;
      }
      this.lastSeq = msg.seq;
      this.emit('message', msg);
    }
    if (this.buffer.length > MAX_LINE) this.buffer = '';
  }

  private finish(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.sock = null;
    this.emit('closed', reason);
  }
}

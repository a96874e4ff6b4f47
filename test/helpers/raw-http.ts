// HTTP at the socket level, for what fetch cannot do: send headers and stop, trickle bytes,
// stream a body while reading the answer, abort mid-body, and tell who closed the connection.
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export class RawConnection {
  private data = Buffer.alloc(0);
  private closedByUs = false;
  private readonly waiters = new Set<() => void>();
  /** Bytes our socket accepted for sending (what the server read is at most this). */
  written = 0;
  /** Resolves when the connection has ended; `byServer` unless we closed or reset it. */
  readonly closed: Promise<{ byServer: boolean; error?: string }>;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.data = Buffer.concat([this.data, d]);
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      let error: string | undefined;
      socket.on('error', (e: NodeJS.ErrnoException) => {
        error = e.code ?? e.message;
      });
      socket.on('close', () => {
        resolve({ byServer: !this.closedByUs, error });
        this.wake();
      });
    });
  }

  static open(url: string): Promise<RawConnection> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(u.port), u.hostname, () => {
        socket.off('error', reject);
        resolve(new RawConnection(socket));
      });
      socket.once('error', reject);
    });
  }

  get isOpen(): boolean {
    return !this.socket.destroyed && !this.socket.readableEnded;
  }

  /** Everything received so far, as text. */
  get received(): string {
    return this.data.toString('latin1');
  }

  /** Status codes of the responses received so far, interim ones (100 Continue) included. */
  get statuses(): number[] {
    return [...this.received.matchAll(/^HTTP\/1\.1 (\d{3}) /gm)].map((m) => Number(m[1]));
  }

  /** The JSON body of the last complete response, if it has one. */
  get json(): Record<string, unknown> | undefined {
    const at = this.received.lastIndexOf('\r\n\r\n');
    try {
      return JSON.parse(this.received.slice(at + 4)) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }

  /** Writes and waits until the socket accepts more (back-pressure), or the connection ended. */
  async write(chunk: string | Buffer): Promise<boolean> {
    if (!this.isOpen) return false;
    const ok = this.socket.write(chunk);
    this.written += Buffer.byteLength(chunk);
    if (!ok) {
      await Promise.race([new Promise((r) => this.socket.once('drain', r)), this.closed]);
    }
    return this.isOpen;
  }

  /** Sends `chunks` one by one, `everyMs` apart, until they are all sent or the connection ends. */
  async trickle(chunks: Iterable<string>, everyMs: number): Promise<void> {
    for (const chunk of chunks) {
      if (!(await this.write(chunk))) return;
      await Promise.race([sleep(everyMs), this.closed]);
    }
  }

  /** Writes `total` bytes as fast as the connection takes them, until done or the connection ends. */
  async blast(total: number, chunkSize = 64 * 1024): Promise<void> {
    const chunk = Buffer.alloc(chunkSize, 'a');
    while (this.written < total) {
      if (!(await this.write(chunk))) return;
    }
  }

  /** Waits until `predicate` holds for what was received, or the connection has closed. */
  async waitFor(predicate: (c: RawConnection) => boolean): Promise<void> {
    while (!predicate(this) && !this.socket.destroyed) {
      await new Promise<void>((r) => this.waiters.add(r));
    }
  }

  private wake(): void {
    for (const w of this.waiters) w();
    this.waiters.clear();
  }

  /** Half-closes our side (FIN), as a client that stops sending does. */
  end(): void {
    this.closedByUs = true;
    this.socket.end();
  }

  /** Resets the connection (RST), as a killed client does. */
  reset(): void {
    this.closedByUs = true;
    this.socket.resetAndDestroy();
  }
}

/** A request head; `headers` are sent in the order given. */
export function requestHead(method: string, path: string, headers: Record<string, string | number>): string {
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  return `${method} ${path} HTTP/1.1\r\nHost: localhost\r\n${lines.join('\r\n')}${lines.length ? '\r\n' : ''}\r\n`;
}

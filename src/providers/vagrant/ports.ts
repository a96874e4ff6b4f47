// The host port each VM's sshd is forwarded to (slirp hostfwd on 127.0.0.1, in the host's
// network namespace). Two VMs on one port fail (`Could not set up host forwarding rule`), and so
// does a port another program listens on: a port is taken only if no VM of the state dir has it,
// no create in flight reserved it, and it can be bound right now. A port lost to a race between
// the check and QEMU's bind makes that `vagrant up` fail; the provider retries with another.
import net from 'node:net';

export interface PortRange {
  from: number;
  to: number;
}

/** Parses "FROM-TO" (1024 ≤ FROM ≤ TO ≤ 65535). */
export function parsePortRange(text: string): PortRange {
  const m = /^(\d{4,5})-(\d{4,5})$/.exec(text);
  const from = Number(m?.[1]);
  const to = Number(m?.[2]);
  if (!m || from < 1024 || to > 65535 || from > to) {
    throw new Error(`port range must be "FROM-TO" within 1024-65535 (got ${JSON.stringify(text)})`);
  }
  return { from, to };
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

export class PortAllocator {
  private readonly reserved = new Set<number>();
  private next: number;

  constructor(private readonly range: PortRange) {
    this.next = range.from;
  }

  /**
   * A free port, reserved until release(). `used`: ports the state dir's VMs have. Starts after
   * the last port handed out, so that a port just released is not reused at once.
   */
  async take(used: ReadonlySet<number>): Promise<number> {
    const size = this.range.to - this.range.from + 1;
    for (let i = 0; i < size; i++) {
      const port = this.range.from + ((this.next - this.range.from + i) % size);
      if (used.has(port) || this.reserved.has(port)) continue;
      this.reserved.add(port); // before the await: a concurrent take() skips it
      if (await canBind(port)) {
        this.next = port + 1 > this.range.to ? this.range.from : port + 1;
        return port;
      }
      this.reserved.delete(port);
    }
    throw new Error(`no free port in ${this.range.from}-${this.range.to} for a VM's SSH forward`);
  }

  release(port: number): void {
    this.reserved.delete(port);
  }
}

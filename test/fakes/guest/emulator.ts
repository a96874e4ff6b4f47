// Emulated guests for the in-memory provider (`guest_emulator` in its settings): each VM handed
// over runs what bootstrap/linux.sh does, minus the VM — it reports over the service's HTTP
// guest channel, or over a unix socket as QEMU's virtio-serial port (docs/guest-protocol.md),
// and plays the stand-in runner (the JIT config's
// SERVER_URL, runner-protocol.ts): booted → registered → job-started → job-finished →
// runner-exited → poweroff (booted without a JIT config, as a warm pool's VM: booted →
// awaiting-jit, then the `jit` line the host sends, then as before). Whole lifecycles without a hypervisor, for the control plane's
// benchmarks and scale tests. Jobs are queued by the test on the GitHub stand-in as usual.
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeJitConfig } from '../github/runner-protocol.ts';

export interface EmulatorOptions {
  /** Pause before re-posting a message the service was not ready for (503); default 100 ms. */
  retryMs?: number;
}

/** One emulated guest: its events, in order, and how it ended. */
class EmulatedGuest {
  readonly sent: string[] = [];
  private readonly stop = new AbortController();
  ended: string | null = null;

  constructor(
    readonly name: string,
    private readonly config: Record<string, string>,
    private readonly channel: GuestTransport,
  ) {}

  destroy(): void {
    this.stop.abort();
    this.channel.close();
  }

  async run(): Promise<void> {
    try {
      await this.report('booted');
      let encoded = this.config.HATCHERY_JITCONFIG;
      if (!encoded) {
        // Booted ahead (a warm pool): say so, then wait for the host's `jit` line.
        await this.report('awaiting-jit');
        encoded = await this.channel.jit(this.stop.signal);
      }
      const jit = decodeJitConfig(encoded);
      const runner = `${jit.SERVER_URL}/_runner/${jit.RUNNER_ID}`;
      const call = async (path: string, body = ''): Promise<string> => {
        const res = await fetch(`${runner}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${jit.RUNNER_SECRET}`, 'content-type': 'text/plain' },
          body,
          signal: this.stop.signal,
        });
        return res.text();
      };
      if (!(await call('/connect')).startsWith('ok')) throw new Error('the runner could not connect');
      await this.report('registered');
      let job: Record<string, string> | null = null;
      while (!job) {
        const answer = await call('/poll');
        if (answer.startsWith('job'))
          job = Object.fromEntries(
            answer
              .split('\n')
              .slice(1)
              .map((l) => l.split('=', 2) as [string, string]),
          );
        else if (!answer.startsWith('none')) throw new Error(`poll: ${answer.trim()}`);
      }
      await this.report(`job-started ${job.name}`);
      await call(`/jobs/${job.id}/complete?result=Succeeded&exit_code=0`, 'emulated guest: ok\n');
      await this.report('job-finished Succeeded');
      await call('/disconnect');
      await this.report('runner-exited 0');
      await this.report('poweroff');
      this.channel.close();
      this.ended = 'powered off';
    } catch (e) {
      this.ended = this.stop.signal.aborted ? 'destroyed' : `error: ${(e as Error).message}`;
    }
  }

  /** Records the next event and delivers it over the guest's channel. */
  private async report(line: string): Promise<void> {
    this.sent.push(`event ${this.sent.length + 1} ${line}`);
    await this.channel.deliver(this.sent, this.stop.signal);
  }
}

/** How a guest's events reach the service. */
interface GuestTransport {
  /** Delivers the last of `events` (all of them if the service asks for a replay). */
  deliver(events: readonly string[], signal: AbortSignal): Promise<void>;
  /** The JIT config the host sends in a `jit` line (a guest booted without one waits for it). */
  jit(signal: AbortSignal): Promise<string>;
  close(): void;
}

/** A `jit` line's config, once the host sent one. */
class JitBox {
  value: string | null = null;
  private readonly waiters: ((v: string) => void)[] = [];

  /** Takes a host line; true if it was a `jit`. */
  offer(line: string): boolean {
    if (!line.startsWith('jit ')) return false;
    this.value ??= line.slice(4);
    for (const w of this.waiters.splice(0)) w(this.value);
    return true;
  }

  next(signal: AbortSignal): Promise<string> {
    if (this.value !== null) return Promise.resolve(this.value);
    return new Promise((resolve, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
      this.waiters.push(resolve);
    });
  }
}

/** The HTTP guest channel: one POST per event, retried while the service is not ready (503). */
class HttpTransport implements GuestTransport {
  private readonly box = new JitBox();

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly retryMs: number,
  ) {}

  private async post(line: string, signal: AbortSignal): Promise<{ status: number; lines: string[] }> {
    const res = await fetch(this.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'text/plain' },
      body: line,
      signal,
    });
    const lines = (await res.text()).split('\n').filter(Boolean);
    for (const l of lines) this.box.offer(l);
    return { status: res.status, lines };
  }

  /** Long-polls (GET ?wait=10) until the host hands over the JIT config, as linux.sh does. */
  async jit(signal: AbortSignal): Promise<string> {
    while (this.box.value === null) {
      const res = await fetch(`${this.url}?wait=10`, {
        headers: { authorization: `Bearer ${this.token}` },
        signal,
      });
      const text = await res.text();
      if (res.status === 410) throw new Error('the service says this VM has ended');
      if (res.status !== 200) {
        await sleep(this.retryMs, undefined, { signal });
        continue;
      }
      for (const l of text.split('\n').filter(Boolean)) this.box.offer(l);
    }
    return this.box.value;
  }

  async deliver(events: readonly string[], signal: AbortSignal): Promise<void> {
    for (;;) {
      const r = await this.post(events.at(-1)!, signal);
      if (r.status === 503) {
        await sleep(this.retryMs, undefined, { signal });
        continue;
      }
      if (r.status === 410) throw new Error('the service says this VM has ended');
      if (r.status !== 200) throw new Error(`channel: ${r.status} ${r.lines.join(' ')}`);
      if (!r.lines.includes('sync')) return;
      for (const e of events.slice(0, -1)) await this.post(e, signal);
    }
  }

  close(): void {}
}

/**
 * A virtio-serial port as QEMU exposes it: a unix socket the service connects to; it sends
 * `sync` on connect (the guest replays everything), and the socket closes when the VM stops.
 */
class UnixTransport implements GuestTransport {
  private readonly server: net.Server;
  private socket: net.Socket | null = null;
  private events: readonly string[] = [];
  private readonly box = new JitBox();

  constructor(readonly path: string) {
    this.server = net.createServer((sock) => {
      this.socket?.destroy(); // one host client at a time, as QEMU
      this.socket = sock;
      sock.on('error', () => undefined);
      // The host went away: the guest's writes wait for the next one (which asks for a replay).
      sock.on('close', () => {
        if (this.socket === sock) this.socket = null;
      });
      let buffer = '';
      sock.on('data', (d: Buffer) => {
        buffer += d.toString();
        let i;
        while ((i = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, i);
          buffer = buffer.slice(i + 1);
          if (line === 'sync') for (const e of this.events) sock.write(`${e}\n`);
          else this.box.offer(line);
        }
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.path, resolve);
    });
  }

  /**
   * A guest's write to a virtio-serial port blocks while no host is connected and completes on
   * the host's next connection (which then also asks for a replay: `sync`).
   */
  async deliver(events: readonly string[], signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    this.events = events;
    const line = `${events.at(-1)}\n`;
    if (this.socket) {
      this.socket.write(line);
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const done = (sock: net.Socket) => {
        this.server.off('connection', done);
        signal.removeEventListener('abort', fail);
        sock.write(line);
        resolve();
      };
      const fail = () => {
        this.server.off('connection', done);
        reject(signal.reason as Error);
      };
      this.server.on('connection', done);
      signal.addEventListener('abort', fail, { once: true });
    });
  }

  jit(signal: AbortSignal): Promise<string> {
    return this.box.next(signal);
  }

  /** The VM stops: the service sees its channel close. */
  close(): void {
    this.socket?.destroy();
    this.server.close();
  }
}

export class GuestEmulator {
  /** Guests handed over and not destroyed. */
  private readonly guests = new Map<string, EmulatedGuest>();
  /** Every guest ever handed over. */
  private readonly all = new Map<string, EmulatedGuest>();
  private readonly runs = new Set<Promise<void>>();
  private server: http.Server | null = null;
  private readonly socketDir = mkdtempSync(path.join(tmpdir(), 'hatchery-guests-'));

  constructor(private readonly opts: EmulatorOptions = {}) {}

  /** Listens on 127.0.0.1; the URL for the memory provider's `guest_emulator`. */
  async start(): Promise<string> {
    this.server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const m = /^\/vms\/([a-z0-9-]+)$/.exec(req.url ?? '');
        if (req.method === 'POST' && req.url === '/vms') {
          const { name, guest_config } = JSON.parse(body) as {
            name: string;
            guest_config: Record<string, string>;
          };
          void this.add(name, guest_config).then(
            (channel) =>
              res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ channel })),
            (e: Error) => res.writeHead(500).end(e.message),
          );
        } else if (req.method === 'DELETE' && m) {
          res.writeHead(this.remove(m[1]!) ? 204 : 404).end();
        } else {
          res.writeHead(404).end();
        }
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /**
   * Starts a guest: on the HTTP channel if its config names one, else on a unix socket (virtio).
   * The memory provider hands guests over through start()'s URL; a host in this process (the
   * OpenStack burst bench's hypervisor) calls this directly.
   */
  async add(name: string, config: Record<string, string>): Promise<{ kind: 'unix'; path: string } | null> {
    let transport: GuestTransport;
    let channel: { kind: 'unix'; path: string } | null = null;
    if (config.HATCHERY_CHANNEL?.startsWith('http')) {
      transport = new HttpTransport(
        config.HATCHERY_CHANNEL,
        config.HATCHERY_CHANNEL_TOKEN ?? '',
        this.opts.retryMs ?? 100,
      );
    } else {
      const unix = new UnixTransport(path.join(this.socketDir, `${name}.sock`));
      await unix.listen();
      transport = unix;
      channel = { kind: 'unix', path: unix.path };
    }
    const guest = new EmulatedGuest(name, config, transport);
    this.guests.set(name, guest);
    this.all.set(name, guest);
    const run = guest.run().finally(() => this.runs.delete(run));
    this.runs.add(run);
    return channel;
  }

  /** The VM is gone: its guest stops (false: no such guest). */
  remove(name: string): boolean {
    const guest = this.guests.get(name);
    guest?.destroy();
    this.guests.delete(name);
    return guest !== undefined;
  }

  /** Guests handed over and not destroyed yet. */
  live(): string[] {
    return [...this.guests.keys()];
  }

  /** How each guest handed over so far ended (null: still running). */
  endings(): Map<string, string | null> {
    return new Map([...this.all].map(([n, g]) => [n, g.ended]));
  }

  async close(): Promise<void> {
    for (const g of this.guests.values()) g.destroy();
    await Promise.allSettled([...this.runs]);
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r) ?? r(undefined));
    rmSync(this.socketDir, { recursive: true, force: true });
  }
}

// Emulated guests for the in-memory provider (`guest_emulator` in its settings): each VM handed
// over runs what bootstrap/linux.sh does, minus the VM — it reports over the service's HTTP
// guest channel (docs/guest-protocol.md) and plays the stand-in runner (the JIT config's
// SERVER_URL, runner-protocol.ts): booted → registered → job-started → job-finished →
// runner-exited → poweroff. Whole lifecycles without a hypervisor, for the control plane's
// benchmarks and scale tests. Jobs are queued by the test on the GitHub stand-in as usual.
import http from 'node:http';
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
    private readonly retryMs: number,
  ) {}

  destroy(): void {
    this.stop.abort();
  }

  async run(): Promise<void> {
    try {
      await this.report('booted');
      const jit = decodeJitConfig(this.config.HATCHERY_JITCONFIG ?? '');
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
      this.ended = 'powered off';
    } catch (e) {
      this.ended = this.stop.signal.aborted ? 'destroyed' : `error: ${(e as Error).message}`;
    }
  }

  /** Posts the next event until the service takes it (503: not ready yet; sync: replay all). */
  private async report(line: string): Promise<void> {
    this.sent.push(`event ${this.sent.length + 1} ${line}`);
    for (let i = 0; i < this.sent.length;) {
      const res = await fetch(this.config.HATCHERY_CHANNEL!, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${this.config.HATCHERY_CHANNEL_TOKEN}`,
          'content-type': 'text/plain',
        },
        body: this.sent.at(-1)!,
        signal: this.stop.signal,
      });
      const answer = await res.text();
      if (res.status === 503) {
        await sleep(this.retryMs, undefined, { signal: this.stop.signal });
        continue;
      }
      if (res.status === 410) throw new Error('the service says this VM has ended');
      if (res.status !== 200) throw new Error(`channel: ${res.status} ${answer.trim()}`);
      if (answer.split('\n').includes('sync')) {
        for (const e of this.sent.slice(0, -1)) {
          await fetch(this.config.HATCHERY_CHANNEL!, {
            method: 'POST',
            headers: {
              authorization: `Bearer ${this.config.HATCHERY_CHANNEL_TOKEN}`,
              'content-type': 'text/plain',
            },
            body: e,
            signal: this.stop.signal,
          }).then((r) => r.text());
        }
        continue;
      }
      return;
    }
  }
}

export class GuestEmulator {
  /** Guests handed over and not destroyed. */
  private readonly guests = new Map<string, EmulatedGuest>();
  /** Every guest ever handed over. */
  private readonly all = new Map<string, EmulatedGuest>();
  private readonly runs = new Set<Promise<void>>();
  private server: http.Server | null = null;

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
          const guest = new EmulatedGuest(name, guest_config, this.opts.retryMs ?? 100);
          this.guests.set(name, guest);
          this.all.set(name, guest);
          const run = guest.run().finally(() => this.runs.delete(run));
          this.runs.add(run);
          res.writeHead(201).end();
        } else if (req.method === 'DELETE' && m) {
          const guest = this.guests.get(m[1]!);
          guest?.destroy();
          this.guests.delete(m[1]!);
          res.writeHead(guest ? 204 : 404).end();
        } else {
          res.writeHead(404).end();
        }
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
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
  }
}

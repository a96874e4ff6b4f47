// A loopback HTTP proxy in front of one service (Nova, for the fault tests) that misbehaves on
// request: answers an error without passing the request on, passes it on and answers an error
// anyway (the service acted, the client cannot know), or answers late. Every rule applies to
// the next `times` requests it matches, and counts what it did, so a test can check that each
// fault it injected was met.
import http from 'node:http';
import type net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface FaultRule {
  /** `METHOD /path-prefix`, e.g. `POST /v2.1/servers` or `GET /v2.1/servers/`. */
  match: string;
  times: number;
  /** `refuse`: answer `status` unforwarded; `swallow`: forward, then answer `status`; `delay`: forward after `ms`. */
  action:
    { kind: 'refuse'; status: number } | { kind: 'swallow'; status: number } | { kind: 'delay'; ms: number };
  /** How many requests it applied to so far. */
  hits: number;
}

export class FaultProxy {
  readonly rules: FaultRule[] = [];
  private constructor(
    private readonly server: http.Server,
    readonly url: string,
  ) {}

  static async start(target: string): Promise<FaultProxy> {
    const to = new URL(target);
    const ref: { proxy?: FaultProxy } = {};
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => void ref.proxy!.handle(req, Buffer.concat(chunks), res, to));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    ref.proxy = new FaultProxy(server, `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    return ref.proxy;
  }

  inject(match: string, times: number, action: FaultRule['action']): FaultRule {
    const rule = { match, times, action, hits: 0 };
    this.rules.push(rule);
    return rule;
  }

  private rule(req: http.IncomingMessage): FaultRule | undefined {
    const line = `${req.method} ${req.url ?? ''}`;
    const rule = this.rules.find((r) => r.hits < r.times && line.startsWith(r.match));
    if (rule) rule.hits++;
    return rule;
  }

  private async handle(
    req: http.IncomingMessage,
    body: Buffer,
    res: http.ServerResponse,
    to: URL,
  ): Promise<void> {
    const rule = this.rule(req);
    const fault = (status: number) => {
      res.writeHead(status, { 'Content-Type': 'application/json', Connection: 'close' });
      res.end(JSON.stringify({ computeFault: { code: status, message: `injected fault ${status}` } }));
    };
    if (rule?.action.kind === 'refuse') return fault(rule.action.status);
    if (rule?.action.kind === 'delay') await sleep(rule.action.ms);
    const headers = { ...req.headers, host: to.host };
    const upstream = http.request(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers },
      (up) => {
        const parts: Buffer[] = [];
        up.on('data', (d: Buffer) => parts.push(d));
        up.on('end', () => {
          if (rule?.action.kind === 'swallow') return fault(rule.action.status);
          // The client may have given up on a delayed answer: then nobody listens.
          if (res.destroyed) return;
          const { connection: _c, 'transfer-encoding': _t, ...rest } = up.headers;
          res.writeHead(up.statusCode ?? 502, { ...rest, Connection: 'close' });
          res.end(Buffer.concat(parts));
        });
      },
    );
    upstream.on('error', () => fault(502));
    upstream.end(body);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

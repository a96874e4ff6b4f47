// `hatchery relay`: forwards webhooks from a smee-style channel (Server-Sent Events: each event's
// data is a JSON object of the request's headers plus its body) to the service, so that a
// Hatchery behind a firewall can receive a GitHub App's webhooks. Signatures cover the exact
// bytes GitHub sent, so the body is forwarded as the channel carried it: `bodyB` (base64 of the
// raw bytes, as gosmee-compatible channels send it) or `rawBody` (text) when present, `body` when
// it is a string; only a channel that carries nothing but parsed JSON leaves no choice but to
// re-serialize it (smee-client always does: notes/libraries.md), which is said once in the log.
// The connection is re-established with exponential backoff (Last-Event-ID, so a channel that
// keeps history resends what was missed).
import type { Logger } from '../log.ts';
import { readSse, type SseEvent } from './sse.ts';

/** Headers passed on to the service: what GitHub's signature and routing need, nothing else. */
const FORWARDED = [
  'content-type',
  'user-agent',
  'x-github-event',
  'x-github-delivery',
  'x-github-hook-id',
  'x-github-hook-installation-target-id',
  'x-github-hook-installation-target-type',
  'x-hub-signature-256',
  'x-hub-signature',
];
const MIN_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
const FORWARD_TIMEOUT_MS = 10_000;

export interface RelayOptions {
  source: string;
  target: string;
  log: Logger;
  /** Reconnection delays (tests shorten them). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface Forwarded {
  delivery: string | undefined;
  event: string | undefined;
  /** The service's answer; 0: it could not be reached. */
  status: number;
  /** How the body was obtained from the channel's event. */
  body: 'bodyB' | 'rawBody' | 'body-text' | 'reserialized';
}

export function bodyOf(message: Record<string, unknown>): { bytes: Buffer; how: Forwarded['body'] } | null {
  if (typeof message.bodyB === 'string') return { bytes: Buffer.from(message.bodyB, 'base64'), how: 'bodyB' };
  if (typeof message.rawBody === 'string')
    return { bytes: Buffer.from(message.rawBody, 'utf8'), how: 'rawBody' };
  if (typeof message.body === 'string') return { bytes: Buffer.from(message.body, 'utf8'), how: 'body-text' };
  if (message.body !== undefined)
    return { bytes: Buffer.from(JSON.stringify(message.body), 'utf8'), how: 'reserialized' };
  return null;
}

export class Relay {
  private readonly stopped = new AbortController();
  private lastEventId: string | undefined;
  private warnedReserialized = false;
  private running: Promise<void> | undefined;
  /** Connections opened so far. */
  connections = 0;
  readonly forwarded: Forwarded[] = [];

  constructor(private readonly opts: RelayOptions) {}

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.stopped.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    const min = this.opts.minBackoffMs ?? MIN_BACKOFF_MS;
    const max = this.opts.maxBackoffMs ?? MAX_BACKOFF_MS;
    let delay = min;
    const { log } = this.opts;
    while (!this.stopped.signal.aborted) {
      try {
        await readSse(this.opts.source, {
          signal: this.stopped.signal,
          lastEventId: this.lastEventId,
          onOpen: () => {
            this.connections++;
            delay = min; // a connection that opened resets the backoff
            log.info({ source: this.opts.source }, 'relay connected');
          },
          onRetry: (ms) => {
            delay = Math.min(Math.max(ms, min), max);
          },
          onEvent: (e) => this.onEvent(e),
        });
        if (this.stopped.signal.aborted) break;
        log.warn(
          { source: this.opts.source, retry_ms: delay },
          'relay: the channel ended the stream; reconnecting',
        );
      } catch (e) {
        if (this.stopped.signal.aborted) break;
        log.warn(
          { source: this.opts.source, err: (e as Error).message, retry_ms: delay },
          'relay: connection failed',
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.stopped.signal.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        });
      });
      delay = Math.min(delay * 2, max);
    }
  }

  private async onEvent(e: SseEvent): Promise<void> {
    if (e.id !== undefined) this.lastEventId = e.id;
    if (e.event !== 'message') return; // ready, ping
    let message: Record<string, unknown>;
    try {
      const parsed = JSON.parse(e.data) as unknown;
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new Error('not an object');
      message = parsed as Record<string, unknown>;
    } catch {
      this.opts.log.warn({ id: e.id }, 'relay: an event whose data is not a JSON object; skipped');
      return;
    }
    const body = bodyOf(message);
    if (!body) {
      this.opts.log.warn({ id: e.id }, 'relay: an event without a body; skipped');
      return;
    }
    if (body.how === 'reserialized' && !this.warnedReserialized) {
      this.warnedReserialized = true;
      this.opts.log.warn(
        'relay: the channel sends parsed JSON only; its re-serialization may not be the bytes GitHub signed',
      );
    }
    const headers: Record<string, string> = {};
    for (const h of FORWARDED) if (typeof message[h] === 'string') headers[h] = message[h];
    headers['content-type'] ??= 'application/json';
    const result: Forwarded = {
      delivery: headers['x-github-delivery'],
      event: headers['x-github-event'],
      status: 0,
      body: body.how,
    };
    try {
      const res = await fetch(this.opts.target, {
        method: 'POST',
        headers,
        body: new Uint8Array(body.bytes),
        signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
      });
      await res.arrayBuffer();
      result.status = res.status;
    } catch (err) {
      this.opts.log.warn(
        { delivery: result.delivery, err: (err as Error).message },
        'relay: the target could not be reached',
      );
    }
    this.forwarded.push(result);
    if (this.forwarded.length > 1000) this.forwarded.shift();
    const level = result.status >= 200 && result.status < 300 ? 'info' : 'warn';
    this.opts.log[level]({ ...result }, 'relay: forwarded');
  }
}

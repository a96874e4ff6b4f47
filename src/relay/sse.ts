// A small Server-Sent Events reader (the WHATWG event-stream format) over fetch: one connection,
// events handed over as they complete. Data is kept as the exact text received (no JSON
// round trip), which is what the relay needs to forward webhook bodies byte for byte.
export interface SseEvent {
  /** `message` unless the stream named it (smee sends `ready` and `ping` too). */
  event: string;
  data: string;
  id: string | undefined;
}

export interface SseOptions {
  signal: AbortSignal;
  /** Sent as Last-Event-ID: a server that keeps history resends what came after it. */
  lastEventId?: string;
  onOpen?: () => void;
  onEvent: (e: SseEvent) => void | Promise<void>;
  /** The server asked for this reconnection delay (`retry:`), in ms. */
  onRetry?: (ms: number) => void;
}

export class SseError extends Error {
  override name = 'SseError';
}

/** Reads one connection until the server ends it (resolves) or it fails (rejects). */
export async function readSse(url: string, opts: SseOptions): Promise<void> {
  const res = await fetch(url, {
    headers: {
      accept: 'text/event-stream',
      'cache-control': 'no-cache',
      ...(opts.lastEventId ? { 'last-event-id': opts.lastEventId } : {}),
    },
    signal: opts.signal,
  });
  if (res.status !== 200) throw new SseError(`${url}: HTTP ${res.status}`);
  const type = res.headers.get('content-type') ?? '';
  if (!type.startsWith('text/event-stream'))
    throw new SseError(`${url}: not an event stream (${type || 'no type'})`);
  if (!res.body) throw new SseError(`${url}: no body`);
  opts.onOpen?.();

  const decoder = new TextDecoder('utf-8');
  let buffer = '';
  let data: string[] = [];
  let event = '';
  let id: string | undefined;
  let first = true;
  for await (const chunk of res.body) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true });
    if (first && buffer.length > 0) {
      if (buffer.charCodeAt(0) === 0xfeff) buffer = buffer.slice(1);
      first = false;
    }
    // Lines end with CRLF, LF or CR; a CR at the very end may be half of a CRLF: wait for more.
    for (;;) {
      const m = /\r\n|\n|\r(?!$)/.exec(buffer);
      if (!m) break;
      const line = buffer.slice(0, m.index);
      buffer = buffer.slice(m.index + m[0].length);
      if (line === '') {
        if (data.length) await opts.onEvent({ event: event || 'message', data: data.join('\n'), id });
        data = [];
        event = '';
        continue;
      }
      if (line.startsWith(':')) continue; // a comment (keep-alive)
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') data.push(value);
      else if (field === 'event') event = value;
      else if (field === 'id' && !value.includes('\0')) id = value;
      else if (field === 'retry' && /^\d+$/.test(value)) opts.onRetry?.(Number(value));
    }
  }
}

// Request limits: what an unauthenticated client can make the service spend before a route even
// looks at its request. Three bounds, all on *receiving* a request, never on answering it (a
// long-poll or the legacy blocking create may answer after twenty minutes of client silence):
//  - size: a body over server.body_limit is refused with 413 and the connection closed, from its
//    Content-Length before a byte of it is read, or as soon as a chunked body exceeds the limit;
//  - time: Node's own request/headers deadlines (408), checked often enough to mean something;
//  - logging: a client that goes away mid-body is one info line, not an error with a stack.
// See docs/adr/2026-12-02-request-limits.md for what Node's server options really do.
import http, { type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../log.ts';

export interface ServerLimits {
  /** Time to receive a whole request, headers and body, from its first byte (408 after). */
  requestTimeoutMs: number;
  /** Time to receive the headers (slowloris), from the request's first byte (408 after). */
  headersTimeoutMs: number;
}

/**
 * An HTTP server for `app` with the receive deadlines set. Node enforces requestTimeout and
 * headersTimeout from a timer that runs every connectionsCheckingInterval (default 30 s, which
 * would let a 1 s deadline run 31 s); a connection leaves that check once its request is fully
 * received, so an answer may take as long as it needs. server.timeout (socket inactivity) stays 0
 * for the same reason: a long-poll's socket is silent by design.
 */
export function createHttpServer(app: RequestListener, limits: ServerLimits): http.Server {
  const shortest = Math.min(limits.requestTimeoutMs, limits.headersTimeoutMs);
  const server = http.createServer(
    {
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(shortest / 10))),
    },
    app,
  );
  // An idle keep-alive connection waits this long for its next request (the deadlines above
  // start with that request's first byte); it must not delay shutdown much either.
  server.keepAliveTimeout = 5000;
  // curl sends "Expect: 100-continue" before a large body and waits for "100 Continue", which
  // Node would otherwise send at once; the body reader decides (none for a body it refuses).
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    server.emit('request', req, res);
  });
  return server;
}

/**
 * Connections the kernel may hold for us before we accept them. Node's default, 511, overflows
 * when a crowd of slow clients is cut off at once and reconnects: legitimate connects are then
 * dropped and retried a second or more later. Linux caps it at net.core.somaxconn (4096 by
 * default; Go's net package asks for that value too).
 */
export const LISTEN_BACKLOG = 4096;

export interface BodyLimit {
  maxBytes: number;
  /** The limit as configured ("256kb"), for messages. */
  text: string;
  log: Logger;
}

const EMPTY = Buffer.alloc(0);

/**
 * Reads the raw body (signatures cover the exact bytes) into req.body, within the limit.
 * Requests without a body get an empty buffer.
 */
export function readBody(limit: BodyLimit) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const declared = req.headers['content-length'];
    const chunked = req.headers['transfer-encoding'] !== undefined;
    if (!chunked && (declared === undefined || Number(declared) === 0)) {
      req.body = EMPTY;
      next();
      return;
    }
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
      refuse(
        req,
        res,
        limit,
        415,
        'unsupported_encoding',
        `Content-Encoding ${encoding}: send the body as is`,
      );
      return;
    }
    const expected = declared === undefined ? null : Number(declared);
    if (expected !== null && expected > limit.maxBytes) {
      refuseTooLarge(req, res, limit, expected);
      return;
    }
    if (/100-continue/i.test(req.headers.expect ?? '')) res.writeContinue();

    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const settle = (): void => {
      settled = true;
      req.off('data', onData);
    };
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > limit.maxBytes) {
        settle();
        req.pause(); // read no further: the connection closes after the answer
        refuseTooLarge(req, res, limit, expected);
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => {
      if (settled) return;
      settle();
      req.body = Buffer.concat(chunks, received);
      next();
    });
    // Node destroys an aborted request with an "aborted" error; 'close' reports it, once.
    req.on('error', () => {});
    req.once('close', () => {
      if (settled) return;
      settle();
      const timedOut =
        (req.socket?.errored as NodeJS.ErrnoException | null)?.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      limit.log.info(
        {
          method: req.method,
          path: req.path,
          received,
          expected,
          delivery: req.get('x-github-delivery') ?? req.get('x-hatchery-delivery'),
        },
        timedOut
          ? 'request cut off: body not received within server.request_timeout (408)'
          : 'request aborted: the client closed the connection before sending the whole body',
      );
    });
  };
}

function refuseTooLarge(req: Request, res: Response, limit: BodyLimit, expected: number | null): void {
  refuse(req, res, limit, 413, 'too_large', `body larger than ${limit.text} (server.body_limit)`, expected);
}

/**
 * Answers without reading (the rest of) the body and closes the connection: on a kept-alive
 * connection Node would otherwise read and discard the whole body to reach the next request.
 */
function refuse(
  req: Request,
  res: Response,
  limit: BodyLimit,
  status: number,
  error: string,
  message: string,
  expected: number | null = null,
): void {
  const socket = req.socket;
  socket.once('close', () => {
    limit.log.debug(
      { status, expected, read: socket.bytesRead },
      'request body refused unread; connection closed',
    );
  });
  res.status(status).set('Connection', 'close').json({ error, message });
}

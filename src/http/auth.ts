// Request authentication: HMAC signatures over the raw body (webhook-style routes) and bearer
// tokens (API). Both compare in constant time and never log the presented secret.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { verify, type HmacAlgorithm } from '../crypto/hmac.ts';

/** The raw body as received (routes use express.raw so signatures cover the exact bytes). */
export function rawBody(req: Request): Buffer {
  return Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
}

export function hasValidSignature(
  req: Request,
  secret: string,
  headers: { header: string; algorithm: HmacAlgorithm }[],
): boolean {
  const body = rawBody(req);
  return headers.some(({ header, algorithm }) => verify(algorithm, secret, body, req.get(header)));
}

/** Hashing both sides first makes the comparison constant-time whatever the lengths. */
export function tokensEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export function bearerAuth(token: string | undefined) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (!token) {
      res
        .status(503)
        .json({ error: 'api_disabled', message: 'the API is disabled: set api.token (HATCHERY_API_TOKEN)' });
      return;
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '');
    if (!m || !tokensEqual(m[1]!, token)) {
      res
        .set('WWW-Authenticate', 'Bearer')
        .status(401)
        .json({ error: 'unauthorized', message: 'missing or wrong bearer token' });
      return;
    }
    next();
  };
}

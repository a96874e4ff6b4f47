// Webhook signatures: HMAC of the raw request bytes, compared in constant time.
import { createHmac, timingSafeEqual } from 'node:crypto';

export type HmacAlgorithm = 'sha1' | 'sha256';

/** `sha256=<hex>` as GitHub and Hatchery send it in X-Hub-Signature-256 / X-Hatchery-Signature-256. */
export function sign(algorithm: HmacAlgorithm, secret: string, body: Buffer | string): string {
  return `${algorithm}=${createHmac(algorithm, secret).update(body).digest('hex')}`;
}

/**
 * True when `header` is a valid `<algorithm>=<hex>` signature of `body`. The comparison does not
 * leak where the strings differ; a malformed header is simply invalid.
 */
export function verify(
  algorithm: HmacAlgorithm,
  secret: string,
  body: Buffer,
  header: string | undefined,
): boolean {
  if (!header || !secret) return false;
  const expected = Buffer.from(sign(algorithm, secret, body), 'latin1');
  const given = Buffer.from(header.trim().toLowerCase(), 'latin1');
  if (given.length !== expected.length) {
    // Still spend the same work as a real comparison.
    timingSafeEqual(expected, expected);
    return false;
  }
  return timingSafeEqual(expected, given);
}

// Host key fingerprints in OpenSSH's notation (`ssh-keygen -lf`: `SHA256:` + unpadded base64 of
// the sha256 of the key blob), so that an operator can paste what `ssh-keygen` prints.
import { createHash, timingSafeEqual } from 'node:crypto';

export const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;

export function fingerprintOf(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** Constant-time comparison of two fingerprints (a malformed one never matches). */
export function sameFingerprint(a: string, b: string): boolean {
  if (!FINGERPRINT.test(a) || !FINGERPRINT.test(b)) return false;
  return timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

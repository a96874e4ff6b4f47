// Per-VM credentials of the HTTP guest channel: minted at provision, handed to the guest in its
// config only, kept by the service as a hash, compared in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isVmName } from './naming.ts';

/** `<vm name>.<43 base64url characters>`: the name says which VM's hash to compare with. */
export function mintChannelToken(vmName: string): { token: string; hash: string } {
  const token = `${vmName}.${randomBytes(32).toString('base64url')}`;
  return { token, hash: hashChannelToken(token) };
}

export function hashChannelToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The VM a token claims to be for, or null when it cannot be one of ours at all. */
export function channelTokenVm(token: string): string | null {
  const i = token.lastIndexOf('.');
  if (i <= 0 || !/^[A-Za-z0-9_-]{43}$/.test(token.slice(i + 1))) return null;
  const name = token.slice(0, i);
  return isVmName(name) ? name : null;
}

/** Constant-time: both sides are fixed-length digests. */
export function channelTokenMatches(token: string, hash: string | null): boolean {
  if (!hash || !/^[0-9a-f]{64}$/.test(hash)) return false;
  return timingSafeEqual(Buffer.from(hashChannelToken(token), 'hex'), Buffer.from(hash, 'hex'));
}

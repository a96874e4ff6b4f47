// Compatible with `openssl enc -aes-256-cbc -pbkdf2 -a -k PASSWORD` (OpenSSL 1.1.1+/3.x defaults):
// base64( "Salted__" | 8-byte salt | AES-256-CBC(PKCS#7) ciphertext ), key and IV derived together
// by PBKDF2-HMAC-SHA256(password, salt, 10000 iterations, 48 bytes) split 32 + 16.
// SpinW's workflows send exactly this, with the base64 line breaks turned into `_`.
import { createCipheriv, createDecipheriv, pbkdf2Sync, randomBytes } from 'node:crypto';

const MAGIC = Buffer.from('Salted__', 'latin1');
const ITERATIONS = 10_000;

function deriveKeyIv(password: string, salt: Buffer): { key: Buffer; iv: Buffer } {
  const material = pbkdf2Sync(Buffer.from(password, 'utf8'), salt, ITERATIONS, 48, 'sha256');
  return { key: material.subarray(0, 32), iv: material.subarray(32, 48) };
}

/** Same output format as the openssl command (base64 wrapped at 64 columns, trailing newline). */
export function opensslEncrypt(plaintext: string, password: string, salt: Buffer = randomBytes(8)): string {
  const { key, iv } = deriveKeyIv(password, salt);
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  const body = Buffer.concat([MAGIC, salt, cipher.update(plaintext, 'utf8'), cipher.final()]);
  const b64 = body.toString('base64');
  return (b64.match(/.{1,64}/g) ?? []).join('\n') + '\n';
}

export class DecryptError extends Error {
  override name = 'DecryptError';
}

/**
 * Decrypts openssl output. Accepts SpinW's transport encoding (`_` for newlines) and
 * surrounding whitespace. Throws DecryptError with a message safe to show to the caller.
 */
export function opensslDecrypt(encoded: string, password: string): string {
  const b64 = encoded.replace(/_/g, '\n').replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new DecryptError('token is not base64 text');
  const raw = Buffer.from(b64, 'base64');
  if (raw.length < 32 || !raw.subarray(0, 8).equals(MAGIC)) {
    throw new DecryptError(
      'token is not openssl "Salted__" output (use openssl enc -aes-256-cbc -pbkdf2 -a)',
    );
  }
  const { key, iv } = deriveKeyIv(password, raw.subarray(8, 16));
  const decipher = createDecipheriv('aes-256-cbc', key, iv);
  try {
    return Buffer.concat([decipher.update(raw.subarray(16)), decipher.final()]).toString('utf8');
  } catch {
    throw new DecryptError('cannot decrypt token: wrong password or corrupted token');
  }
}

// About 1 wrong password in 256 yields valid-looking padding and garbage: only a plaintext that
// looks like a GitHub token is accepted.
const TOKEN_PATTERN =
  /^(ghp_[A-Za-z0-9]{20,255}|github_pat_[A-Za-z0-9_]{20,255}|gh[ousr]_[A-Za-z0-9]{20,255})$/;

/** Decrypts a legacy encrypted PAT and checks it looks like a GitHub token. */
export function decryptGitHubToken(encoded: string, password: string): string {
  const token = opensslDecrypt(encoded, password).replace(/\r?\n$/, '');
  if (!TOKEN_PATTERN.test(token)) {
    throw new DecryptError('cannot decrypt token: wrong password, or the plaintext is not a GitHub token');
  }
  return token;
}

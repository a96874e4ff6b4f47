// The GitHub App's private key: read from its file, checked, and normalised to PKCS#8 (GitHub
// hands out PKCS#1 "RSA PRIVATE KEY" PEMs; the JWT library signs with WebCrypto, which wants
// PKCS#8). Errors name the file and what is wrong with it, never any of its content.
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';

export class AppKeyError extends Error {
  override name = 'AppKeyError';
}

/** The key as a PKCS#8 PEM; throws AppKeyError when the file is missing or not an RSA private key. */
export function readAppPrivateKey(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new AppKeyError(
      `${file}: cannot read the private key (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  let key;
  try {
    key = createPrivateKey({ key: text, format: 'pem' });
  } catch {
    // The parser's message may quote the input: say only what was expected.
    throw new AppKeyError(
      `${file}: not a PEM private key (expected the .pem file GitHub generates for the App)`,
    );
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new AppKeyError(
      `${file}: a ${key.asymmetricKeyType ?? 'non-RSA'} key; GitHub Apps sign their JWTs with RSA (RS256)`,
    );
  }
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

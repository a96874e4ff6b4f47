import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { sign, verify } from '../../src/crypto/hmac.ts';
import {
  decryptGitHubToken,
  DecryptError,
  opensslDecrypt,
  opensslEncrypt,
} from '../../src/crypto/openssl.ts';

const PAT = 'ghp_' + 'A1b2C3d4E5f6G7h8I9j0'.repeat(2);

/** Exactly what SpinW's workflow runs. */
function spinwEncrypt(token: string, password: string): string {
  return execFileSync(
    'sh',
    ['-c', 'echo "$PAT" | openssl enc -e -aes-256-cbc -pbkdf2 -a -k "$PW" | tr "\\n" "_"'],
    {
      env: { ...process.env, PAT: token, PW: password },
    },
  ).toString();
}

describe('openssl-compatible token encryption', () => {
  it('decrypts what the openssl CLI encrypted, in SpinW transport form', () => {
    const sent = spinwEncrypt(PAT, 'pw with spaces');
    assert.match(sent, /_/, 'newlines are sent as underscores');
    assert.equal(decryptGitHubToken(sent, 'pw with spaces'), PAT);
  });
  it('produces output the openssl CLI decrypts', () => {
    const enc = opensslEncrypt(`${PAT}\n`, 'secret');
    const dec = execFileSync('openssl', ['enc', '-d', '-aes-256-cbc', '-pbkdf2', '-a', '-k', 'secret'], {
      input: enc,
    });
    assert.equal(dec.toString(), `${PAT}\n`);
  });
  it('refuses a wrong password with a clear message, across many salts', () => {
    // About 1 in 256 wrong passwords yields valid padding: the token check must still refuse.
    for (let i = 0; i < 600; i++) {
      const enc = opensslEncrypt(`${PAT}\n`, 'right');
      assert.throws(
        () => decryptGitHubToken(enc, `wrong${i}`),
        (e: Error) => {
          assert.ok(e instanceof DecryptError);
          assert.match(e.message, /wrong password/);
          assert.ok(!e.message.includes(PAT));
          return true;
        },
      );
    }
  });
  it('refuses text that is not openssl output', () => {
    assert.throws(() => opensslDecrypt('not base64!', 'x'), /not base64/);
    assert.throws(
      () => opensslDecrypt(Buffer.from('hello world, no salt here at all!').toString('base64'), 'x'),
      /Salted__/,
    );
  });
  it('refuses a decrypted plaintext that is not a GitHub token', () => {
    assert.throws(() => decryptGitHubToken(opensslEncrypt('hello\n', 'pw'), 'pw'), /not a GitHub token/);
  });
});

describe('HMAC signatures', () => {
  const body = Buffer.from('{"a":1}');
  it('verifies sha256 and sha1 signatures of the raw body', () => {
    assert.equal(verify('sha256', 's3cret', body, sign('sha256', 's3cret', body)), true);
    assert.equal(verify('sha1', 's3cret', body, sign('sha1', 's3cret', body)), true);
  });
  it('matches the openssl dgst signature a curl caller computes', () => {
    const hex = execFileSync(
      'sh',
      ['-c', 'printf %s "$B" | openssl dgst -sha1 -hmac "$S" | sed "s/^.*= //"'],
      {
        env: { ...process.env, B: body.toString(), S: 's3cret' },
      },
    )
      .toString()
      .trim();
    assert.equal(verify('sha1', 's3cret', body, `sha1=${hex}`), true);
  });
  it('rejects wrong, truncated, missing and cross-algorithm signatures', () => {
    const good = sign('sha256', 's3cret', body);
    assert.equal(verify('sha256', 'other', body, good), false);
    assert.equal(verify('sha256', 's3cret', Buffer.from('{"a":2}'), good), false);
    assert.equal(verify('sha256', 's3cret', body, good.slice(0, -1)), false);
    assert.equal(verify('sha256', 's3cret', body, undefined), false);
    assert.equal(verify('sha1', 's3cret', body, good), false);
    assert.equal(
      verify('sha256', '', body, sign('sha256', '', body)),
      false,
      'an empty secret never verifies',
    );
  });
});

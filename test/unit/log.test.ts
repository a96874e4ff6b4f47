import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger, redactSecrets } from '../../src/log.ts';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { log: createLogger({ level: 'debug', destination: stream }), lines };
}

describe('log', () => {
  it('redacts secrets by key, at the top level and one level down', () => {
    const { log, lines } = capture();
    log.info(
      {
        token: 'ghp_top',
        secret: 's-top',
        credential: 'enc-top',
        config: { token: 'ghp_nested', openssl_password: 'pw-nested', HATCHERY_JITCONFIG: 'jit-nested' },
        req: { headers: { authorization: 'Bearer abc', 'x-hub-signature': 'sha1=00' } },
        vm: 'hatchery-linux-1-1-abcdef',
      },
      'something happened',
    );
    const text = lines.join('');
    for (const secret of [
      'ghp_top',
      's-top',
      'enc-top',
      'ghp_nested',
      'pw-nested',
      'jit-nested',
      'Bearer abc',
      'sha1=00',
    ]) {
      assert.ok(!text.includes(secret), `${secret} was logged: ${text}`);
    }
    const entry = JSON.parse(text) as Record<string, unknown>;
    assert.equal(entry.token, '[redacted]');
    assert.equal(entry.vm, 'hatchery-linux-1-1-abcdef', 'ordinary fields stay');
    assert.equal(entry.msg, 'something happened');
  });

  it('redacts at any depth, in arrays, whatever the case of the key, and keys ending in token/secret/password', () => {
    const { log, lines } = capture();
    const deep = {
      a: { b: { c: { d: { Authorization: 'Bearer deep-1' } } } },
      list: [{ HATCHERY_CHANNEL_TOKEN: 'chan-2' }, 'plain', [{ apiToken: 'api-3' }]],
      env: { HATCHERY_JITCONFIG: 'jit-4', GITHUB_WEBHOOK_SECRET: 'hook-5' },
      headers: { 'X-Hub-Signature-256': 'sha256=66' },
      user: { password: 'pw-7', name: 'alice' },
      tokens: 3,
    };
    const before = JSON.stringify(deep);
    log.info(deep, 'deep');
    const text = lines.join('');
    for (const secret of ['deep-1', 'chan-2', 'api-3', 'jit-4', 'hook-5', 'sha256=66', 'pw-7']) {
      assert.ok(!text.includes(secret), `${secret} was logged: ${text}`);
    }
    const entry = JSON.parse(text) as typeof deep;
    assert.equal(entry.user.name, 'alice', 'ordinary fields stay, beside a secret');
    assert.equal(entry.tokens, 3, 'a count of tokens is not a token');
    assert.equal(entry.list[1] as string, 'plain');
    assert.equal(JSON.stringify(deep), before, "the caller's object is not changed");
  });

  it('returns the same object when nothing is secret (no copy), and cuts cycles', () => {
    const plain = { vm: 'x', n: 1, nested: { state: 'idle' }, list: [1, 2] };
    assert.equal(redactSecrets(plain), plain);
    const cyclic: Record<string, unknown> = { token: 'ghp_cycle', name: 'c' };
    cyclic.self = cyclic;
    const out = redactSecrets(cyclic) as Record<string, unknown>;
    assert.equal(out.token, '[redacted]');
    assert.equal(out.self, '[circular]');
    // The same object twice (not a cycle) is redacted both times.
    const shared = { secret: 's' };
    const twice = redactSecrets({ a: shared, b: shared }) as Record<string, Record<string, unknown>>;
    assert.deepEqual([twice.a!.secret, twice.b!.secret], ['[redacted]', '[redacted]']);
  });

  it('logs errors through pino as before (message and stack, no copy)', () => {
    const { log, lines } = capture();
    log.error({ err: new Error('boom'), vm: 'v' }, 'failed');
    const entry = JSON.parse(lines.join('')) as { err: { message: string; stack: string } };
    assert.equal(entry.err.message, 'boom');
    assert.match(entry.err.stack, /Error: boom/);
  });
});

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/log.ts';

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
});

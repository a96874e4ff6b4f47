// server.body_limit and the receive deadlines: sizes as operators write them, and the
// config refusing what the HTTP server could not honour.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseByteSize } from '../../src/config/bytes.ts';
import { ConfigError, loadConfig } from '../../src/config/load.ts';

describe('parseByteSize', () => {
  it('reads sizes with the 1024-based units Express used', () => {
    assert.equal(parseByteSize('256kb'), 256 * 1024);
    assert.equal(parseByteSize('1MB'), 1024 * 1024);
    assert.equal(parseByteSize(' 1.5 mb '), 1.5 * 1024 * 1024);
    assert.equal(parseByteSize('65536'), 65536);
    assert.equal(parseByteSize('10b'), 10);
    assert.equal(parseByteSize('1gb'), 1024 ** 3);
  });

  it('refuses anything else (Express treated an unreadable limit as no limit at all)', () => {
    for (const bad of ['', 'abc', '256 kilobytes', '-1kb', '0', '0.1b', '1e6', '1tb', 'kb']) {
      assert.equal(parseByteSize(bad), null, bad);
    }
  });
});

describe('[server] limits in the config', () => {
  const load = (env: Record<string, string>) =>
    loadConfig({ env, dotenv: false, cwd: '/nonexistent' }).config;
  const rejects = (env: Record<string, string>, key: RegExp) =>
    assert.throws(
      () => load(env),
      (e: Error) => e instanceof ConfigError && key.test(e.message),
    );

  it('defaults to 256kb, 30 s to receive a request, 10 s for its headers', () => {
    const { server } = load({});
    assert.equal(server.body_limit, '256kb');
    assert.equal(server.request_timeout, 60);
    assert.equal(server.headers_timeout, 30);
  });

  it('takes a body limit in bytes from the environment', () => {
    assert.equal(load({ HATCHERY_SERVER_BODY_LIMIT: '65536' }).server.body_limit, '65536');
    assert.equal(load({ HATCHERY_SERVER_BODY_LIMIT: '1mb' }).server.body_limit, '1mb');
  });

  it('names the key of a bad size or deadline', () => {
    rejects({ HATCHERY_SERVER_BODY_LIMIT: 'lots' }, /server\.body_limit/);
    rejects({ HATCHERY_SERVER_REQUEST_TIMEOUT: '0' }, /server\.request_timeout/);
    rejects({ HATCHERY_SERVER_HEADERS_TIMEOUT: '-1' }, /server\.headers_timeout/);
  });

  it("refuses a headers deadline longer than the whole request's (Node would throw at start-up)", () => {
    rejects(
      { HATCHERY_SERVER_HEADERS_TIMEOUT: '61' },
      /server\.headers_timeout: must not exceed server\.request_timeout/,
    );
    assert.equal(load({ HATCHERY_SERVER_HEADERS_TIMEOUT: '45' }).server.headers_timeout, 45);
  });
});

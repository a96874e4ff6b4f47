import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseLegacyBody } from '../../src/http/legacy-body.ts';
import { spinwData } from '../helpers/legacy-clients.ts';

/** The body the distributhor/workflow-webhook v1 action builds around SpinW's `data`. */
const envelope = (data: unknown, repository = 'SpinW/spinw') => ({
  repository,
  ref: '',
  commit: 'abc',
  trigger: 'push',
  workflow: 'CI',
  data,
});

describe('parseLegacyBody', () => {
  it('parses the current SpinW body', () => {
    const r = parseLegacyBody(
      envelope({ ghcontrol: 'create', servers: 'linux, windows', PAT: 'U2Fs_dGVk_', ID: '123_4' }),
      '4',
    );
    assert.deepEqual(r, {
      action: 'create',
      repository: 'SpinW/spinw',
      servers: ['linux', 'windows'],
      id: '123_4',
      key: '123_4',
      pat: 'U2Fs_dGVk_',
    });
  });
  it("parses the body SpinW's curl step builds: create with PAT, destroy without", () => {
    // `--data "{\"data\":$DATA, \"repository\":\"$GITHUB_REPOSITORY\"}"`
    const body = (data: string) => JSON.parse(`{"data":${data}, "repository":"SpinW/spinw"}`) as unknown;
    const create = parseLegacyBody(
      body(spinwData({ ghcontrol: 'create', servers: 'linux, windows', pat: 'U2Fs_dGVk_', id: '98765_12' })),
      undefined,
    );
    assert.deepEqual(create, {
      action: 'create',
      repository: 'SpinW/spinw',
      servers: ['linux', 'windows'],
      id: '98765_12',
      key: '98765_12',
      pat: 'U2Fs_dGVk_',
    });
    const destroy = parseLegacyBody(
      body(spinwData({ ghcontrol: 'destroy', servers: 'linux, windows', id: '98765_12' })),
      undefined,
    );
    assert.deepEqual([destroy.action, destroy.key, destroy.pat], ['destroy', '98765_12', null]);
  });
  it('strips brackets and spaces, maps linux-2 to linux, dedupes', () => {
    const r = parseLegacyBody(
      envelope({ ghcontrol: 'destroy', servers: '[linux, linux-2, "windows"]', ID: '1_1' }),
      undefined,
    );
    assert.deepEqual(r.servers, ['linux', 'windows']);
  });
  it('accepts the old single "server" with no ID, keyed by the run number', () => {
    const r = parseLegacyBody(envelope({ ghcontrol: 'create', server: 'linux' }), '17');
    assert.deepEqual([r.servers, r.id, r.key], [['linux'], null, 'run17']);
  });
  it('accepts data sent as a JSON string', () => {
    assert.equal(
      parseLegacyBody(envelope(JSON.stringify({ ghcontrol: 'create', servers: 'linux', ID: '9_9' })), '9')
        .key,
      '9_9',
    );
  });
  it('names the field at fault', () => {
    const cases: [unknown, RegExp][] = [
      [envelope({ servers: 'linux', ID: '1' }), /data.ghcontrol: required/],
      [
        envelope({ ghcontrol: 'reboot', servers: 'linux', ID: '1' }),
        /data.ghcontrol: unknown action "reboot"/,
      ],
      [envelope({ ghcontrol: 'create', ID: '1' }), /data.servers: required/],
      [envelope({ ghcontrol: 'create', servers: 'linux', ID: '../../etc' }), /data.ID: must be/],
      [envelope({ ghcontrol: 'create', servers: 'linux;reboot', ID: '1' }), /data.servers/],
      [envelope({ ghcontrol: 'create', servers: 'linux', ID: '1' }, '../x'), /repository: must be/],
      [envelope({ ghcontrol: 'create', servers: 'linux' }), /data.ID: required/],
      [{ repository: 'a/b' }, /data: required/],
      [[1], /body: expected a JSON object/],
    ];
    for (const [body, message] of cases) assert.throws(() => parseLegacyBody(body, 'not-a-number'), message);
  });
});

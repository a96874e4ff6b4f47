// The `hatchery` command line as an operator runs it: a real process, a real config file and
// a real SQLite store.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { newVm } from '../helpers/vms.ts';

import { BIN_NODE_FLAGS } from '../helpers/stack.ts';

const BIN = fileURLToPath(new URL('../../bin/hatchery.js', import.meta.url));
const CONTROL_SECRET = 'control-secret-0123456789';
const API_TOKEN = 'api-token-abcdefghijklmnop';
const GH_TOKEN = 'ghp_clitesttoken000000000000000000000';

describe('hatchery CLI', () => {
  let dir: string;
  let config: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hatchery-cli-'));
    config = path.join(dir, 'hatchery.toml');
    writeFileSync(
      config,
      [
        `[control]`,
        `secret = "${CONTROL_SECRET}"`,
        `[api]`,
        `token = "${API_TOKEN}"`,
        `[github]`,
        `token = "${GH_TOKEN}"`,
        `[store]`,
        `path = "state/hatchery.db"`,
        `[qemu]`,
        `state_dir = "state/vms"`,
      ].join('\n'),
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const hatchery = (args: string[], env: Record<string, string> = {}, input?: string) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        [BIN, '--config', config, ...args],
        { cwd: dir, env: { PATH: process.env.PATH ?? '', ...env } },
        (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
      if (input !== undefined) child.stdin!.end(input);
    });

  it('runs as an executable with the node flags of its #! line', async () => {
    // As npm's bin link runs it: the kernel reads the #! line (env -S splits its flags).
    const r = await new Promise<{ code: number; stdout: string }>((resolve) =>
      execFile(
        BIN,
        ['--help'],
        { env: { PATH: path.dirname(process.execPath) + ':' + (process.env.PATH ?? '') } },
        (err, stdout) => resolve({ code: err ? 1 : 0, stdout }),
      ),
    );
    assert.equal(r.code, 0);
    assert.match(r.stdout, /serve/);
    assert.deepEqual(BIN_NODE_FLAGS, ['--max-semi-space-size=8']);
  });

  it('config check prints the effective config with every secret masked', async () => {
    const r = await hatchery(['config', 'check'], { HATCHERY_LIMITS_MAX_VMS: '3' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`# config file: ${config.replace(/[/.]/g, '\\$&')}`));
    assert.match(r.stdout, /# limits\.max_vms from env HATCHERY_LIMITS_MAX_VMS/);
    const effective = JSON.parse(r.stdout.replace(/^#.*\n/gm, '')) as Record<string, Record<string, unknown>>;
    assert.equal(effective.limits!.max_vms, 3);
    assert.equal(effective.control!.secret, '********');
    assert.equal(effective.api!.token, '********');
    assert.equal(effective.github!.token, '********');
    assert.equal(effective.store!.path, path.join(dir, 'state/hatchery.db'), 'relative to the config file');
    for (const secret of [CONTROL_SECRET, API_TOKEN, GH_TOKEN]) assert.ok(!r.stdout.includes(secret));
  });

  it('config check names the file and key of a bad value, and exits 2', async () => {
    const bad = path.join(dir, 'bad.toml');
    writeFileSync(bad, '[workers]\nconcurrency = "lots"\n[limits]\nmax_vm = 3\n');
    const r = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, [BIN, '--config', bad, 'config', 'check'], { cwd: dir }, (err, _o, stderr) =>
        resolve({ code: (err as { code?: number } | null)?.code ?? 0, stderr }),
      ),
    );
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`${bad.replace(/[/.]/g, '\\$&')}: workers\\.concurrency: `));
    assert.match(r.stderr, /limits: unknown key\(s\) "max_vm"/);
  });

  it('config check validates the GitHub App: its key file (never printed), a missing webhook secret', async () => {
    const { privateKey } = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    writeFileSync(path.join(dir, 'app.pem'), privateKey);
    writeFileSync(path.join(dir, 'notakey.pem'), 'hello\n');
    const run = (file: string) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(
          process.execPath,
          [BIN, '--config', file, 'config', 'check'],
          { cwd: dir },
          (err, stdout, stderr) =>
            resolve({ code: (err as { code?: number } | null)?.code ?? 0, stdout, stderr }),
        ),
      );
    const good = path.join(dir, 'app.toml');
    writeFileSync(good, '[github.app]\nid = 1234\nprivate_key_file = "app.pem"\n');
    const ok = await run(good);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, /github\.app\.webhook_secret is not set: POST \/hooks\/github answers 503/);
    const effective = JSON.parse(ok.stdout.replace(/^#.*\n/gm, '')) as {
      github: { app: Record<string, unknown> };
    };
    assert.deepEqual(effective.github.app, {
      id: 1234,
      private_key_file: path.join(dir, 'app.pem'),
      redeliver_seconds: 60,
      poll_seconds: 60,
    });
    assert.ok(!ok.stdout.includes('PRIVATE KEY') && !ok.stderr.includes('PRIVATE KEY'));
    const bad = path.join(dir, 'badapp.toml');
    writeFileSync(
      bad,
      '[github.app]\nid = 1234\nprivate_key_file = "notakey.pem"\nwebhook_secret = "short"\n',
    );
    const refused = await run(bad);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /github\.app\.webhook_secret: at least 16 characters/);
    const missing = path.join(dir, 'nokey.toml');
    writeFileSync(missing, '[github.app]\nid = 1234\nprivate_key_file = "notakey.pem"\n');
    const noKey = await run(missing);
    assert.equal(noKey.code, 2);
    assert.match(noKey.stderr, /github\.app\.private_key_file: .*notakey\.pem: not a PEM private key/);
    assert.ok(!noKey.stderr.includes('hello'));
  });

  it('encrypt-token produces what the openssl command decrypts, in SpinW transport form', async () => {
    const r = await hatchery(
      ['encrypt-token'],
      { HATCHERY_LEGACY_OPENSSL_PASSWORD: 'pw-for-cli' },
      `${GH_TOKEN}\n`,
    );
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout.trim();
    assert.match(text, /^U2FsdGVkX1[A-Za-z0-9+/=_]+$/, 'openssl "Salted__" base64, newlines as _');
    const plain = execFileSync(
      'sh',
      ['-c', 'printf %s "$T" | tr "_" "\\n" | openssl enc -d -aes-256-cbc -pbkdf2 -a -k pw-for-cli'],
      {
        env: { ...process.env, T: text },
        encoding: 'utf8',
      },
    );
    assert.equal(plain, `${GH_TOKEN}\n`, 'like `echo "$PAT" | openssl enc …`');
    const noPw = await hatchery(['encrypt-token'], {}, GH_TOKEN);
    assert.equal(noPw.code, 1);
    assert.match(noPw.stderr, /HATCHERY_LEGACY_OPENSSL_PASSWORD/);
  });

  it('vm ls, show, logs and rm work on the store and VM files directly', async () => {
    const store = new SqliteStore(path.join(dir, 'state/hatchery.db'));
    const name = 'hatchery-linux-77-1-abcdef';
    await store.insertVm(newVm(77, { name, repository: 'octo/app', initialDeadline: 3600 }), Date.now());
    await store.close();
    mkdirSync(path.join(dir, 'state/vms', name), { recursive: true });
    writeFileSync(path.join(dir, 'state/vms', name, 'console.log'), 'hatchery-init: running the bootstrap\n');

    const ls = await hatchery(['vm', 'ls']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^NAME\s+STATE\s+POOL\s+REPOSITORY/);
    assert.match(ls.stdout, new RegExp(`${name}\\s+pending\\s+linux\\s+octo/app`));
    const json = JSON.parse((await hatchery(['vm', 'ls', '--json'])).stdout) as { name: string }[];
    assert.deepEqual(
      json.map((v) => v.name),
      [name],
    );

    const show = await hatchery(['vm', 'show', name]);
    assert.match(show.stdout, /state:\s+pending/);
    assert.match(show.stdout, /pending\s+→ pending\s+requested\s+requested via control/);
    assert.match((await hatchery(['vm', 'logs', name])).stdout, /running the bootstrap/);

    const rm = await hatchery(['vm', 'rm', name]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(
      rm.stdout,
      new RegExp(`${name}: destroy requested \\(destroyed\\)`),
      'a pending VM has nothing to tear down',
    );
    assert.doesNotMatch((await hatchery(['vm', 'ls'])).stdout, new RegExp(name));
    assert.match((await hatchery(['vm', 'ls', '--all'])).stdout, new RegExp(`${name}\\s+destroyed`));

    for (const args of [
      ['vm', 'show', '../etc'],
      ['vm', 'rm', 'hatchery-x;id'],
      ['vm', 'logs', 'hatchery-absent'],
    ]) {
      const r = await hatchery(args);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, /^hatchery: (not a VM name|no VM named)/);
    }
  });
});

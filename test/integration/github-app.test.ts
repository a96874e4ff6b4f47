// The GitHub App (src/github/app.ts) against the stand-in GitHub, which verifies its JWTs with
// the App's public key and mints installation tokens: runners are minted, listed and removed
// with installation tokens (no PAT), the installation of a repository is asked for once, tokens
// are cached and replaced before they lapse or when GitHub refuses them, and a wrong key or a
// repository the App is not installed on fails clearly. Also `github.app` in the config.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfig, maskSecrets } from '../../src/config/load.ts';
import { GitHubApp, NotInstalledError, REFRESH_MARGIN_MS } from '../../src/github/app.ts';
import { readAppPrivateKey } from '../../src/github/app-key.ts';
import { createRunnersApi, GitHubError } from '../../src/github/runners.ts';
import { FakeGitHub } from '../fakes/github/server.ts';

const APP_ID = 4242;

function rsaPair() {
  return generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    // What GitHub hands out: PKCS#1.
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  });
}

describe('GitHub App auth against the stand-in', () => {
  const keys = rsaPair();
  let fake: FakeGitHub;
  let dir: string;
  let keyFile: string;

  before(async () => {
    fake = await FakeGitHub.start({
      tokens: [],
      app: {
        id: APP_ID,
        publicKey: keys.publicKey,
        installations: [
          { id: 71, account: 'octo-org' },
          { id: 72, account: 'someone', repositories: ['someone/one'] },
        ],
      },
    });
    dir = mkdtempSync(path.join(tmpdir(), 'hatchery-app-'));
    keyFile = path.join(dir, 'app.pem');
    writeFileSync(keyFile, keys.privateKey, { mode: 0o600 });
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await fake.close();
  });

  const app = (clock?: () => number) =>
    new GitHubApp({ apiUrl: fake.url, appId: APP_ID, privateKey: readAppPrivateKey(keyFile), clock });
  const lookups = (repo: string) =>
    fake.requests.filter((r) => r.path === `/repos/${repo}/installation`).length;
  const mints = (installation: number) =>
    fake.requests.filter((r) => r.path === `/app/installations/${installation}/access_tokens`).length;

  it('mints, lists and removes runners with installation tokens: one lookup per repository, one token per installation', async () => {
    const gh = app();
    const api = createRunnersApi({ apiUrl: fake.url, token: gh });
    const before = mints(71);
    const jit = await api.generateJitConfig('octo-org/app', {
      name: 'vm-a',
      labels: ['linux'],
      runnerGroupId: 1,
    });
    const jit2 = await api.generateJitConfig('octo-org/lib', {
      name: 'vm-b',
      labels: ['linux'],
      runnerGroupId: 1,
    });
    assert.ok(fake.runners('octo-org/app').some((r) => r.id === jit.runnerId && r.name === 'vm-a'));
    assert.ok(fake.runners('octo-org/lib').some((r) => r.id === jit2.runnerId));
    assert.deepEqual(
      (await api.listRunners('octo-org/app')).map((r) => r.name),
      ['vm-a'],
    );
    assert.equal(await api.deleteRunner('octo-org/app', jit.runnerId), 'deleted');
    assert.equal(await api.deleteRunner('octo-org/app', jit.runnerId), 'absent');
    assert.equal(await api.deleteRunner('octo-org/lib', jit2.runnerId), 'deleted');
    assert.equal(lookups('octo-org/app'), 1, 'the installation of a repository is looked up once');
    assert.equal(lookups('octo-org/lib'), 1);
    assert.equal(mints(71) - before, 1, 'one token serves every repository of the installation');
    assert.deepEqual(fake.violations, []);
  });

  it('concurrent first calls for a repository look its installation up once', async () => {
    const gh = app();
    const ids = await Promise.all(Array.from({ length: 5 }, () => gh.installationFor('someone/one')));
    assert.deepEqual(ids, [72, 72, 72, 72, 72]);
    assert.equal(lookups('someone/one'), 1);
  });

  it('replaces a token that is about to lapse, and one GitHub refuses', async () => {
    let now = Date.now();
    const gh = app(() => now);
    const api = createRunnersApi({ apiUrl: fake.url, token: gh });
    const first = mints(72);
    await api.listRunners('someone/one');
    await api.listRunners('someone/one');
    assert.equal(mints(72) - first, 1, 'cached');
    // An hour's token with less than the margin left is not used.
    now += 3600_000 - REFRESH_MARGIN_MS + 1000;
    await api.listRunners('someone/one');
    assert.equal(mints(72) - first, 2, 'refreshed ahead of its expiry');
    now = Date.now();
    // GitHub no longer accepts the cached token: one 401, then a new token and the call succeeds.
    fake.githubApp!.revokeTokens();
    await api.listRunners('someone/one');
    assert.equal(mints(72) - first, 3, 'a refused token is replaced');
    assert.deepEqual(fake.violations, []);
  });

  it('a repository the App is not installed on: NotInstalledError (404), nothing minted', async () => {
    const api = createRunnersApi({ apiUrl: fake.url, token: app() });
    const runners = fake.runners().length;
    for (const repo of ['someone/two', 'stranger/app']) {
      await assert.rejects(
        api.generateJitConfig(repo, { name: 'vm-x', labels: ['linux'], runnerGroupId: 1 }),
        (e: unknown) => {
          assert.ok(e instanceof NotInstalledError, String(e));
          assert.equal(e.status, 404);
          assert.match(e.message, new RegExp(`not installed on ${repo}`));
          return true;
        },
      );
      // Not "absent": nothing can be said about the runner.
      await assert.rejects(api.deleteRunner(repo, 1), NotInstalledError);
    }
    assert.equal(fake.runners().length, runners);
  });

  it('a JWT signed with another key, or for another App, is refused (401) and no token is minted', async () => {
    const other = rsaPair();
    const otherFile = path.join(dir, 'other.pem');
    writeFileSync(otherFile, other.privateKey);
    const before = mints(71);
    for (const gh of [
      new GitHubApp({ apiUrl: fake.url, appId: APP_ID, privateKey: readAppPrivateKey(otherFile) }),
      new GitHubApp({ apiUrl: fake.url, appId: APP_ID + 1, privateKey: readAppPrivateKey(keyFile) }),
    ]) {
      const api = createRunnersApi({ apiUrl: fake.url, token: gh });
      await assert.rejects(api.listRunners('octo-org/app'), (e: unknown) => {
        assert.ok(e instanceof GitHubError);
        assert.equal(e.status, 401);
        assert.ok(!e.message.includes('BEGIN'), 'no key material in errors');
        return true;
      });
    }
    assert.equal(mints(71), before);
  });

  it('the stand-in refuses an installation token outside its installation, a PAT on App endpoints, and an expired JWT', async () => {
    const gh = app();
    const token = await gh.tokenFor('someone/one');
    const get = (p: string, auth: string) =>
      fetch(`${fake.url}${p}`, {
        headers: { authorization: auth, 'user-agent': 'test', 'x-github-api-version': '2022-11-28' },
      });
    assert.equal((await get('/repos/someone/one/actions/runners', `token ${token}`)).status, 200);
    assert.equal((await get('/repos/octo-org/app/actions/runners', `token ${token}`)).status, 404);
    assert.equal((await get('/repos/someone/one/installation', `token ${token}`)).status, 401);
    const expired = fake.githubApp!.jwtProblem(
      (await gh['auth']({ type: 'app' })).token,
      Date.now() + 11 * 60_000,
    );
    assert.match(String(expired), /Expiration time/);
    assert.deepEqual(fake.violations, []);
  });
});

describe('config: github.app', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hatchery-appcfg-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const write = (toml: string) => {
    const file = path.join(dir, 'hatchery.toml');
    writeFileSync(file, toml);
    return file;
  };

  it('resolves the key file next to the config, checks it, and masks the webhook secret', () => {
    writeFileSync(path.join(dir, 'app.pem'), rsaPair().privateKey);
    const file = write(
      '[github.app]\nid = 12\nprivate_key_file = "app.pem"\nwebhook_secret = "0123456789abcdef-secret"\n',
    );
    const { config } = loadConfig({ file, env: {}, dotenv: false });
    assert.equal(config.github.app?.private_key_file, path.join(dir, 'app.pem'));
    const shown = JSON.stringify(maskSecrets(config));
    assert.ok(!shown.includes('0123456789abcdef-secret'));
    assert.ok(!shown.includes('PRIVATE KEY'));
  });

  it('a missing, unreadable or non-key file: an error naming the key and file, none of its content', () => {
    const secretText = 'sk-THIS-MUST-NOT-BE-ECHOED';
    writeFileSync(
      path.join(dir, 'junk.pem'),
      `-----BEGIN RSA PRIVATE KEY-----\n${secretText}\n-----END RSA PRIVATE KEY-----\n`,
    );
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(path.join(dir, 'ec.pem'), ec.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    for (const [name, why] of [
      ['absent.pem', /cannot read the private key \(ENOENT\)/],
      ['junk.pem', /not a PEM private key/],
      ['ec.pem', /a ec key; GitHub Apps sign their JWTs with RSA/],
    ] as const) {
      const file = write(`[github.app]\nid = 12\nprivate_key_file = "${name}"\n`);
      assert.throws(
        () => loadConfig({ file, env: {}, dotenv: false }),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError);
          assert.match(e.message, /github\.app\.private_key_file/);
          assert.match(e.message, why);
          assert.ok(e.message.includes(path.join(dir, name)));
          assert.ok(!e.message.includes(secretText));
          return true;
        },
      );
    }
  });

  it('HATCHERY_GITHUB_APP_* set the App from the environment', () => {
    writeFileSync(path.join(dir, 'app.pem'), rsaPair().privateKey);
    const file = write('');
    const { config, fromEnv } = loadConfig({
      file,
      dotenv: false,
      env: {
        HATCHERY_GITHUB_APP_ID: '99',
        HATCHERY_GITHUB_APP_PRIVATE_KEY_FILE: 'app.pem',
        HATCHERY_GITHUB_APP_WEBHOOK_SECRET: 'a-webhook-secret-of-some-length',
      },
    });
    assert.equal(config.github.app?.id, 99);
    assert.equal(config.github.app?.webhook_secret, 'a-webhook-secret-of-some-length');
    assert.equal(fromEnv.HATCHERY_GITHUB_APP_ID, 'github.app.id');
  });
});

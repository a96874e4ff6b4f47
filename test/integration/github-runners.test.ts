// src/github/runners.ts against the GitHub stand-in and against network failures on loopback:
// a request GitHub never answered (refused, cut off, timed out) keeps its cause and is
// retryable; GitHub's own answers keep their status; no message carries the token.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createRunnersApi, GitHubError, type RunnersApi } from '../../src/github/runners.ts';
import { FakeGitHub } from '../fakes/github/server.ts';

const TOKEN = 'ghp_runnersapitoken000000000000000000000';
const REPO = 'octo/app';

/** The three calls Hatchery makes, each expected to fail the same way. */
const calls: [string, (api: RunnersApi) => Promise<unknown>][] = [
  [
    `generate JIT config for vm-1 in ${REPO}`,
    (api) => api.generateJitConfig(REPO, { name: 'vm-1', labels: ['vm-1'], runnerGroupId: 1 }),
  ],
  [`list runners of ${REPO}`, (api) => api.listRunners(REPO)],
  [`delete runner 7 of ${REPO}`, (api) => api.deleteRunner(REPO, 7)],
];

function gitHubError(message: string, status: number | null): (e: unknown) => true {
  return (e) => {
    assert.ok(e instanceof GitHubError, `not a GitHubError: ${String(e)}`);
    assert.equal(e.message, message);
    assert.equal(e.status, status);
    assert.equal(e.retryable, status === null || status >= 500);
    assert.ok(!e.message.includes(TOKEN), 'the token is in the message');
    return true;
  };
}

/** A loopback server whose connections get `onConnection`; closed after the test. */
async function listen(onConnection: (s: net.Socket) => void): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    onConnection(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('GitHub runners API: network failures', () => {
  it('a refused connection: the cause, status null (retryable), not "HTTP 500"', async () => {
    // A port where nothing listens: bound, then released.
    const free = await listen(() => undefined);
    free.close();
    const api = createRunnersApi({ apiUrl: `http://127.0.0.1:${free.port}`, token: TOKEN });
    for (const [what, call] of calls) {
      await assert.rejects(
        call(api),
        gitHubError(`${what}: connect ECONNREFUSED 127.0.0.1:${free.port}`, null),
      );
    }
  });

  it(
    'a connection closed without an answer, and one never answered within the timeout',
    { timeout: 60_000 },
    async () => {
      // Reads the request, then closes its side (FIN; a destroy could reset the connection instead).
      const closer = await listen((s) => s.once('data', () => s.end()));
      const silent = await listen(() => undefined);
      try {
        const cut = createRunnersApi({ apiUrl: `http://127.0.0.1:${closer.port}`, token: TOKEN });
        const slow = createRunnersApi({
          apiUrl: `http://127.0.0.1:${silent.port}`,
          token: TOKEN,
          timeoutMs: 300,
        });
        for (const [what, call] of calls) {
          await assert.rejects(call(cut), gitHubError(`${what}: socket hang up`, null));
          await assert.rejects(call(slow), gitHubError(`${what}: no answer within 0.3 s`, null));
        }
      } finally {
        closer.close();
        silent.close();
      }
    },
  );
});

describe('GitHub runners API: answers from GitHub', () => {
  let fake: FakeGitHub;
  before(async () => {
    fake = await FakeGitHub.start({ tokens: [TOKEN], repositories: [REPO] });
  });
  after(() => fake.close());

  it('keep their status and GitHub’s message', async () => {
    const api = createRunnersApi({ apiUrl: fake.url, token: TOKEN });
    const jit = await api.generateJitConfig(REPO, { name: 'vm-1', labels: ['vm-1'], runnerGroupId: 1 });
    await assert.rejects(
      api.generateJitConfig(REPO, { name: 'vm-1', labels: ['vm-1'], runnerGroupId: 1 }),
      gitHubError(
        `generate JIT config for vm-1 in ${REPO}: Already exists - A runner with the name vm-1 already exists. (HTTP 409)`,
        409,
      ),
    );
    await assert.rejects(
      api.listRunners('octo/elsewhere'),
      gitHubError('list runners of octo/elsewhere: Not Found (HTTP 404)', 404),
    );
    const wrongToken = `${TOKEN.slice(0, -4)}xxxx`;
    const stranger = createRunnersApi({ apiUrl: fake.url, token: wrongToken });
    await assert.rejects(stranger.listRunners(REPO), (e: unknown) => {
      gitHubError(`list runners of ${REPO}: Bad credentials (HTTP 401)`, 401)(e);
      assert.ok(!(e as Error).message.includes(wrongToken));
      return true;
    });
    assert.equal(await api.deleteRunner(REPO, jit.runnerId), 'deleted');
    assert.equal(await api.deleteRunner(REPO, jit.runnerId), 'absent');
  });
});

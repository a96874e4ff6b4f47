// No secret stays at rest once used: after a legacy lifecycle on a real VM (the PAT the workflow
// sends, openssl-encrypted, and the one-shot JIT config minted with it), the bytes of the
// SQLite database and its write-ahead log, the VM directories and the service log hold none of
// them — while the service still runs, and after it stops.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sign } from '../../src/crypto/hmac.ts';
import { decodeJitConfig } from '../fakes/github/runner-protocol.ts';
import { encryptLikeTheWorkflow, spinwData } from '../helpers/legacy-clients.ts';
import { Stack } from '../helpers/stack.ts';

const REPO = 'SpinW/spinw';
const PAT = 'ghp_atRestToken0000000000000000000000000';
const OPENSSL_PW = 'correct horse battery staple';
const SECRET = 'webhook-secret-at-rest';

/** Every file under `dir` (recursively), with its bytes. */
function files(dir: string): { file: string; bytes: Buffer }[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => path.join(dir, f))
    .filter((f) => statSync(f).isFile())
    .map((file) => ({ file, bytes: readFileSync(file) }));
}

describe('no secrets at rest after use (legacy PAT, JIT config; real VM)', () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start({
      tokens: [PAT],
      githubToken: false, // the only credential is the PAT the workflow sends
      legacy: { secret: SECRET, openssl_password: OPENSSL_PW, wait_for_ready: true, wait_timeout: 240 },
    });
  });
  after(async () => {
    await stack?.stop();
  });

  it('keeps the PAT only while the VM needs it, and no JIT config at all', async () => {
    const encrypted = encryptLikeTheWorkflow(PAT, OPENSSL_PW);
    const post = async (ghcontrol: string) => {
      const body = `{"repository":"${REPO}","data":${spinwData({ ghcontrol, servers: 'linux', pat: encrypted, id: '777_1' })}}`;
      return stack.client.request<{ success: string; info: string; labels?: string[] }>('POST', '/', body, {
        'content-type': 'application/json',
        'x-hub-signature-256': sign('sha256', SECRET, body),
      });
    };
    const created = await post('create');
    assert.equal(created.status, 200, JSON.stringify(created.json));
    assert.equal(created.json.success, 'true', created.json.info);
    const [vm] = await stack.service.store.listVms();
    assert.ok(vm);

    // The needles: the PAT as sent, as openssl writes it, in plain; the JIT config and its secret.
    const jit = stack.fake.issuedJitConfigs();
    assert.equal(jit.length, 1, 'one runner config was minted');
    const needles = new Map<string, string>([
      ['encrypted PAT (as sent)', encrypted],
      ['encrypted PAT (openssl lines)', encrypted.split('_')[0]!],
      ['PAT', PAT],
      ['JIT config', jit[0]!],
      ['runner secret', decodeJitConfig(jit[0]!).RUNNER_SECRET!],
    ]);
    const found = (where: { file: string; bytes: Buffer }[]) =>
      where.flatMap(({ file, bytes }) =>
        [...needles].filter(([, value]) => bytes.includes(value)).map(([what]) => `${what} in ${file}`),
      );
    const stateFiles = () => [
      ...files(stack.files.dir).filter(({ file }) => path.basename(file).startsWith('hatchery.db')),
      ...files(stack.files.stateDir),
    ];
    // While the VM runs, its credential is in the store (workers need it to remove its runner):
    // proof that the search below can find it.
    assert.match(found(stateFiles()).join('\n'), /encrypted PAT \(as sent\) in .*hatchery\.db/);

    const job = stack.fake.queueJob({ repository: REPO, labels: ['self-hosted', vm.name], script: 'true' });
    assert.equal((await stack.fake.waitForJob(job.id, { timeoutMs: 120_000 })).conclusion, 'success');
    await stack.waitState(vm.name, ['destroyed'], 60_000);
    const destroyed = await post('destroy');
    assert.equal(destroyed.json.success, 'true', destroyed.json.info);
    await stack.files.nothingLeft();

    assert.equal((await stack.service.store.getVm(vm.name))?.credential, null);
    await stack.service.reconciler.sweep(); // a pass scrubs the write-ahead log
    assert.deepEqual(found(stateFiles()), [], 'at rest while the service runs');
    assert.deepEqual(
      found(files(stack.files.dir).filter(({ file }) => file.endsWith('.log'))),
      [],
      'in the log',
    );

    await stack.service.stop();
    assert.deepEqual(found(files(stack.files.dir)), [], 'after the service stopped');
    await stack.restart(); // for after(): stop() of a running service
  });
});

// SpinW's workflows, unchanged, against the legacy route on real VMs: the body the
// distributhor/workflow-webhook v1 action builds, its HMAC-SHA1 signature, its delivery id (the
// run *number*, the same for create and destroy), and a PAT encrypted by the real openssl CLI.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Stack } from '../helpers/stack.ts';

const REPO = 'SpinW/spinw';
const PAT = 'ghp_spinwLegacyToken000000000000000000';
const OPENSSL_PW = 'correct horse battery';
const SECRET = 'webhook-secret-of-spinw';

/** What the workflow's step runs: `echo "$PAT" | openssl enc … | tr "\n" "_"`. */
function encryptLikeTheWorkflow(pat: string, password: string): string {
  return execFileSync(
    'sh',
    ['-c', 'echo "$PAT" | openssl enc -e -aes-256-cbc -pbkdf2 -a -k "$PW" | tr "\\n" "_"'],
    {
      env: { ...process.env, PAT: pat, PW: password },
      encoding: 'utf8',
    },
  );
}

/** The action's body, built by string concatenation around `jq -c` of the `data` input. */
function actionBody(data: Record<string, string>): string {
  return `{"repository":"${REPO}","ref":"","commit":"4f2c1e0","trigger":"push","workflow":"CI","data":${JSON.stringify(data)}}`;
}

/** The signature as the action (and a curl caller) computes it: `openssl dgst -sha1 -hmac`. */
function sha1Signature(body: string, secret: string): string {
  const out = execFileSync('openssl', ['dgst', '-sha1', '-hmac', secret], { input: body, encoding: 'utf8' });
  return `sha1=${out.trim().replace(/^.*= /, '')}`;
}

describe('legacy route (SpinW workflows, real VMs)', () => {
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

  const post = async (body: string, opts: { runNumber: string; signature?: string | null }) => {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-github-delivery': opts.runNumber,
    };
    const signature = opts.signature === undefined ? sha1Signature(body, SECRET) : opts.signature;
    if (signature) headers['x-hub-signature'] = signature;
    return stack.client.request<{ success: string; info: string; labels?: string[] }>(
      'POST',
      '/',
      body,
      headers,
    );
  };

  it('creates runners for an unchanged SpinW workflow, runs its job, destroys on the same delivery id', async () => {
    const id = '7770001112_42';
    const pat = encryptLikeTheWorkflow(PAT, OPENSSL_PW);
    assert.match(pat, /_/, 'the PAT arrives in SpinW transport form');

    // The old workflow's create blocks until the runners are online, then reads `success`.
    const created = await post(actionBody({ ghcontrol: 'create', servers: 'linux', PAT: pat, ID: id }), {
      runNumber: '42',
    });
    assert.equal(created.status, 200, JSON.stringify(created.json));
    assert.equal(created.json.success, 'true', created.json.info);
    assert.deepEqual(created.json.labels, [`linux_${id}`]);

    // unit_tests: runs-on: [self-hosted, linux_<ID>]
    const job = stack.fake.queueJob({
      repository: REPO,
      labels: ['self-hosted', `linux_${id}`],
      script: 'echo matlab-free test',
    });
    const done = await stack.fake.waitForJob(job.id, { timeoutMs: 120_000 });
    assert.equal(done.conclusion, 'success', done.output);

    // destroy_runners (if: always()): the same X-GitHub-Delivery as the create.
    const destroyed = await post(actionBody({ ghcontrol: 'destroy', servers: 'linux', PAT: pat, ID: id }), {
      runNumber: '42',
    });
    assert.equal(destroyed.status, 200);
    assert.equal(destroyed.json.success, 'true', destroyed.json.info);

    const [vm] = await stack.service.store.listVms();
    assert.ok(vm);
    await stack.waitState(vm.name, ['destroyed'], 60_000);
    await stack.files.nothingLeft();

    // The PAT was used by the service (the stand-in accepts no other token), never logged.
    assert.deepEqual(stack.fake.violations, []);
    const log = readFileSync(stack.files.logFile, 'utf8');
    assert.ok(!log.includes(PAT), 'the PAT reached the log');
    assert.ok(!log.includes(pat.replace(/_/g, '').slice(0, 40)), 'the encrypted PAT reached the log');
  });

  it('answers success "false" for a wrong password and creates nothing', async () => {
    const before = (await stack.service.store.listVms()).length;
    const body = actionBody({
      ghcontrol: 'create',
      servers: 'linux',
      PAT: encryptLikeTheWorkflow(PAT, 'wrong password'),
      ID: '1_1',
    });
    const r = await post(body, { runNumber: '1' });
    assert.equal(r.json.success, 'false');
    assert.match(r.json.info, /PAT: cannot decrypt token: wrong password/);
    assert.equal((await stack.service.store.listVms()).length, before);
  });

  it('refuses an unsigned or wrongly signed request (401) and creates nothing', async () => {
    const before = (await stack.service.store.listVms()).length;
    const body = actionBody({
      ghcontrol: 'create',
      servers: 'linux',
      PAT: encryptLikeTheWorkflow(PAT, OPENSSL_PW),
      ID: '2_2',
    });
    for (const signature of [
      null,
      sha1Signature(body, 'not-the-secret'),
      sha1Signature(`${body} `, SECRET),
    ]) {
      const r = await post(body, { runNumber: '2', signature });
      assert.equal(r.status, 401);
      assert.equal(r.json.success, 'false');
      assert.match(r.json.info, /signature/);
    }
    assert.equal((await stack.service.store.listVms()).length, before);
  });

  it('refuses an unknown ghcontrol and a server kind no pool serves, creating nothing', async () => {
    const before = (await stack.service.store.listVms()).length;
    const pat = encryptLikeTheWorkflow(PAT, OPENSSL_PW);
    const unknown = await post(actionBody({ ghcontrol: 'restart', servers: 'linux', PAT: pat, ID: '3_3' }), {
      runNumber: '3',
    });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.json.success, 'false');
    assert.match(unknown.json.info, /data\.ghcontrol: unknown action "restart"/);
    const windows = await post(
      actionBody({ ghcontrol: 'create', servers: '[linux, windows]', PAT: pat, ID: '3_3' }),
      { runNumber: '3' },
    );
    assert.equal(windows.json.success, 'false');
    assert.match(windows.json.info, /no pool serves label "windows"/);
    assert.equal((await stack.service.store.listVms()).length, before, 'not even the linux VM was created');
  });
});

// SpinW's workflows, unchanged, against the legacy route on real VMs, through their real clients
// (test/helpers/legacy-clients.ts): SpinW's own unsigned `curl | jq -e` step under `bash -e`, with
// Debian's jq, and the distributhor/workflow-webhook v1 action's signed `curl --fail` request.
// Each refusal must fail the step that sent it (or the jobs needing it would wait for a runner
// that never comes) and record nothing; success must pass it, with the runner online.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  actionStep,
  CURL_HTTP_ERROR,
  encryptLikeTheWorkflow,
  Relay,
  spinwData,
  spinwStep,
  type Run,
  type StepResult,
} from '../helpers/legacy-clients.ts';
import { Stack } from '../helpers/stack.ts';

const REPO = 'SpinW/spinw';
/** The workflow's secrets.PERSONAL_TOKEN: GitHub accepts it for REPO only. */
const PAT = 'ghp_spinwLegacyToken000000000000000000';
/** A real token of someone else's repository. */
const OTHER_PAT = 'ghp_otherRepositoryToken0000000000000000';
/** A token GitHub does not know (revoked, or never issued). */
const UNKNOWN_PAT = 'ghp_revokedToken00000000000000000000000';
/** The service's own github.token (used for explicit requests; never for an unsigned legacy one). */
const SERVICE_TOKEN = 'ghp_serviceOwnToken000000000000000000000';
const OPENSSL_PW = 'correct-horse-battery';
const SECRET = 'webhook-secret-of-spinw';
const GRANTS = { [PAT]: [REPO], [OTHER_PAT]: ['someone/else'] };

const JQ_VERSION = execFileSync('jq', ['--version'], { encoding: 'utf8' }).trim();

const run = (runId: string, runNumber: string): Run => ({ repository: REPO, runId, runNumber });
const spinwId = (r: Run) => `${r.runId}_${r.runNumber}`;

/** The step failed, and the service said why, in the legacy shape, with `status`. */
function assertRefused(step: StepResult, status: number, info: RegExp, exitCode?: number): void {
  const detail = JSON.stringify({
    code: step.code,
    status: step.status,
    answer: step.answer,
    stdout: step.stdout,
  });
  assert.equal(step.status, status, detail);
  assert.equal(step.answer.success, 'false', detail);
  assert.match(step.answer.info ?? '', info, detail);
  assert.notEqual(step.code, 0, `the step passed on a refusal: ${detail}`);
  if (exitCode !== undefined) assert.equal(step.code, exitCode, detail);
}

/** The step passed and the service answered success "true". */
function assertPassed(step: StepResult): void {
  const detail = JSON.stringify({
    code: step.code,
    status: step.status,
    answer: step.answer,
    stderr: step.stderr.slice(-2000),
  });
  assert.equal(step.status, 200, detail);
  assert.equal(step.answer.success, 'true', detail);
  assert.equal(step.code, 0, detail);
}

const jitConfigsMinted = (stack: Stack) =>
  stack.fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/generate-jitconfig')).length;

describe(`SpinW's own step: unsigned curl | jq -e (${JQ_VERSION}) under bash -e`, () => {
  let stack: Stack;
  let relay: Relay;
  before(async () => {
    stack = await Stack.start({
      tokens: [SERVICE_TOKEN, PAT, OTHER_PAT],
      grants: GRANTS,
      // The service has a token of its own: an unsigned request must still bring a PAT.
      githubToken: true,
      legacy: { allow_unsigned: true, openssl_password: OPENSSL_PW, wait_for_ready: true, wait_timeout: 240 },
    });
    relay = await Relay.start(() => stack.service.url);
  });
  after(async () => {
    await relay?.close();
    await stack?.stop();
  });

  it('fails on each refusal, and records nothing', async () => {
    const r = run('8880001', '5');
    const pat = encryptLikeTheWorkflow(PAT, OPENSSL_PW);
    const create = (over: { servers?: string; pat?: string; id?: string; ghcontrol?: string } = {}) =>
      spinwData({ ghcontrol: 'create', servers: 'linux', pat, id: spinwId(r), ...over });
    const cases: [string, string, RegExp][] = [
      [
        'wrong openssl password',
        create({ pat: encryptLikeTheWorkflow(PAT, 'wrong-password') }),
        /^data\.PAT: cannot decrypt token/,
      ],
      [
        'no PAT',
        spinwData({ ghcontrol: 'create', servers: 'linux', id: spinwId(r) }),
        /^data\.PAT: required; an unsigned create is authenticated by its PAT alone/,
      ],
      [
        'a token GitHub does not know',
        create({ pat: encryptLikeTheWorkflow(UNKNOWN_PAT, OPENSSL_PW) }),
        /^data\.PAT: GitHub does not accept this token for SpinW\/spinw \(.*Bad credentials \(HTTP 401\)\)/,
      ],
      [
        "another repository's token",
        create({ pat: encryptLikeTheWorkflow(OTHER_PAT, OPENSSL_PW) }),
        /^data\.PAT: GitHub does not accept this token for SpinW\/spinw \(.*Not Found \(HTTP 404\)\)/,
      ],
      [
        'servers no pool serves',
        create({ servers: 'linux, windows' }),
        /^data\.servers: no pool serves label "windows"/,
      ],
      ['unknown ghcontrol', create({ ghcontrol: 'restart' }), /^data\.ghcontrol: unknown action "restart"/],
      ['bad ID', create({ id: '../../etc' }), /^data\.ID: /],
      ['no servers', spinwData({ ghcontrol: 'create', pat, id: spinwId(r) }), /^data\.servers: required/],
      // An unset DATA secret: the body is `{"data":, …}`, not JSON.
      ['a body that is not JSON', '', /^body: not valid JSON/],
    ];
    for (const [what, data, info] of cases) {
      const step = await spinwStep(relay, r, data);
      assertRefused(step, 200, info);
      assert.equal(step.stdout.trim(), 'false', `${what}: jq saw the answer`);
    }
    assert.deepEqual(await stack.service.store.listVms(), [], 'a refusal recorded a VM');
    assert.equal(jitConfigsMinted(stack), 0);
    assert.deepEqual(stack.fake.runners(), []);
  });

  it('passes on success with a real VM minted with the PAT; destroy needs the PAT too', async () => {
    const r = run('8880002', '6');
    const id = spinwId(r);
    const pat = encryptLikeTheWorkflow(PAT, OPENSSL_PW);
    assert.match(pat, /_/, 'the PAT arrives in SpinW transport form');

    const created = await spinwStep(relay, r, spinwData({ ghcontrol: 'create', servers: 'linux', pat, id }));
    assertPassed(created);
    assert.equal(created.stdout.trim(), 'true');
    assert.deepEqual(created.answer.labels, [`linux_${id}`]);
    const [vm] = await stack.service.store.listVms();
    assert.ok(vm);
    assert.equal(vm.state, 'idle', 'the create answered once the runner was online');
    assert.deepEqual(
      stack.fake.runners(REPO).map((x) => [x.name, x.status]),
      [[vm.name, 'online']],
    );

    // SpinW's destroy step as written sends no PAT: unauthenticated, it must not destroy.
    const bare = await spinwStep(relay, r, spinwData({ ghcontrol: 'destroy', servers: 'linux', id }));
    assertRefused(bare, 200, /^data\.PAT: required; an unsigned destroy is authenticated by its PAT alone/);
    const foreign = await spinwStep(
      relay,
      r,
      spinwData({
        ghcontrol: 'destroy',
        servers: 'linux',
        pat: encryptLikeTheWorkflow(OTHER_PAT, OPENSSL_PW),
        id,
      }),
    );
    assertRefused(foreign, 200, /^data\.PAT: GitHub does not accept this token for SpinW\/spinw/);
    assert.equal((await stack.vm(vm.name)).state, 'idle', 'a refused destroy touched the VM');

    const destroyed = await spinwStep(
      relay,
      r,
      spinwData({ ghcontrol: 'destroy', servers: 'linux', pat, id }),
    );
    assertPassed(destroyed);
    assert.match(destroyed.answer.info ?? '', new RegExp(`^destroying: ${vm.name}$`));
    await stack.waitState(vm.name, ['destroyed'], 60_000);
    await stack.files.nothingLeft();
    assert.equal(jitConfigsMinted(stack), 1);
    assert.deepEqual(stack.fake.violations, []);
    const log = readFileSync(stack.files.logFile, 'utf8');
    assert.ok(!log.includes(PAT), 'the PAT reached the log');
    assert.ok(!log.includes(pat.replace(/_/g, '').slice(0, 40)), 'the encrypted PAT reached the log');
  });
});

describe("SpinW's step when the runners are not ready in time, or GitHub cannot be reached", () => {
  let stack: Stack;
  let relay: Relay;
  // Where the guest fetches the runner from: accepts, never answers, so no runner ever registers.
  const sockets = new Set<net.Socket>();
  const blackHole = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  before(async () => {
    await new Promise<void>((resolve) => blackHole.listen(0, '127.0.0.1', resolve));
    const port = (blackHole.address() as net.AddressInfo).port;
    stack = await Stack.start({
      tokens: [PAT],
      githubToken: false,
      pools: [{ name: 'linux', labels: ['linux'], forwardTo: `127.0.0.1:${port}` }],
      legacy: { allow_unsigned: true, openssl_password: OPENSSL_PW, wait_for_ready: true, wait_timeout: 1 },
    });
    relay = await Relay.start(() => stack.service.url);
  });
  after(async () => {
    await relay?.close();
    await stack?.stop();
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => blackHole.close(resolve));
  });

  it('fails the step and destroys the VM it started', async () => {
    const r = run('8880003', '7');
    const pat = encryptLikeTheWorkflow(PAT, OPENSSL_PW);
    const step = await spinwStep(
      relay,
      r,
      spinwData({ ghcontrol: 'create', servers: 'linux', pat, id: spinwId(r) }),
    );
    assertRefused(
      step,
      200,
      /^runners not ready within 1 s: hatchery-linux-\S+ is (pending|provisioning|booting); destroying them$/,
    );
    const [vm] = await stack.service.store.listVms();
    assert.ok(vm);
    await stack.waitState(vm.name, ['destroyed'], 60_000);
    assert.ok(
      (await stack.events(vm.name)).some((e) => e.event === 'destroy_requested'),
      'the refused create asked for the VM to be destroyed',
    );
    await stack.files.nothingLeft();
    assert.deepEqual(stack.fake.violations, []);
  });

  it('fails the step when GitHub cannot be asked about the PAT, recording nothing', async () => {
    const before = (await stack.service.store.listVms()).length;
    await stack.fake.close();
    const r = run('8880004', '8');
    const pat = encryptLikeTheWorkflow(PAT, OPENSSL_PW);
    const step = await spinwStep(
      relay,
      r,
      spinwData({ ghcontrol: 'create', servers: 'linux', pat, id: spinwId(r) }),
    );
    assertRefused(
      step,
      200,
      /^data\.PAT: could not check the token with GitHub \(list runners of SpinW\/spinw: /,
    );
    assert.equal((await stack.service.store.listVms()).length, before);
  });
});

describe('the distributhor/workflow-webhook action (signed), and unsigned steps against it', () => {
  let stack: Stack;
  let relay: Relay;
  before(async () => {
    stack = await Stack.start({
      tokens: [PAT],
      grants: GRANTS,
      githubToken: false, // the only credential is the PAT the workflow sends
      pools: [
        { name: 'linux', labels: ['linux'] },
        // A pool whose VMs cannot start: its image is not there.
        { name: 'broken', labels: ['broken'], image: 'no-such-image' },
      ],
      legacy: { secret: SECRET, openssl_password: OPENSSL_PW, wait_for_ready: true, wait_timeout: 240 },
    });
    relay = await Relay.start(() => stack.service.url);
  });
  after(async () => {
    await relay?.close();
    await stack?.stop();
  });

  it('fails on each refusal with an error status (its curl --fail reads only that), recording nothing', async () => {
    const r = run('7770001', '3');
    const pat = encryptLikeTheWorkflow(PAT, OPENSSL_PW);
    const data = (over: Record<string, string> = {}) => ({
      ghcontrol: 'create',
      servers: 'linux',
      PAT: pat,
      ID: spinwId(r),
      ...over,
    });
    const cases: [string, { data: Record<string, string>; secret: string }, number, RegExp][] = [
      [
        'wrong secret',
        { data: data(), secret: 'not-the-secret' },
        401,
        /^X-Hub-Signature: does not match the body/,
      ],
      [
        'wrong openssl password',
        { data: data({ PAT: encryptLikeTheWorkflow(PAT, 'wrong-password') }), secret: SECRET },
        400,
        /^data\.PAT: cannot decrypt token/,
      ],
      [
        'a token GitHub does not know',
        { data: data({ PAT: encryptLikeTheWorkflow(UNKNOWN_PAT, OPENSSL_PW) }), secret: SECRET },
        403,
        /^data\.PAT: GitHub does not accept this token for SpinW\/spinw/,
      ],
      [
        'unknown ghcontrol',
        { data: data({ ghcontrol: 'restart' }), secret: SECRET },
        400,
        /^data\.ghcontrol: unknown action "restart"/,
      ],
      [
        'servers no pool serves',
        { data: data({ servers: '[linux, windows]' }), secret: SECRET },
        400,
        /^data\.servers: no pool serves label "windows"/,
      ],
      ['bad ID', { data: data({ ID: '1;reboot' }), secret: SECRET }, 400, /^data\.ID: /],
    ];
    for (const [what, inputs, status, info] of cases) {
      const step = await actionStep(relay, r, inputs);
      assertRefused(step, status, info, CURL_HTTP_ERROR);
      assert.equal(step.stdout, '', `${what}: curl --fail prints no body`);
    }
    assert.deepEqual(await stack.service.store.listVms(), [], 'a refusal recorded a VM');
    assert.equal(jitConfigsMinted(stack), 0);
  });

  it("refuses SpinW's unsigned step: 200, success false, so that its jq fails", async () => {
    const r = run('7770002', '4');
    const pat = encryptLikeTheWorkflow(PAT, OPENSSL_PW);
    const step = await spinwStep(
      relay,
      r,
      spinwData({ ghcontrol: 'create', servers: 'linux', pat, id: spinwId(r) }),
    );
    assertRefused(step, 200, /^X-Hub-Signature: missing/);
    assert.equal(step.stdout.trim(), 'false');
    assert.deepEqual(await stack.service.store.listVms(), []);
  });

  it('fails when a VM cannot start (502), and leaves nothing behind', async () => {
    const r = run('7770003', '5');
    const pat = encryptLikeTheWorkflow(PAT, OPENSSL_PW);
    const step = await actionStep(relay, r, {
      data: { ghcontrol: 'create', servers: 'broken', PAT: pat, ID: spinwId(r) },
      secret: SECRET,
    });
    assertRefused(
      step,
      502,
      /^runners will not become ready: hatchery-broken-\S+: (destroying|failed) \(create failed: image no-such-image/,
      CURL_HTTP_ERROR,
    );
    const [vm] = await stack.service.store.listVms();
    assert.ok(vm);
    await stack.waitState(vm.name, ['failed'], 60_000);
    await stack.files.nothingLeft();
  });

  it('creates runners for an unchanged SpinW workflow, runs its job, destroys on the same delivery id', async () => {
    const r = run('7770004', '42');
    const id = spinwId(r);
    const pat = encryptLikeTheWorkflow(PAT, OPENSSL_PW);
    const minted = jitConfigsMinted(stack);

    // The old workflow's create blocks until the runners are online.
    const created = await actionStep(relay, r, {
      data: { ghcontrol: 'create', servers: 'linux', PAT: pat, ID: id },
      secret: SECRET,
    });
    assertPassed(created);
    assert.deepEqual(created.answer.labels, [`linux_${id}`]);
    assert.equal(JSON.parse(created.stdout).success, 'true', 'curl printed the answer');

    // unit_tests: runs-on: [self-hosted, linux_<ID>]
    const job = stack.fake.queueJob({
      repository: REPO,
      labels: ['self-hosted', `linux_${id}`],
      script: 'echo matlab-free test',
    });
    const done = await stack.fake.waitForJob(job.id, { timeoutMs: 120_000 });
    assert.equal(done.conclusion, 'success', done.output);

    // destroy_runners (if: always()): the same X-GitHub-Delivery (run number) as the create.
    const destroyed = await actionStep(relay, r, {
      data: { ghcontrol: 'destroy', servers: 'linux', ID: id },
      secret: SECRET,
    });
    assertPassed(destroyed);

    const vm = (await stack.service.store.listVms()).find((v) => v.name.startsWith('hatchery-linux-'));
    assert.ok(vm);
    await stack.waitState(vm.name, ['destroyed'], 60_000);
    await stack.files.nothingLeft();
    assert.equal(jitConfigsMinted(stack) - minted, 1);

    // The PAT was used by the service (the stand-in accepts no other token), never logged.
    assert.deepEqual(stack.fake.violations, []);
    const log = readFileSync(stack.files.logFile, 'utf8');
    assert.ok(!log.includes(PAT), 'the PAT reached the log');
    assert.ok(!log.includes(pat.replace(/_/g, '').slice(0, 40)), 'the encrypted PAT reached the log');
  });
});

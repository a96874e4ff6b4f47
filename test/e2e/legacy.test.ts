// SpinW's workflows, unchanged, against the legacy route on real VMs, through their real clients
// (test/helpers/legacy-clients.ts; the successful lifecycles in flows/legacy.ts, shared with the
// Vagrant pool's test): SpinW's own unsigned `curl | jq -e` step under `bash -e`, with
// Debian's jq, and the distributhor/workflow-webhook v1 action's signed `curl --fail` request.
// Each refusal must fail the step that sent it (or the jobs needing it would wait for a runner
// that never comes) and record nothing; success must pass it, with the runner online.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  actionStep,
  CURL_HTTP_ERROR,
  encryptLikeTheWorkflow,
  Relay,
  spinwData,
  spinwStep,
} from '../helpers/legacy-clients.ts';
import { Stack } from '../helpers/stack.ts';
import {
  actionLifecycle,
  actionStackOptions,
  assertRefused,
  jitConfigsMinted,
  OPENSSL_PW,
  OTHER_PAT,
  PAT,
  run,
  SECRET,
  spinwId,
  spinwUnsignedLifecycle,
  UNKNOWN_PAT,
  unsignedStackOptions,
} from './flows/legacy.ts';

const JQ_VERSION = execFileSync('jq', ['--version'], { encoding: 'utf8' }).trim();

describe(`SpinW's own step: unsigned curl | jq -e (${JQ_VERSION}) under bash -e`, () => {
  let stack: Stack;
  let relay: Relay;
  before(async () => {
    stack = await Stack.start(unsignedStackOptions());
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
    await spinwUnsignedLifecycle(stack, relay, run('8880002', '6'));
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
    stack = await Stack.start(
      actionStackOptions([
        { name: 'linux', labels: ['linux'] },
        // A pool whose VMs cannot start: its image is not there.
        { name: 'broken', labels: ['broken'], image: 'no-such-image' },
      ]),
    );
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
    await actionLifecycle(stack, relay, run('7770004', '42'));
  });
});

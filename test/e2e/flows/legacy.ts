// SpinW's workflows against the legacy route, through their real clients
// (test/helpers/legacy-clients.ts): the run's secrets, the stacks each client needs, how a step
// passes or is refused, and the two successful lifecycles with every assertion the e2e tests
// make about them, whatever provider serves the pool. Shared by legacy.test.ts (QEMU) and
// vagrant.test.ts (a Vagrant pool).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  actionStep,
  encryptLikeTheWorkflow,
  spinwData,
  spinwStep,
  type Relay,
  type Run,
  type StepResult,
} from '../../helpers/legacy-clients.ts';
import type { PoolSpec, Stack, StackOptions } from '../../helpers/stack.ts';

export const REPO = 'SpinW/spinw';
/** The workflow's secrets.PERSONAL_TOKEN: GitHub accepts it for REPO only. */
export const PAT = 'ghp_spinwLegacyToken000000000000000000';
/** A real token of someone else's repository. */
export const OTHER_PAT = 'ghp_otherRepositoryToken0000000000000000';
/** A token GitHub does not know (revoked, or never issued). */
export const UNKNOWN_PAT = 'ghp_revokedToken00000000000000000000000';
/** The service's own github.token (used for explicit requests; never for an unsigned legacy one). */
export const SERVICE_TOKEN = 'ghp_serviceOwnToken000000000000000000000';
export const OPENSSL_PW = 'correct-horse-battery';
export const SECRET = 'webhook-secret-of-spinw';
export const GRANTS = { [PAT]: [REPO], [OTHER_PAT]: ['someone/else'] };

export const run = (runId: string, runNumber: string): Run => ({ repository: REPO, runId, runNumber });
export const spinwId = (r: Run) => `${r.runId}_${r.runNumber}`;

/** A service for SpinW's own unsigned step: it has a token of its own, yet a request must bring a PAT. */
export function unsignedStackOptions(more: Partial<StackOptions> = {}): StackOptions {
  return {
    tokens: [SERVICE_TOKEN, PAT, OTHER_PAT],
    grants: GRANTS,
    githubToken: true,
    legacy: { allow_unsigned: true, openssl_password: OPENSSL_PW, wait_for_ready: true, wait_timeout: 240 },
    ...more,
  };
}

/** A service for the signed webhook action, whose only credential is the PAT the workflow sends. */
export function actionStackOptions(pools: PoolSpec[], more: Partial<StackOptions> = {}): StackOptions {
  return {
    tokens: [PAT],
    grants: GRANTS,
    githubToken: false,
    pools,
    legacy: { secret: SECRET, openssl_password: OPENSSL_PW, wait_for_ready: true, wait_timeout: 240 },
    ...more,
  };
}

/** The step failed, and the service said why, in the legacy shape, with `status`. */
export function assertRefused(step: StepResult, status: number, info: RegExp, exitCode?: number): void {
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
export function assertPassed(step: StepResult): void {
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

export const jitConfigsMinted = (stack: Stack) =>
  stack.fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/generate-jitconfig')).length;

/** Neither the PAT nor its encrypted form reached the service's log. */
function assertPatNotLogged(stack: Stack, encrypted: string): void {
  const log = readFileSync(stack.files.logFile, 'utf8');
  assert.ok(!log.includes(PAT), 'the PAT reached the log');
  assert.ok(!log.includes(encrypted.replace(/_/g, '').slice(0, 40)), 'the encrypted PAT reached the log');
}

/**
 * SpinW's own step (unsigned) on a service from unsignedStackOptions with a `linux` pool: the
 * create passes once a VM minted with the PAT is online; a destroy without the PAT, or with
 * another repository's, is refused and touches nothing; with the PAT it destroys the VM and
 * leaves nothing. `beforeDestroy` runs just before that destroy step. Returns the VM's name.
 */
export async function spinwUnsignedLifecycle(
  stack: Stack,
  relay: Relay,
  r: Run,
  opts: { beforeDestroy?: (vm: string) => Promise<void> | void } = {},
): Promise<string> {
  const id = spinwId(r);
  const pat = encryptLikeTheWorkflow(PAT, OPENSSL_PW);
  assert.match(pat, /_/, 'the PAT arrives in SpinW transport form');
  const minted = jitConfigsMinted(stack);

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

  await opts.beforeDestroy?.(vm.name);
  const destroyed = await spinwStep(relay, r, spinwData({ ghcontrol: 'destroy', servers: 'linux', pat, id }));
  assertPassed(destroyed);
  assert.match(destroyed.answer.info ?? '', new RegExp(`^destroying: ${vm.name}$`));
  await stack.waitState(vm.name, ['destroyed'], 120_000);
  await stack.files.nothingLeft();
  assert.equal(jitConfigsMinted(stack) - minted, 1);
  assert.deepEqual(stack.fake.violations, []);
  assertPatNotLogged(stack, pat);
  return vm.name;
}

/**
 * The distributhor/workflow-webhook action (signed) on a service from actionStackOptions with a
 * `linux` pool: an unchanged SpinW workflow's create blocks until the runner is online, its job
 * runs on `linux_<ID>`, its destroy (same delivery id) ends the VM, nothing is left.
 */
export async function actionLifecycle(stack: Stack, relay: Relay, r: Run): Promise<void> {
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
  await stack.waitState(vm.name, ['destroyed'], 120_000);
  await stack.files.nothingLeft();
  assert.equal(jitConfigsMinted(stack) - minted, 1);

  // The PAT was used by the service (the stand-in accepts no other token), never logged.
  assert.deepEqual(stack.fake.violations, []);
  assertPatNotLogged(stack, pat);
}

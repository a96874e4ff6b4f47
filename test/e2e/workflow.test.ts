// workflows/three-job.yml as a user copies it: its create and destroy steps run here with bash,
// curl, jq and openssl (what GitHub-hosted runners have) against a real service and real VMs,
// and the test job in between is dispatched by the stand-in exactly as its matrix asks.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { Stack } from '../helpers/stack.ts';

const run = promisify(execFile);
const WORKFLOW = fileURLToPath(new URL('../../workflows/three-job.yml', import.meta.url));

interface Step {
  id?: string;
  env?: Record<string, string>;
  run?: string;
  uses?: string;
}
interface Job {
  needs?: string | string[];
  if?: string;
  'runs-on': string | string[];
  outputs?: Record<string, string>;
  strategy?: { matrix: Record<string, string> };
  steps: Step[];
}
interface Workflow {
  env: Record<string, string>;
  jobs: Record<string, Job>;
}

describe('workflows/three-job.yml against a real service', () => {
  let stack: Stack;
  let work: string;
  const wf = parse(readFileSync(WORKFLOW, 'utf8')) as Workflow;
  before(async () => {
    stack = await Stack.start();
    work = mkdtempSync(path.join(tmpdir(), 'hatchery-workflow-'));
  });
  after(async () => {
    await stack?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  /** Runs a `run:` step as GitHub does (bash -e), with its env; `${{ secrets.X }}` from `secrets`. */
  async function runStep(step: Step, github: Record<string, string>, secrets: Record<string, string>) {
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, ...github };
    for (const [k, v] of Object.entries({ ...wf.env, ...step.env })) {
      const m = /^\$\{\{\s*secrets\.([A-Z_]+)\s*\}\}$/.exec(v);
      env[k] = m ? secrets[m[1]!]! : v;
      assert.ok(env[k] !== undefined, `secret for ${k}`);
    }
    return run('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', step.run!], {
      cwd: work,
      env,
      timeout: 300_000,
    });
  }

  it('has the three-job shape: create, tests on the unique labels, destroy if: always()', () => {
    const { create_runners: create, tests, destroy_runners: destroy } = wf.jobs;
    assert.ok(create && tests && destroy);
    assert.equal(create.outputs?.labels, '${{ steps.create.outputs.labels }}');
    assert.equal(tests.needs, 'create_runners');
    assert.equal(tests.strategy?.matrix.runner, '${{ fromJSON(needs.create_runners.outputs.labels) }}');
    assert.deepEqual(tests['runs-on'], ['self-hosted', '${{ matrix.runner }}']);
    assert.deepEqual(destroy.needs, ['create_runners', 'tests']);
    assert.equal(destroy.if, 'always()');
  });

  it('creates, waits for the runner, runs the matrix job on it, destroys: nothing left', async (t) => {
    const secrets = {
      HATCHERY_URL: stack.service.url,
      HATCHERY_CONTROL_SECRET: stack.files.controlSecret,
      HATCHERY_API_TOKEN: stack.files.apiToken,
    };
    const output = path.join(work, 'github-output');
    const github = {
      GITHUB_REPOSITORY: 'octo-org/workflow',
      GITHUB_RUN_ID: '31415926',
      GITHUB_RUN_ATTEMPT: '1',
      GITHUB_OUTPUT: output,
    };
    const createStep = wf.jobs.create_runners!.steps.find((s) => s.id === 'create')!;
    const created = await runStep(createStep, github, secrets);
    t.diagnostic(created.stdout.trim().split('\n').join(' | '));
    const labels = JSON.parse(/^labels=(.*)$/m.exec(readFileSync(output, 'utf8'))![1]!) as string[];
    assert.equal(labels.length, 1);
    const [label] = labels as [string];
    assert.match(created.stdout, new RegExp(`${label}: runner online`));
    assert.equal((await stack.vm(label)).state, 'idle');

    // tests: runs-on [self-hosted, <matrix.runner>]
    const job = stack.fake.queueJob({
      repository: github.GITHUB_REPOSITORY,
      labels: ['self-hosted', label],
      script: 'echo make test',
    });
    assert.equal((await stack.fake.waitForJob(job.id, { timeoutMs: 120_000 })).conclusion, 'success');

    const destroyed = await runStep(wf.jobs.destroy_runners!.steps[0]!, github, secrets);
    assert.match(destroyed.stdout, new RegExp(`${label}: (destroying|destroyed|draining)`));
    await stack.waitState(label, ['destroyed'], 60_000);
    await stack.files.nothingLeft();
    assert.deepEqual(stack.fake.violations, []);
  });

  it('fails the create job with the reason when Hatchery refuses the request', async () => {
    const secrets = {
      HATCHERY_URL: stack.service.url,
      HATCHERY_CONTROL_SECRET: 'not-the-secret-at-all',
      HATCHERY_API_TOKEN: stack.files.apiToken,
    };
    const github = {
      GITHUB_REPOSITORY: 'octo-org/workflow',
      GITHUB_RUN_ID: '27182818',
      GITHUB_RUN_ATTEMPT: '1',
      GITHUB_OUTPUT: path.join(work, 'out2'),
    };
    const createStep = wf.jobs.create_runners!.steps.find((s) => s.id === 'create')!;
    await assert.rejects(runStep(createStep, github, secrets), (e: Error & { stderr: string }) =>
      /401/.test(e.stderr),
    );
    assert.equal(
      (await stack.service.store.listVms({ repository: 'octo-org/workflow' })).filter(
        (v) => v.runId === '27182818',
      ).length,
      0,
    );
  });
});

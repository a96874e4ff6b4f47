// scripts/run-tests.sh (what `npm test` runs): a run with a skipped or todo test fails, however
// green its tests are; the runner's own summary says why.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const repo = fileURLToPath(new URL('../..', import.meta.url));

function run(fixture: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('sh', ['scripts/run-tests.sh', `test/fixtures/run-tests/${fixture}.fixture.ts`], {
    cwd: repo,
    encoding: 'utf8',
    // The outer runner marks its children; the inner run must behave like a top-level one.
    env: { ...process.env, NODE_TEST_CONTEXT: undefined },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('scripts/run-tests.sh', () => {
  it('passes when every test ran and passed', () => {
    const r = run('ok');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /ℹ pass 1\n/);
    assert.equal(r.stderr, '');
  });

  it('fails on a skipped test, naming it and quoting the runner’s summary', () => {
    const r = run('skipped');
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /ℹ skipped 1\n/);
    assert.match(r.stderr, /^# skipped 1$/m);
    assert.match(r.stderr, /ok 2 - needs a tool this machine lacks # SKIP no such tool/);
  });

  it('fails on a todo test', () => {
    const r = run('todo');
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /^# todo 1$/m);
    assert.match(r.stderr, /is not written yet # TODO/);
  });

  it('keeps the runner’s failure', () => {
    const r = run('failing');
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /ℹ fail 1\n/);
    assert.equal(r.stderr, '', 'nothing was skipped');
  });
});

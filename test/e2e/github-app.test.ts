// The three-job workflow on real VMs with runners minted through a GitHub App: no PAT anywhere
// (the stand-in accepts none), only the App's JWT and the installation tokens it is given.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Stack } from '../helpers/stack.ts';
import { THREE_JOB_REPO, threeJobWorkflow } from './flows/three-job.ts';

describe('three-job workflow through a GitHub App (no PAT, real VMs)', () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start({
      tokens: [],
      githubToken: false,
      app: { installations: [THREE_JOB_REPO.split('/')[0]!] },
      pools: [
        { name: 'linux', labels: ['linux'] },
        { name: 'debian', labels: ['debian'] },
      ],
    });
  });
  after(async () => {
    await stack?.stop();
  });

  it('mints both JIT configs with one installation token, runs the jobs, leaves nothing', async (t) => {
    await threeJobWorkflow(stack, t, { runId: 9101, labels: ['linux', 'debian'] });
    const paths = stack.fake.requests.map((r) => `${r.method} ${r.path.split('?')[0]} ${r.status}`);
    assert.equal(
      paths.filter((p) => p === `GET /repos/${THREE_JOB_REPO}/installation 200`).length,
      1,
      paths.join('\n'),
    );
    assert.equal(
      paths.filter((p) => /^POST \/app\/installations\/100\/access_tokens 201$/.test(p)).length,
      1,
    );
    assert.equal(paths.filter((p) => p.includes('generate-jitconfig 201')).length, 2);
    assert.ok(!paths.some((p) => / 401$/.test(p)), 'no call was refused');
  });
});

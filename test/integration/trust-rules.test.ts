// Pools' trust rules (core/trust.ts) through the service: a GitHub App job is served only from
// an allowed repository and, for event and fork rules, only when its run (read from GitHub: the
// webhook does not carry it) was triggered by an allowed event from the repository itself. A
// refused job gets no VM and its row says why; explicit requests obey the repository rule.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PoolRefusedError } from '../../src/core/context.ts';
import { workflowJobPayload } from '../fakes/github/webhooks.ts';
import type { QueueJobInput } from '../fakes/github/server.ts';
import { AppService } from '../helpers/app-service.ts';

interface JobRow {
  job_id: number;
  pool: string | null;
  vm: string | null;
  note: string;
}

describe('trust rules', () => {
  let app: AppService;
  before(async () => {
    app = await AppService.start({
      pools: [
        {
          name: 'secure',
          labels: ['secure'],
          trust: {
            repositories: ['octo-org/*', 'friends/app'],
            events: ['push', 'pull_request'],
            forks: false,
          },
        },
        { name: 'open', labels: ['open'] },
      ],
      installations: [
        { id: 77, account: 'octo-org' },
        { id: 78, account: 'stranger' },
        { id: 79, account: 'friends' },
      ],
    });
  });
  after(async () => {
    await app?.stop();
  });

  /** Queues the job in the stand-in (so that its run exists there) and posts its queued webhook. */
  async function queue(input: QueueJobInput, installation: number) {
    const job = app.fake.queueJob(input);
    const r = await app.post('workflow_job', workflowJobPayload('queued', job, null, installation));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const { jobs } = await app.api<{ jobs: JobRow[] }>('/api/v1/jobs');
    return { result: r.json.result, note: r.json.note, row: jobs.find((j) => j.job_id === job.id)! };
  }

  it('serves an allowed repository, event and origin', async () => {
    const allowed: [QueueJobInput, number][] = [
      [{ repository: 'octo-org/app', labels: ['self-hosted', 'secure'] }, 77],
      [{ repository: 'friends/app', labels: ['secure'], event: 'pull_request' }, 79],
    ];
    for (const [input, inst] of allowed) {
      const { result, row } = await queue(input, inst);
      assert.equal(result, 'vm_requested', `${input.repository}: ${row.note}`);
      assert.equal(row.pool, 'secure');
      assert.notEqual(row.vm, null);
    }
  });

  it('refuses, with the reason in the answer and the job row, and creates no VM', async () => {
    const before = (await app.service.store.listVms()).length;
    const cases: [QueueJobInput, number, RegExp][] = [
      [
        { repository: 'stranger/app', labels: ['secure'] },
        78,
        /^pool secure serves only octo-org\/\*, friends\/app: not stranger\/app$/,
      ],
      [
        { repository: 'friends/app2', labels: ['secure'] },
        79,
        /serves only octo-org\/\*, friends\/app: not friends\/app2/,
      ],
      [
        { repository: 'octo-org/app', labels: ['secure'], event: 'pull_request_target' },
        77,
        /^pool secure serves only runs triggered by push, pull_request: this run was triggered by pull_request_target$/,
      ],
      [
        {
          repository: 'octo-org/app',
          labels: ['secure'],
          event: 'pull_request',
          headRepository: 'forker/app',
        },
        77,
        /^pool secure serves no runs from forks: this run's code comes from forker\/app$/,
      ],
    ];
    for (const [input, inst, why] of cases) {
      const { result, note, row } = await queue(input, inst);
      assert.equal(result, 'not_served', JSON.stringify(input));
      assert.match(String(note), why);
      assert.match(row.note, why);
      assert.equal(row.pool, null);
      assert.equal(row.vm, null);
    }
    assert.equal((await app.service.store.listVms()).length, before, 'no VM for a refused job');
  });

  it('answers 500 and records nothing when the run cannot be read (the delivery is redelivered later)', async () => {
    // A job GitHub does not know: its run answers 404.
    const job = { ...app.fake.queueJob({ repository: 'octo-org/app', labels: ['open'] }), id: 999_999 };
    const r = await app.post(
      'workflow_job',
      workflowJobPayload('queued', { ...job, labels: ['secure'] }, null, 77),
    );
    assert.equal(r.status, 500);
    assert.equal(await app.service.store.getJob(999_999), null);
  });

  it('GitHub down: the webhook fails, nothing recorded; the same delivery again once it is back is served', async () => {
    const job = app.fake.queueJob({ repository: 'octo-org/lib', labels: ['secure'] });
    const payload = workflowJobPayload('queued', job, null, 77);
    await app.fake.goOffline();
    try {
      const down = await app.post('workflow_job', payload, { delivery: 'd-trust-down' });
      assert.equal(down.status, 500);
      assert.equal(await app.service.store.getJob(job.id), null);
    } finally {
      await app.fake.goOnline();
    }
    const again = await app.post('workflow_job', payload, { delivery: 'd-trust-down' });
    assert.equal(again.status, 200);
    assert.equal(again.json.result, 'vm_requested');
  });

  it('leaves pools without rules open to every repository and event', async () => {
    const { result } = await queue(
      { repository: 'stranger/app', labels: ['open'], event: 'pull_request', headRepository: 'forker/app' },
      78,
    );
    assert.equal(result, 'vm_requested');
  });

  it('applies the repository rule to explicit requests: refused before anything is recorded', async () => {
    const before = (await app.service.store.listVms()).length;
    await assert.rejects(
      app.service.intake.create({
        source: 'control',
        repository: 'stranger/app',
        labels: ['secure'],
        runId: '1',
        runAttempt: 1,
      }),
      (e: Error) =>
        e instanceof PoolRefusedError &&
        /serves only octo-org\/\*, friends\/app: not stranger\/app/.test(e.message),
    );
    assert.equal((await app.service.store.listVms()).length, before);
    const ok = await app.service.intake.create({
      source: 'control',
      repository: 'octo-org/app',
      labels: ['secure'],
      runId: '1',
      runAttempt: 1,
    });
    assert.equal(ok.results.length, 1);
  });
});

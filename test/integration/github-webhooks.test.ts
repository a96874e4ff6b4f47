// POST /hooks/github: signatures verified on the raw bytes (a wrong one → 401 and nothing
// recorded), delivery ids deduplicated in the store, ping and installation events handled, any
// other event answered 202 and counted as ignored.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sign } from '../../src/crypto/hmac.ts';
import type { SqliteStore } from '../../src/store/sqlite.ts';
import { AppService } from '../helpers/app-service.ts';

const JOB = {
  action: 'queued',
  workflow_job: {
    id: 4001,
    run_id: 9001,
    run_attempt: 1,
    labels: ['self-hosted', 'linux'],
    runner_name: null,
  },
  repository: { full_name: 'octo-org/app' },
  installation: { id: 77 },
};

function deliveries(app: AppService): number {
  const db = (app.service.store as SqliteStore)['db'];
  return (db.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE source = 'github'").get() as { n: number })
    .n;
}

describe('POST /hooks/github', () => {
  let app: AppService;
  before(async () => {
    app = await AppService.start({
      pools: [{ name: 'linux', labels: ['linux'] }],
      installations: [{ id: 77, account: 'octo-org' }],
    });
  });
  after(async () => {
    await app?.stop();
  });

  it('a missing or wrong signature, or a tampered body: 401, nothing recorded', async () => {
    const body = JSON.stringify(JOB);
    const cases: [string, { signature?: string | null; body?: string }][] = [
      ['no signature', { signature: null }],
      ['another secret', { signature: sign('sha256', 'not-the-webhook-secret', body) }],
      ['SHA-1 only', { signature: sign('sha1', app.secret, body) }],
      ['malformed', { signature: 'sha256=zz' }],
      // Signed, then one byte changed (a label): the signature no longer covers the body.
      [
        'tampered body',
        { signature: sign('sha256', app.secret, body), body: body.replace('linux', 'linuy') },
      ],
      // The same JSON re-serialized with other spacing: signatures are over bytes, not values.
      ['re-serialized', { signature: sign('sha256', app.secret, JSON.stringify(JOB, null, 1)), body }],
    ];
    for (const [what, opts] of cases) {
      const r = await app.post('workflow_job', JOB, opts);
      assert.equal(r.status, 401, what);
      assert.equal(r.json.error, 'bad_signature', what);
    }
    assert.equal(deliveries(app), 0);
    assert.deepEqual(await app.service.store.listJobs(), []);
    assert.deepEqual(await app.service.store.listVms(), []);
    const stats = await app.api<{ bad_signature: number; events: object }>('/api/v1/webhooks');
    assert.equal(stats.bad_signature, cases.length);
    assert.deepEqual(stats.events, {});
  });

  it('ping: 200, its delivery recorded; the same delivery again: a duplicate that changes nothing', async () => {
    const ping = { zen: 'Design for failure.', hook_id: 1, hook: { type: 'App', events: ['workflow_job'] } };
    const first = await app.post('ping', ping, { delivery: 'd-ping-1' });
    assert.equal(first.status, 200);
    assert.equal(first.json.result, 'pong');
    assert.equal(first.json.duplicate, false);
    const again = await app.post('ping', ping, { delivery: 'd-ping-1' });
    assert.equal(again.status, 200);
    assert.equal(again.json.duplicate, true);
    assert.equal(deliveries(app), 1);
  });

  it('a duplicate workflow_job delivery creates no second VM', async () => {
    const a = await app.post('workflow_job', JOB, { delivery: 'd-job-1' });
    assert.equal(a.status, 200, JSON.stringify(a.json));
    assert.equal(a.json.result, 'vm_requested');
    const b = await app.post('workflow_job', JOB, { delivery: 'd-job-1' });
    assert.equal(b.json.duplicate, true);
    // The same event under a new delivery id (GitHub sent it twice): the job already has its VM.
    const c = await app.post('workflow_job', JOB, { delivery: 'd-job-2' });
    assert.equal(c.json.result, 'duplicate');
    assert.equal((await app.service.store.listVms()).length, 1);
  });

  it('other events: 202, ignored and counted', async () => {
    for (const [event, n] of [
      ['push', 2],
      ['issues', 1],
    ] as const) {
      for (let i = 0; i < n; i++) {
        const r = await app.post(event, { action: 'opened', repository: { full_name: 'octo-org/app' } });
        assert.equal(r.status, 202);
        assert.equal(r.json.result, 'ignored');
      }
    }
    const stats = await app.api<{
      events: Record<string, { handled: number; ignored: number; duplicate: number }>;
    }>('/api/v1/webhooks');
    assert.deepEqual(stats.events.push, { handled: 0, ignored: 2, duplicate: 0 });
    assert.deepEqual(stats.events.issues, { handled: 0, ignored: 1, duplicate: 0 });
    assert.deepEqual(stats.events.ping, { handled: 1, ignored: 0, duplicate: 1 });
    assert.equal(stats.events.workflow_job?.handled, 2);
  });

  it('installation events tell the App which installation covers a repository, and forget it when deleted', async () => {
    const gh = app.service.githubApp!;
    const lookups = () =>
      app.fake.requests.filter((r) => r.path === '/repos/octo-org/fresh/installation').length;
    const added = await app.post('installation_repositories', {
      action: 'added',
      installation: { id: 77 },
      repositories_added: [{ full_name: 'octo-org/fresh' }],
      repositories_removed: [],
    });
    assert.equal(added.status, 200);
    assert.equal(await gh.installationFor('octo-org/fresh'), 77);
    assert.equal(lookups(), 0, 'known from the webhook: not asked');
    const deleted = await app.post('installation', { action: 'deleted', installation: { id: 77 } });
    assert.equal(deleted.status, 200);
    assert.equal(await gh.installationFor('octo-org/fresh'), 77);
    assert.equal(lookups(), 1, 'forgotten: asked again');
  });

  it('signed but malformed: 400 naming the problem, nothing recorded', async () => {
    const before = deliveries(app);
    const noDelivery = await fetch(`${app.service.url}/hooks/github`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'ping',
        'x-hub-signature-256': sign('sha256', app.secret, '{}'),
      },
      body: '{}',
    });
    assert.equal(noDelivery.status, 400);
    const badJob = await app.post('workflow_job', { ...JOB, repository: { full_name: '../etc' } });
    assert.equal(badJob.status, 400);
    assert.match(String(badJob.json.message), /repository\.full_name/);
    const notJson = await app.post('workflow_job', null, { body: '{"action":' });
    assert.equal(notJson.status, 400);
    assert.equal(deliveries(app), before);
  });
});

describe('POST /hooks/github without a webhook secret', () => {
  let app: AppService;
  before(async () => {
    app = await AppService.start({
      pools: [{ name: 'linux', labels: ['linux'] }],
      installations: [],
      webhookSecret: false,
    });
  });
  after(async () => {
    await app?.stop();
  });
  it('answers 503 and says which setting enables it', async () => {
    const r = await app.post('ping', {});
    assert.equal(r.status, 503);
    assert.match(String(r.json.message), /github\.app\.webhook_secret/);
  });
});

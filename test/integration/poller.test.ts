// Missed webhooks through the poller: a job whose queued webhook never arrived is found among the
// queued runs of the App's repositories and served; an unchanged list costs a conditional 304.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AppService } from '../helpers/app-service.ts';

describe('queued-job poller', () => {
  let app: AppService;
  before(async () => {
    app = await AppService.start({
      pools: [{ name: 'linux', labels: ['linux'] }],
      installations: [{ id: 77, account: 'octo-org', repositories: ['octo-org/app', 'octo-org/quiet'] }],
    });
  });
  after(async () => {
    await app?.stop();
  });

  it('serves a job whose webhook was lost; unchanged repositories answer 304', async () => {
    const poller = app.service.poller!;
    const first = await poller.pass();
    assert.deepEqual(first, {
      repositories: 2,
      unchanged: 0,
      queued: 0,
      vmsRequested: 0,
      stoppedForRateLimit: false,
    });
    const second = await poller.pass();
    assert.equal(second.unchanged, 2, 'conditional requests: nothing changed');
    assert.equal(app.fake.requests.filter((r) => r.status === 304).length, 2);

    const sender = app.fake.sendWebhooks({
      url: `${app.service.url}/hooks/github`,
      secret: app.secret,
      drop: (_event, payload) => payload.action === 'queued', // every queued webhook is lost
    });
    const job = app.fake.queueJob({
      repository: 'octo-org/app',
      labels: ['self-hosted', 'linux'],
      name: 'unannounced',
    });
    await sender.idle();
    assert.equal(await app.service.store.getJob(job.id), null, 'no webhook told the service');

    const third = await poller.pass();
    assert.equal(third.vmsRequested, 1);
    assert.equal(third.unchanged, 1, 'octo-org/quiet still has nothing queued');
    const done = await app.fake.waitForJob(job.id, { timeoutMs: 60_000 });
    assert.equal(done.conclusion, 'success');
    assert.ok(done.runnerName?.startsWith('hatchery-'));
    const row = await app.service.store.getJob(job.id);
    assert.deepEqual(row?.labels, ['self-hosted', 'linux']);
    // Its in_progress and completed webhooks did arrive: the job ended, its VM with it.
    await sender.idle();
    assert.equal((await app.service.store.getJob(job.id))?.status, 'completed');
    const again = await poller.pass();
    assert.equal(again.vmsRequested, 0);
    assert.equal((await app.service.store.listVms()).length, 1, 'one VM, for the one job');
    assert.deepEqual(app.fake.violations, []);
  });
});

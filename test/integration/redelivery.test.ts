// Missed webhooks: a workflow_job delivery that never reached the service (GitHub records it as
// failed and does not retry) is found in the App's deliveries and redelivered; the job is then
// served. A delivery that reached the service is never redelivered.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AppService } from '../helpers/app-service.ts';

describe('redelivery of failed webhook deliveries', () => {
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

  it('a dropped queued webhook is redelivered and its job served; nothing is redelivered twice', async () => {
    let dropped = 0;
    const sender = app.fake.sendWebhooks({
      url: `${app.service.url}/hooks/github`,
      secret: app.secret,
      drop: (_event, payload) => payload.action === 'queued' && dropped++ === 0,
    });
    const job = app.fake.queueJob({
      repository: 'octo-org/app',
      labels: ['self-hosted', 'linux'],
      name: 'lost',
    });
    await sender.idle();
    assert.deepEqual(
      sender.deliveries.map((d) => [d.action, d.statusCode]),
      [['queued', 0]],
    );
    assert.equal(await app.service.store.getJob(job.id), null, 'the service never heard of it');

    const redelivered = await app.service.redeliverer!.pass();
    assert.deepEqual(redelivered, [sender.deliveries[0]!.guid]);
    const done = await app.fake.waitForJob(job.id, { timeoutMs: 60_000 });
    assert.equal(done.conclusion, 'success');
    const row = await app.service.store.getJob(job.id);
    assert.equal(row?.runnerName, done.runnerName);
    assert.ok(done.runnerName?.startsWith('hatchery-'), 'served by a VM of ours');
    await sender.idle();
    const again = sender.deliveries.find((d) => d.redelivery);
    assert.equal(again?.guid, sender.deliveries[0]!.guid, 'a redelivery keeps the guid');
    assert.equal(again?.statusCode, 200);

    // The failed attempt is still listed, but its event has reached the service now.
    assert.deepEqual(await app.service.redeliverer!.pass(), []);
    assert.equal(sender.deliveries.filter((d) => d.redelivery).length, 1);
    assert.deepEqual(app.fake.violations, []);
  });
});

// What the HTTP surface does with bad, repeated and late requests: bad input is refused with a
// clear error and changes nothing; repeats map to the same VM; re-runs get new VMs; destroys of
// absent or booting VMs succeed and leave nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Stack } from '../helpers/stack.ts';

const REPO = 'octo-org/app';
const create = (over: Record<string, unknown> = {}) => ({
  action: 'create',
  repository: REPO,
  run_id: 555,
  run_attempt: 1,
  labels: ['linux'],
  ...over,
});

describe('control and API requests', () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start();
  });
  after(async () => {
    await stack?.stop();
  });

  /** Nothing was written: no VM row, and the delivery id was never recorded. */
  const assertNothingRecorded = async (delivery: string) => {
    assert.deepEqual(await stack.service.store.listVms(), []);
    assert.equal(
      await stack.service.store.recordDelivery('control', delivery, Date.now()),
      true,
      'delivery was recorded',
    );
  };

  describe('bad input changes nothing', () => {
    it('answers 401 to a missing or wrong signature', async () => {
      const body = JSON.stringify(create());
      for (const [i, signature] of [
        null,
        'sha256=00',
        stack.files.signControl(`${body}\n`),
        stack.files.signControl(body).replace('sha256', 'sha1'),
      ].entries()) {
        const r = await stack.client.control(body, { signature, delivery: `bad-sig-${i}` });
        assert.equal(r.status, 401, JSON.stringify(r.json));
        assert.equal(r.json.error, 'bad_signature');
        await assertNothingRecorded(`bad-sig-${i}`);
      }
    });

    it('answers 400 naming the field for a malformed body', async () => {
      const cases: [string | Record<string, unknown>, string][] = [
        ['{"action": "create",', 'body'],
        ['[]', 'body'],
        ['', 'body'],
        [{ repository: REPO, run_id: 1, run_attempt: 1, labels: ['linux'] }, 'action'],
        [create({ labels: undefined }), 'labels'],
        [create({ labels: [] }), 'labels'],
        [create({ labels: 'linux' }), 'labels'],
        [create({ run_id: 'abc' }), 'run_id'],
        [create({ run_id: -1 }), 'run_id'],
        [create({ run_attempt: 0 }), 'run_attempt'],
        [create({ repository: 'no-slash' }), 'repository'],
        [create({ labels: ['linux', 7] }), 'labels.1'],
      ];
      for (const [i, [body, field]] of cases.entries()) {
        const r = await stack.client.control(body, { delivery: `malformed-${i}` });
        assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status}`);
        assert.equal(r.json.field, field, `${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
        assert.match(r.json.message ?? '', new RegExp(`^${field.replace('.', '\\.')}: `));
        await assertNothingRecorded(`malformed-${i}`);
      }
    });

    it('refuses path traversal and shell metacharacters in identifiers (400)', async () => {
      const cases: [Record<string, unknown>, string][] = [
        [create({ repository: '../../etc/passwd' }), 'repository'],
        [create({ repository: 'octo/..' }), 'repository'],
        [create({ repository: 'octo/app;rm -rf /' }), 'repository'],
        [create({ repository: 'octo/$(id)' }), 'repository'],
        [create({ run_id: '1;reboot' }), 'run_id'],
        [create({ run_id: '../1' }), 'run_id'],
        [create({ labels: ['linux`id`'] }), 'labels.0'],
        [create({ labels: ['../linux'] }), 'labels.0'],
        [create({ labels: ['linux\nHATCHERY_JITCONFIG=x'] }), 'labels.0'],
      ];
      for (const [i, [body, field]] of cases.entries()) {
        const r = await stack.client.control(body, { delivery: `hostile-${i}` });
        assert.equal(r.status, 400, JSON.stringify(body));
        assert.equal(r.json.field, field, JSON.stringify(r.json));
        await assertNothingRecorded(`hostile-${i}`);
      }
    });

    it('answers 400 to an unknown action or a label no pool serves, never "success"', async () => {
      for (const [i, [body, field, message]] of (
        [
          [create({ action: 'reboot' }), 'action', /unknown action "reboot"/],
          [create({ action: 'CREATE' }), 'action', /unknown action/],
          [create({ labels: ['linux', 'windows'] }), 'labels', /no pool serves label "windows"/],
        ] as const
      ).entries()) {
        const r = await stack.client.control(body, { delivery: `unknown-${i}` });
        assert.equal(r.status, 400);
        assert.equal(r.json.field, field);
        assert.match(r.json.message ?? '', message);
        await assertNothingRecorded(`unknown-${i}`);
      }
    });

    it('guards the API with the bearer token and validates VM names', async () => {
      assert.equal((await stack.client.api('GET', '/api/v1/vms', 'wrong-token-wrong-token')).status, 401);
      assert.equal((await stack.client.request('GET', '/api/v1/vms')).status, 401);
      assert.equal((await stack.client.api('GET', '/api/v1/vms/hatchery-nope')).status, 404);
      const bad = await stack.client.api('GET', `/api/v1/vms/${encodeURIComponent('hatchery-a;id')}`);
      assert.equal(bad.status, 400);
      assert.equal(bad.json.field, 'name');
      assert.equal((await stack.client.api('DELETE', '/api/v1/vms/hatchery-nope')).status, 404);
      assert.equal((await stack.client.api('GET', '/api/v1/vms?state=exploded')).status, 400);
      const health = await stack.client.request<{
        status: string;
        memory_mib: { rss: number; heap_used: number };
      }>('GET', '/healthz');
      assert.equal(health.status, 200);
      assert.equal(health.json.status, 'ok');
      assert.ok(
        health.json.memory_mib.rss > health.json.memory_mib.heap_used,
        'resident memory includes the heap',
      );
      assert.deepEqual(await stack.service.store.listVms(), []);
    });
  });

  describe('repeats, re-runs and destroys', () => {
    it('maps a repeated create to one VM, a re-run to a new one; destroys absent and booting VMs', async () => {
      const first = await stack.client.control(create(), { delivery: 'rep-1' });
      assert.equal(first.status, 202);
      const name = first.json.vms[0]!.name;
      assert.equal(first.json.vms[0]!.created, true);

      // The same delivery again (a redelivery), and the same run/attempt/label under a new id.
      const redelivered = await stack.client.control(create(), { delivery: 'rep-1' });
      assert.equal(redelivered.json.duplicate, true);
      const again = await stack.client.control(create(), { delivery: 'rep-2' });
      for (const r of [redelivered, again]) {
        assert.equal(r.status, 202);
        assert.equal(r.json.vms[0]!.name, name);
        assert.equal(r.json.vms[0]!.created, false);
      }
      // Labels match case-insensitively, as GitHub's do.
      assert.equal((await stack.client.control(create({ labels: ['Linux'] }))).json.vms[0]!.name, name);

      // A re-run is a new attempt: a new VM.
      const rerun = await stack.client.control(create({ run_attempt: 2 }), { delivery: 'rep-3' });
      const rerunName = rerun.json.vms[0]!.name;
      assert.notEqual(rerunName, name);
      assert.equal((await stack.service.store.listVms()).length, 2);

      // Destroying a run that has no VM is a success that names nothing.
      const absent = await stack.client.control(create({ action: 'destroy', run_id: 999_999 }));
      assert.equal(absent.status, 202);
      assert.deepEqual(absent.json.vms, []);

      // Destroy while booting: the VM exists at the provider but its runner is not up yet.
      await stack.waitState(name, ['booting']);
      const destroying = await stack.client.control(create({ action: 'destroy' }));
      assert.equal(destroying.status, 202);
      assert.equal(destroying.json.vms[0]!.name, name);
      await stack.waitState(name, ['destroyed'], 30_000);
      // …and the re-run's VM, wherever it is in its lifecycle, by hand through the API.
      assert.equal((await stack.client.api('DELETE', `/api/v1/vms/${rerunName}`)).status, 202);
      await stack.waitState(rerunName, ['destroyed'], 60_000);

      // A create arriving after its VM is gone is a late duplicate, not new work.
      const late = await stack.client.control(create(), { delivery: 'rep-4' });
      assert.equal(late.json.vms[0]!.name, name);
      assert.equal(late.json.vms[0]!.state, 'destroyed');
      assert.equal(late.json.vms[0]!.created, false);

      await stack.files.nothingLeft();
      // One JIT config per VM at most: a repeat never minted a second runner.
      const mints = stack.fake.requests.filter(
        (r) => r.method === 'POST' && r.path.endsWith('/generate-jitconfig'),
      );
      assert.ok(mints.length <= 2, `${mints.length} JIT configs minted`);
      assert.deepEqual(stack.fake.violations, []);
      const events = (await stack.events(name)).map((e) => e.to);
      assert.deepEqual(events.slice(-2), ['destroying', 'destroyed']);
      assert.ok(!events.includes('failed'));
    });
  });
});

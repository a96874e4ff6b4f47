// A VM that boots but whose runner never registers is destroyed after the pool's boot timeout,
// ends `failed` with the reason, and leaves nothing. The runner download is sent into a black
// hole (a server that accepts and never answers), so the guest hangs the way a broken image does.
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { eventually, Stack } from '../helpers/stack.ts';

// Long enough for the guest to boot and start its download on a loaded 2-core machine (the test
// needs to see that much), short enough to keep the test quick.
const BOOT_TIMEOUT_S = 40;

describe('timeouts (real VMs)', () => {
  let stack: Stack;
  let hole: net.Server;
  const sockets = new Set<net.Socket>();
  before(async () => {
    hole = net.createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
    const port = (hole.address() as AddressInfo).port;
    stack = await Stack.start({
      pools: [
        {
          name: 'hang',
          labels: ['hang'],
          forwardTo: `127.0.0.1:${port}`,
          timeouts: { boot: BOOT_TIMEOUT_S },
        },
      ],
    });
  });
  after(async () => {
    await stack?.stop();
    for (const s of sockets) s.destroy();
    await new Promise((r) => hole.close(r));
  });

  it('destroys a VM whose runner never registers after the boot timeout: failed, with the reason', async () => {
    const r = await stack.client.control({
      action: 'create',
      repository: 'octo/app',
      run_id: 1,
      run_attempt: 1,
      labels: ['hang'],
    });
    assert.equal(r.status, 202);
    const name = r.json.vms[0]!.name;
    const booting = await stack.waitState(name, ['booting']);
    // The guest is up and waiting on its download when the deadline passes.
    await eventually(
      async () => ((await stack.events(name)).some((e) => e.event === 'guest_booted') ? true : undefined),
      'the guest to boot',
      60_000,
    );
    await eventually(
      () => (sockets.size >= 1 ? true : undefined),
      'the guest to hang on its runner download',
    );

    const waited = await stack.client.api<{ state: string; failure: string; wait: string }>(
      'GET',
      `/api/v1/vms/${name}?wait=ready&timeout=60`,
    );
    assert.equal(waited.status, 409, 'the long-poll learns that this VM will never be ready');
    assert.equal(waited.json.wait, 'ended');

    const failed = await stack.waitState(name, ['failed'], 60_000);
    assert.equal(failed.failure, `boot timeout: the runner did not register within ${BOOT_TIMEOUT_S} s`);
    const events = await stack.events(name);
    assert.deepEqual(
      events.map((e) => `${e.event}→${e.to}`),
      [
        'requested→pending',
        'admitted→provisioning',
        'created→booting',
        'guest_booted→booting',
        'timeout→destroying',
        'destroy_done→failed',
      ],
    );
    const timedOutAt = (await stack.service.store.listEvents(failed.id)).find(
      (e) => e.event === 'timeout',
    )!.at;
    const createdAt = (await stack.service.store.listEvents(failed.id)).find(
      (e) => e.event === 'created',
    )!.at;
    assert.ok(
      timedOutAt - createdAt >= BOOT_TIMEOUT_S * 1000,
      `timed out ${timedOutAt - createdAt} ms after creation`,
    );
    assert.ok(booting.deadlineAt! <= timedOutAt);

    await stack.files.nothingLeft();
    // Its console log outlives it, for the operator to see why (`hatchery vm logs`).
    const console = await stack.service.providers.forPool('hang').console!(name);
    assert.match(console ?? '', /hatchery: downloading the runner from http:\/\/10\.0\.2\.100\//);
    // Its registration (minted, never used) was removed with the VM.
    assert.deepEqual(await stack.service.store.listRegistrations({ live: true }), []);
    assert.deepEqual(stack.fake.violations, []);
  });
});

// More live VMs than any page or cap (1,200 on the in-memory provider, real SQLite, the GitHub
// stand-in): the reconciler compares every one of them, start-up recovery too, and the API
// lists them all through its cursor.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'smol-toml';
import { loadConfig } from '../../src/config/load.ts';
import { sign } from '../../src/crypto/hmac.ts';
import { silentLogger } from '../../src/log.ts';
import type { MemoryProvider } from '../../src/providers/memory/provider.ts';
import { HatcheryService } from '../../src/service.ts';
import { FakeGitHub } from '../fakes/github/server.ts';

const N = 1200;
const LOST = 100;

describe(`${N} live VMs`, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-scale-'));
  const secret = randomBytes(16).toString('hex');
  const apiToken = randomBytes(16).toString('hex');
  const ghToken = `ghp_${randomBytes(18).toString('hex')}`;
  const file = path.join(dir, 'hatchery.toml');
  let fake: FakeGitHub;
  let service: HatcheryService;
  let names: string[] = [];

  const start = () =>
    HatcheryService.start({
      config: loadConfig({ file, env: {}, dotenv: false }).config,
      log: silentLogger(),
    });
  const backend = () => (service.providers.named('sim') as MemoryProvider).backend;

  before(async () => {
    fake = await FakeGitHub.start({ tokens: [ghToken] });
    writeFileSync(
      file,
      stringify({
        instance_id: `scale-${randomBytes(3).toString('hex')}`,
        server: { port: 0 },
        api: { token: apiToken },
        control: { secret },
        github: { api_url: fake.url, token: ghToken },
        runner: { url: 'http://10.0.2.100/runner.tgz', sha256: '0'.repeat(64) },
        store: { path: path.join(dir, 'hatchery.db') },
        workers: { concurrency: 32, poll_ms: 20 },
        // The reconciler runs when the test says so.
        reconcile: { interval_seconds: 3600 },
        limits: { max_vms: N },
        log: { level: 'silent' },
        providers: { sim: { kind: 'memory' } },
        pools: [{ name: 'sim', labels: ['sim'], max_vms: N, timeouts: { boot: 3600 } }],
      }),
    );
    service = await start();
    for (let i = 0; i < N; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: 100 }, async (_, j) => {
          const body = JSON.stringify({
            action: 'create',
            repository: 'octo/scale',
            run_id: i + j + 1,
            run_attempt: 1,
            labels: ['sim'],
          });
          const res = await fetch(`${service.url}/hooks/control`, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              'x-hatchery-signature-256': sign('sha256', secret, body),
            },
            body,
          });
          assert.equal(res.status, 202);
          return ((await res.json()) as { vms: { name: string }[] }).vms[0]!.name;
        }),
      );
      names.push(...batch);
    }
    for (let i = 0; ; i++) {
      if ((await service.store.listVms({ states: ['booting'] })).length === N) break;
      assert.ok(i < 1200, 'every VM reached booting');
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(async () => {
    if (service) {
      const provider = service.providers.named('sim')!;
      for (const vm of await provider.list()) await provider.destroy(vm.name);
      assert.deepEqual(await provider.list(), []);
      await service.stop();
    }
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the API lists every one of them, a page at a time', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = cursor ? `&cursor=${cursor}` : '';
      const res = await fetch(`${service.url}/api/v1/vms?state=booting&limit=500${q}`, {
        headers: { authorization: `Bearer ${apiToken}` },
      });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { vms: { name: string }[]; next_cursor: string | null };
      seen.push(...body.vms.map((v) => v.name));
      cursor = body.next_cursor;
      pages++;
    } while (cursor);
    assert.equal(pages, Math.ceil(N / 500));
    assert.deepEqual([...seen].sort(), [...names].sort(), 'each VM once');
    const bad = await fetch(`${service.url}/api/v1/vms?cursor=12`, {
      headers: { authorization: `Bearer ${apiToken}` },
    });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { message: string }).message, /^cursor: /);
  });

  /** Lost while booting: failed as such, once the worker has run its destroy step. */
  async function assertLostWhileBooting(lost: string[]): Promise<void> {
    for (const name of lost) {
      const vm = await service.store.getVm(name);
      assert.ok(vm && ['destroying', 'failed'].includes(vm.state), `${name} is ${vm?.state}`);
      assert.match(vm.failure ?? '', /stopped unexpectedly while booting/);
    }
  }

  it('a reconcile pass finds every VM the provider lost, the oldest among them too', async () => {
    // The oldest: beyond the newest 1,000 that a capped listing used to compare.
    const lost = [...names.slice(0, LOST / 2), ...names.slice(-LOST / 2)];
    for (const name of lost) backend().delete(name);
    const report = await service.reconciler.sweep();
    assert.deepEqual([...report.vanished].sort(), [...lost].sort());
    assert.deepEqual(report.errors, []);
    await assertLostWhileBooting(lost);
    names = names.filter((n) => !lost.includes(n));
  });

  it('start-up recovery compares every VM too', async () => {
    await service.stop();
    const lost = names.slice(0, 10);
    for (const name of lost) backend().delete(name); // lost while the service was down
    service = await start();
    await assertLostWhileBooting(lost);
    const booting = await service.store.listVms({ states: ['booting'] });
    assert.equal(booting.length, N - LOST - lost.length, 'the others are untouched');
  });
});

// Whole lifecycles without a hypervisor: the in-memory provider hands each VM to emulated guests
// that report over a unix socket (as QEMU's virtio-serial port) or the real HTTP guest channel,
// and play the runner against the GitHub stand-in.
// What the control plane's benchmark (bench/control-plane.ts) and scale tests build on.
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
import { HatcheryService } from '../../src/service.ts';
import { FakeGitHub } from '../fakes/github/server.ts';
import { GuestEmulator } from '../fakes/guest/emulator.ts';

const REPO = 'octo/emulated';
const N = 20;

for (const channel of ['native', 'http'] as const) {
  describe(`emulated lifecycles (memory provider, emulated guests, ${channel} channel)`, () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-emulated-'));
    const secret = randomBytes(16).toString('hex');
    const ghToken = `ghp_${randomBytes(18).toString('hex')}`;
    let fake: FakeGitHub;
    let emulator: GuestEmulator;
    let service: HatcheryService;

    before(async () => {
      fake = await FakeGitHub.start({ tokens: [ghToken] });
      emulator = new GuestEmulator();
      const file = path.join(dir, 'hatchery.toml');
      writeFileSync(
        file,
        stringify({
          instance_id: `emu-${randomBytes(3).toString('hex')}`,
          server: { port: 0 },
          control: { secret },
          github: { api_url: fake.url, token: ghToken },
          runner: { url: `${fake.url}/runner.tgz`, sha256: '0'.repeat(64) },
          store: { path: path.join(dir, 'hatchery.db') },
          workers: { poll_ms: 20 },
          log: { level: 'silent' },
          providers: { sim: { kind: 'memory', guest_emulator: await emulator.start() } },
          pools: [{ name: 'sim', labels: ['sim'], max_vms: N, channel }],
        }),
      );
      service = await HatcheryService.start({
        config: loadConfig({ file, env: {}, dotenv: false }).config,
        log: silentLogger(),
      });
    });
    after(async () => {
      await service?.stop();
      await emulator?.close();
      await fake?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it(`runs ${N} lifecycles to the end and leaves nothing`, async () => {
      const names = await Promise.all(
        Array.from({ length: N }, async (_, i) => {
          const body = JSON.stringify({
            action: 'create',
            repository: REPO,
            run_id: i + 1,
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
      const jobs = names.map((name) =>
        fake.queueJob({ repository: REPO, labels: ['self-hosted', name], name: `job-${name}` }),
      );
      for (const job of jobs)
        assert.equal((await fake.waitForJob(job.id, { timeoutMs: 60_000 })).conclusion, 'success');
      for (const name of names) {
        for (let i = 0; (await service.store.getVm(name))!.state !== 'destroyed'; i++) {
          assert.ok(i < 600, `${name} is ${(await service.store.getVm(name))!.state}`);
          await new Promise((r) => setTimeout(r, 50));
        }
        const events = (await service.store.listEvents((await service.store.getVm(name))!.id)).map(
          (e) => e.event,
        );
        assert.deepEqual(events, [
          'requested',
          'admitted',
          'created',
          'guest_booted',
          'runner_registered',
          'job_started',
          'job_finished',
          'vm_exited',
          'destroy_done',
        ]);
      }
      assert.deepEqual(
        [...emulator.endings().values()],
        names.map(() => 'powered off'),
      );
      assert.deepEqual(emulator.live(), []);
      assert.deepEqual(await service.providers.named('sim')!.list(), []);
      assert.deepEqual(await service.store.listRegistrations({ live: true }), []);
      assert.deepEqual(fake.runners(REPO), []);
    });
  });
}

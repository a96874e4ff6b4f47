// A HatcheryService in this process on the in-memory provider, its VMs handed to emulated guests
// (test/fakes/guest) that play the runner against the GitHub stand-in: whole lifecycles without a
// hypervisor. Shared by the tests that drive explicit creates through it to the end.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'smol-toml';
import { loadConfig } from '../../src/config/load.ts';
import { sign } from '../../src/crypto/hmac.ts';
import { silentLogger } from '../../src/log.ts';
import { HatcheryService } from '../../src/service.ts';
import type { VmRecord } from '../../src/store/store.ts';
import type { FakeGitHub } from '../fakes/github/server.ts';
import { GuestEmulator } from '../fakes/guest/emulator.ts';

/** The audit trail of a VM whose job ran and whose guest powered off. */
export const FULL_LIFECYCLE = [
  'requested',
  'admitted',
  'created',
  'guest_booted',
  'runner_registered',
  'job_started',
  'job_finished',
  'vm_exited',
  'destroy_done',
];

export class EmulatedService {
  private constructor(
    readonly service: HatcheryService,
    readonly emulator: GuestEmulator,
    private readonly dir: string,
    private readonly secret: string,
  ) {}

  /** One pool `sim` (labels ["sim"], max_vms `maxVms`) on the memory provider. */
  static async start(opts: {
    fake: FakeGitHub;
    token: string;
    maxVms: number;
    /** More pool keys (e.g. channel). */
    pool?: Record<string, unknown>;
    /** More `[workers]` settings (e.g. concurrency). */
    workers?: Record<string, unknown>;
  }): Promise<EmulatedService> {
    const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-emulated-'));
    const secret = randomBytes(16).toString('hex');
    const emulator = new GuestEmulator();
    try {
      const file = path.join(dir, 'hatchery.toml');
      writeFileSync(
        file,
        stringify({
          instance_id: `emu-${randomBytes(3).toString('hex')}`,
          server: { port: 0 },
          control: { secret },
          github: { api_url: opts.fake.url, token: opts.token },
          runner: { url: `${opts.fake.url}/runner.tgz`, sha256: '0'.repeat(64) },
          store: { path: path.join(dir, 'hatchery.db') },
          workers: { poll_ms: 20, ...opts.workers },
          log: { level: 'silent' },
          providers: { sim: { kind: 'memory', guest_emulator: await emulator.start() } },
          pools: [{ name: 'sim', labels: ['sim'], max_vms: opts.maxVms, ...opts.pool }],
        }),
      );
      const service = await HatcheryService.start({
        config: loadConfig({ file, env: {}, dotenv: false }).config,
        log: silentLogger(),
      });
      return new EmulatedService(service, emulator, dir, secret);
    } catch (e) {
      await emulator.close();
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** `n` signed explicit creates at once (run ids 1…n), each answered 202; the VMs' names. */
  createVms(repository: string, n: number): Promise<string[]> {
    return Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const body = JSON.stringify({
          action: 'create',
          repository,
          run_id: i + 1,
          run_attempt: 1,
          labels: ['sim'],
        });
        const res = await fetch(`${this.service.url}/hooks/control`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-hatchery-signature-256': sign('sha256', this.secret, body),
          },
          body,
        });
        assert.equal(res.status, 202);
        return ((await res.json()) as { vms: { name: string }[] }).vms[0]!.name;
      }),
    );
  }

  /** Waits (up to 30 s) until the VM is destroyed; returns its row. */
  async destroyed(name: string): Promise<VmRecord> {
    for (let i = 0; ; i++) {
      const vm = (await this.service.store.getVm(name))!;
      if (vm.state === 'destroyed') return vm;
      assert.ok(i < 600, `${name} is ${vm.state}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Nothing left: no emulated guest, no VM at the provider, no live registration. */
  async assertNothingLeft(): Promise<void> {
    assert.deepEqual(this.emulator.live(), []);
    assert.deepEqual(await this.service.providers.named('sim')!.list(), []);
    assert.deepEqual(await this.service.store.listRegistrations({ live: true }), []);
  }

  async stop(): Promise<void> {
    await this.service.stop();
    await this.emulator.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

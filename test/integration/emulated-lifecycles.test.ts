// Whole lifecycles without a hypervisor: the in-memory provider hands each VM to emulated guests
// that report over a unix socket (as QEMU's virtio-serial port) or the real HTTP guest channel,
// and play the runner against the GitHub stand-in.
// What the control plane's benchmark (bench/control-plane.ts) and scale tests build on.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { FakeGitHub } from '../fakes/github/server.ts';
import { EmulatedService, FULL_LIFECYCLE } from '../helpers/emulated-service.ts';

const REPO = 'octo/emulated';
const N = 20;

for (const channel of ['native', 'http'] as const) {
  describe(`emulated lifecycles (memory provider, emulated guests, ${channel} channel)`, () => {
    const ghToken = `ghp_${randomBytes(18).toString('hex')}`;
    let fake: FakeGitHub;
    let emu: EmulatedService;

    before(async () => {
      fake = await FakeGitHub.start({ tokens: [ghToken] });
      emu = await EmulatedService.start({ fake, token: ghToken, maxVms: N, pool: { channel } });
    });
    after(async () => {
      await emu?.stop();
      await fake?.close();
    });

    it(`runs ${N} lifecycles to the end and leaves nothing`, async () => {
      const names = await emu.createVms(REPO, N);
      const jobs = names.map((name) =>
        fake.queueJob({ repository: REPO, labels: ['self-hosted', name], name: `job-${name}` }),
      );
      for (const job of jobs)
        assert.equal((await fake.waitForJob(job.id, { timeoutMs: 60_000 })).conclusion, 'success');
      for (const name of names) {
        const vm = await emu.destroyed(name);
        const events = (await emu.service.store.listEvents(vm.id)).map((e) => e.event);
        assert.deepEqual(events, FULL_LIFECYCLE);
      }
      assert.deepEqual(
        [...emu.emulator.endings().values()],
        names.map(() => 'powered off'),
      );
      await emu.assertNothingLeft();
      assert.deepEqual(fake.runners(REPO), []);
    });
  });
}

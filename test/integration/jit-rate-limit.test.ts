// GitHub's secondary rate limit on JIT config generation: the stand-in refuses as GitHub does
// (403 or 429, the documented message, retry-after or x-ratelimit-reset, all checked against
// GitHub's description), and Hatchery waits as told and mints again: the VMs are served, none
// fails or spends a create attempt on it, and nothing is left behind.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { stringify } from 'smol-toml';
import { loadConfig } from '../../src/config/load.ts';
import { sign } from '../../src/crypto/hmac.ts';
import { createRunnersApi } from '../../src/github/runners.ts';
import { silentLogger } from '../../src/log.ts';
import { HatcheryService } from '../../src/service.ts';
import { SECONDARY_RATE_LIMIT_DOCS } from '../fakes/github/rate-limit.ts';
import {
  API_VERSION,
  DEFAULT_TOKEN,
  FakeGitHub,
  type SecondaryRateLimitOptions,
} from '../fakes/github/server.ts';
import { GuestEmulator } from '../fakes/guest/emulator.ts';

const REPO = 'octo/limited';

async function mintRaw(fake: FakeGitHub, name: string): Promise<Response> {
  return fetch(`${fake.url}/repos/${REPO}/actions/runners/generate-jitconfig`, {
    method: 'POST',
    headers: {
      authorization: `token ${DEFAULT_TOKEN}`,
      'x-github-api-version': API_VERSION,
      'user-agent': 'test',
      accept: 'application/vnd.github+json',
      'content-type': 'application/json',
    },
    body: JSON.stringify({ name, runner_group_id: 1, labels: [name] }),
  });
}

describe('the stand-in GitHub: a secondary rate limit on JIT generation', () => {
  for (const limit of [
    { perMinute: 1, status: 403, hint: 'retry-after' },
    { perMinute: 1, status: 429, hint: 'reset' },
    { perMinute: 1, status: 403, hint: 'none' },
  ] satisfies SecondaryRateLimitOptions[]) {
    it(`refuses as GitHub does: ${limit.status}, ${limit.hint}`, async () => {
      const fake = await FakeGitHub.start({ jitRateLimit: limit });
      try {
        assert.equal((await mintRaw(fake, 'first')).status, 201);
        const refused = await mintRaw(fake, 'second');
        assert.equal(refused.status, limit.status);
        const body = (await refused.json()) as { message: string; documentation_url: string };
        assert.match(body.message, /exceeded a secondary rate limit/);
        assert.equal(body.documentation_url, SECONDARY_RATE_LIMIT_DOCS);
        const h = (n: string) => refused.headers.get(n);
        if (limit.hint === 'retry-after') assert.equal(h('retry-after'), '60');
        else assert.equal(h('retry-after'), null);
        if (limit.hint === 'reset') {
          assert.equal(h('x-ratelimit-remaining'), '0');
          assert.ok(Number(h('x-ratelimit-reset')) > Date.now() / 1000 + 50);
        } else {
          assert.notEqual(h('x-ratelimit-remaining'), '0', 'the primary limit is not what was hit');
        }
        assert.equal(fake.jitRateLimit!.refused, 1);
        assert.equal(fake.jitRateLimit!.granted.length, 1);
        assert.deepEqual(
          fake.runners(REPO).map((r) => r.name),
          ['first'],
          'a refused request registers nothing',
        );
      } finally {
        await fake.close(); // every reply was checked against GitHub's description
      }
    });
  }
});

describe('the runners API waits out a secondary rate limit', () => {
  for (const limit of [
    { perMinute: 60, status: 429, hint: 'retry-after' },
    { perMinute: 60, status: 403, hint: 'reset' },
  ] satisfies SecondaryRateLimitOptions[]) {
    it(`${limit.status} with ${limit.hint}: three mints at once all succeed, after waiting`, async () => {
      const fake = await FakeGitHub.start({ jitRateLimit: limit });
      const refusals: { waitMs: number; named: boolean }[] = [];
      try {
        const api = createRunnersApi({
          apiUrl: fake.url,
          token: DEFAULT_TOKEN,
          rateLimit: { onRefused: ({ waitMs, named }) => refusals.push({ waitMs, named }) },
        });
        const names = ['vm-a', 'vm-b', 'vm-c'];
        const minted = await Promise.all(
          names.map((name) => api.generateJitConfig(REPO, { name, labels: [name], runnerGroupId: 1 })),
        );
        assert.deepEqual(minted.map((m) => m.runnerName).sort(), names);
        assert.deepEqual(
          fake
            .runners(REPO)
            .map((r) => r.name)
            .sort(),
          names,
        );
        assert.ok(fake.jitRateLimit!.refused >= 2, `refused ${fake.jitRateLimit!.refused}`);
        assert.equal(refusals.length, fake.jitRateLimit!.refused, 'every refusal reached the gate');
        assert.ok(
          refusals.every((r) => r.named && r.waitMs <= 2000),
          JSON.stringify(refusals),
        );
      } finally {
        await fake.close();
      }
    });
  }
});

describe('Hatchery under a secondary rate limit (memory provider, emulated guests)', () => {
  it('every VM is served: a refused mint waits and is retried, no VM fails, nothing leaks', async () => {
    const N = 4;
    const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-ratelimit-'));
    const secret = randomBytes(16).toString('hex');
    const fake = await FakeGitHub.start({ jitRateLimit: { perMinute: 60, status: 403 } });
    const emulator = new GuestEmulator();
    let service: HatcheryService | undefined;
    try {
      const file = path.join(dir, 'hatchery.toml');
      writeFileSync(
        file,
        stringify({
          instance_id: `rl-${randomBytes(3).toString('hex')}`,
          server: { port: 0 },
          control: { secret },
          github: { api_url: fake.url, token: DEFAULT_TOKEN },
          runner: { url: `${fake.url}/runner.tgz`, sha256: '0'.repeat(64) },
          store: { path: path.join(dir, 'hatchery.db') },
          workers: { poll_ms: 20, concurrency: N },
          log: { level: 'silent' },
          providers: { sim: { kind: 'memory', guest_emulator: await emulator.start() } },
          pools: [{ name: 'sim', labels: ['sim'], max_vms: N }],
        }),
      );
      service = await HatcheryService.start({
        config: loadConfig({ file, env: {}, dotenv: false }).config,
        log: silentLogger(),
      });
      const url = service.url;
      const names = await Promise.all(
        Array.from({ length: N }, async (_, i) => {
          const body = JSON.stringify({
            action: 'create',
            repository: REPO,
            run_id: i + 1,
            run_attempt: 1,
            labels: ['sim'],
          });
          const res = await fetch(`${url}/hooks/control`, {
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
      const jobs = names.map((name) => fake.queueJob({ repository: REPO, labels: ['self-hosted', name] }));
      for (const job of jobs)
        assert.equal((await fake.waitForJob(job.id, { timeoutMs: 60_000 })).conclusion, 'success');
      assert.ok(fake.jitRateLimit!.refused >= 1, 'the limit refused some mints');
      assert.equal(fake.jitRateLimit!.granted.length, N, 'one JIT config per VM');
      const store = service.store;
      for (const name of names) {
        for (let i = 0; (await store.getVm(name))!.state !== 'destroyed'; i++) {
          assert.ok(i < 600, `${name} is ${(await store.getVm(name))!.state}`);
          await new Promise((r) => setTimeout(r, 50));
        }
        const vm = (await store.getVm(name))!;
        assert.equal(vm.attempts, 0, `${name} spent a create attempt`);
        const events = (await store.listEvents(vm.id)).map((e) => e.event);
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
      assert.deepEqual(emulator.live(), []);
      assert.deepEqual(await service.providers.named('sim')!.list(), []);
      assert.deepEqual(await store.listRegistrations({ live: true }), []);
      assert.deepEqual(fake.runners(REPO), []);
    } finally {
      await service?.stop();
      await emulator.close();
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

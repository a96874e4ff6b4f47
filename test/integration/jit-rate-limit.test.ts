// GitHub's secondary rate limit on JIT config generation: the stand-in refuses as GitHub does
// (403 or 429, the documented message, retry-after or x-ratelimit-reset, all checked against
// GitHub's description), and Hatchery waits as told and mints again: the VMs are served, none
// fails or spends a create attempt on it, and nothing is left behind.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRunnersApi } from '../../src/github/runners.ts';
import { SECONDARY_RATE_LIMIT_DOCS } from '../fakes/github/rate-limit.ts';
import {
  API_VERSION,
  DEFAULT_TOKEN,
  FakeGitHub,
  type SecondaryRateLimitOptions,
} from '../fakes/github/server.ts';
import { EmulatedService, FULL_LIFECYCLE } from '../helpers/emulated-service.ts';

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
    const fake = await FakeGitHub.start({ jitRateLimit: { perMinute: 60, status: 403 } });
    const emu = await EmulatedService.start({
      fake,
      token: DEFAULT_TOKEN,
      maxVms: N,
      workers: { concurrency: N },
    }).catch(async (e: Error) => {
      await fake.close();
      throw e;
    });
    try {
      const names = await emu.createVms(REPO, N);
      const jobs = names.map((name) => fake.queueJob({ repository: REPO, labels: ['self-hosted', name] }));
      for (const job of jobs)
        assert.equal((await fake.waitForJob(job.id, { timeoutMs: 60_000 })).conclusion, 'success');
      assert.ok(fake.jitRateLimit!.refused >= 1, 'the limit refused some mints');
      assert.equal(fake.jitRateLimit!.granted.length, N, 'one JIT config per VM');
      for (const name of names) {
        const vm = await emu.destroyed(name);
        assert.equal(vm.attempts, 0, `${name} spent a create attempt`);
        const events = (await emu.service.store.listEvents(vm.id)).map((e) => e.event);
        assert.deepEqual(events, FULL_LIFECYCLE);
      }
      await emu.assertNothingLeft();
      assert.deepEqual(fake.runners(REPO), []);
    } finally {
      await emu.stop();
      await fake.close();
    }
  });
});

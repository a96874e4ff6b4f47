// The HTTP guest channel against a real service (in-memory provider, real SQLite, the GitHub
// stand-in): a VM's messages carried by its token, each seq once and in order, and everything
// else — no token, a wrong one, another VM's, replays, gaps, a destroyed VM, garbage — refused
// without changing anything.
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
import { MemoryProvider } from '../../src/providers/memory/provider.ts';
import { HatcheryService } from '../../src/service.ts';
import { FakeGitHub } from '../fakes/github/server.ts';

const REPO = 'octo/app';

describe('HTTP guest channel', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-channel-'));
  const secret = randomBytes(16).toString('hex');
  const apiToken = randomBytes(16).toString('hex');
  const ghToken = `ghp_${randomBytes(18).toString('hex')}`;
  let fake: FakeGitHub;
  let service: HatcheryService;
  let runId = 0;

  before(async () => {
    fake = await FakeGitHub.start({ tokens: [ghToken] });
    const file = path.join(dir, 'hatchery.toml');
    writeFileSync(
      file,
      stringify({
        instance_id: `channel-${randomBytes(3).toString('hex')}`,
        server: { port: 0 },
        api: { token: apiToken },
        control: { secret },
        github: { api_url: fake.url, token: ghToken },
        runner: { url: 'http://10.0.2.100/runner.tgz', sha256: '0'.repeat(64) },
        store: { path: path.join(dir, 'hatchery.db') },
        workers: { poll_ms: 20 },
        log: { level: 'silent' },
        providers: { sim: { kind: 'memory' } },
        pools: [{ name: 'sim', labels: ['sim'], max_vms: 50 }],
      }),
    );
    const { config } = loadConfig({ file, env: {}, dotenv: false });
    service = await HatcheryService.start({ config, log: silentLogger() });
  });
  after(async () => {
    await service?.stop();
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const backend = () => (service.providers.named('sim') as MemoryProvider).backend;
  const post = async (token: string | null, body: string) => {
    const res = await fetch(`${service.url}/guest/v1/messages`, {
      method: 'POST',
      // New connection per message, as the guest's wget does (and no keep-alive race under load).
      keepalive: false,
      headers: {
        'content-type': 'text/plain',
        ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      },
      body,
    });
    return { status: res.status, text: await res.text() };
  };
  const state = async (name: string) => (await service.store.getVm(name))!;

  /** A VM created through the control route, up to `booting`; its guest config as the provider got it. */
  async function bootingVm(): Promise<{ name: string; token: string; url: string }> {
    const body = JSON.stringify({
      action: 'create',
      repository: REPO,
      run_id: ++runId,
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
    const name = ((await res.json()) as { vms: { name: string }[] }).vms[0]!.name;
    for (let i = 0; (await state(name)).state !== 'booting'; i++) {
      assert.ok(i < 200, `${name} did not reach booting`);
      await new Promise((r) => setTimeout(r, 25));
    }
    const config = backend().get(name)!.spec.guestConfig;
    return { name, token: config.HATCHERY_CHANNEL_TOKEN!, url: config.HATCHERY_CHANNEL! };
  }

  it('gives a VM without a channel of its own the HTTP channel: URL and a token of its own', async () => {
    const vm = await bootingVm();
    assert.equal(vm.url, `${service.url}/guest/v1/messages`);
    assert.match(vm.token, new RegExp(`^${vm.name}\\.[A-Za-z0-9_-]{43}$`));
    const row = await state(vm.name);
    assert.deepEqual(row.providerData.channel, { kind: 'http' });
    assert.match(row.channelTokenHash ?? '', /^[0-9a-f]{64}$/);
    assert.ok(!JSON.stringify(row).includes(vm.token), 'only the hash is stored');
  });

  it('applies each message once and in order; a gap asks for a replay', async () => {
    const vm = await bootingVm();
    assert.deepEqual(await post(vm.token, 'event 1 booted'), { status: 200, text: '' });
    assert.deepEqual(
      await post(vm.token, 'event 1 booted'),
      { status: 200, text: '' },
      'a replay is harmless',
    );
    assert.deepEqual(await post(vm.token, 'event 3 job-started build'), { status: 200, text: 'sync\n' });
    assert.equal((await state(vm.name)).state, 'booting', 'nothing past the gap was applied');
    assert.equal((await state(vm.name)).guestSeq, 1);
    assert.equal((await post(vm.token, 'event 2 registered')).status, 200);
    assert.equal((await post(vm.token, 'event 3 job-started build')).status, 200);
    const busy = await state(vm.name);
    assert.equal(busy.state, 'busy');
    assert.equal(busy.guestSeq, 3);
  });

  it('refuses a missing, wrong or foreign token and a malformed body, changing nothing', async () => {
    const a = await bootingVm();
    const b = await bootingVm();
    const before = await state(a.name);
    const wrong = `${a.name}.${'A'.repeat(43)}`;
    for (const [token, body, status] of [
      [null, 'event 1 booted', 401],
      ['', 'event 1 booted', 401],
      [wrong, 'event 1 booted', 401],
      [b.token.replace(b.name, a.name), 'event 1 booted', 401], // b's secret under a's name
      ['hatchery-../../etc.x', 'event 1 booted', 401],
      [a.token, 'booted', 400],
      [a.token, 'event x booted', 400],
      [a.token, `event 1 ${'x'.repeat(9000)}`, 400],
    ] as const) {
      const r = await post(token, body);
      assert.equal(r.status, status, `${token?.slice(0, 30)} ${body.slice(0, 30)}: ${r.text}`);
    }
    assert.deepEqual(await state(a.name), before);
    assert.equal((await state(b.name)).guestSeq, 0);
  });

  it('answers 410 once the VM has ended, and tells a VM being destroyed to shut down', async () => {
    const vm = await bootingVm();
    assert.equal((await post(vm.token, 'event 1 booted')).status, 200);
    const del = await fetch(`${service.url}/api/v1/vms/${vm.name}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${apiToken}` },
    });
    assert.equal(del.status, 202);
    // Between the request and the end, the guest learns it should stop.
    const destroying = (await state(vm.name)).state;
    if (destroying === 'destroying')
      assert.equal((await post(vm.token, 'event 2 stopping')).text, 'shutdown\n');
    for (let i = 0; (await state(vm.name)).state !== 'destroyed'; i++) {
      assert.ok(i < 200, 'destroyed');
      await new Promise((r) => setTimeout(r, 25));
    }
    const before = await state(vm.name);
    const r = await post(vm.token, 'event 3 registered');
    assert.equal(r.status, 410);
    assert.match(r.text, /destroyed/);
    assert.deepEqual(await state(vm.name), before);
  });

  it('holds a long-poll (GET ?wait) until a host line is ready; refuses bad tokens and waits; applies nothing', async () => {
    const vm = await bootingVm();
    const get = async (token: string | null, query: string, signal?: AbortSignal) => {
      const res = await fetch(`${service.url}/guest/v1/messages${query}`, {
        headers: token === null ? {} : { authorization: `Bearer ${token}` },
        ...(signal ? { signal } : {}),
      });
      return { status: res.status, text: await res.text() };
    };
    assert.equal((await get(null, '?wait=1')).status, 401);
    assert.equal((await get(`${vm.name}.${'A'.repeat(43)}`, '?wait=1')).status, 401);
    assert.equal((await get(vm.token, '?wait=x')).status, 400);
    assert.equal((await get(vm.token, '?wait=1&wait=2')).status, 400);
    assert.deepEqual(await get(vm.token, '?wait=0'), { status: 200, text: '' }, 'nothing for it: empty');
    // A line posted while the poll waits is its answer, and its sender learns it was taken.
    const row = await state(vm.name);
    const polled = get(vm.token, '?wait=10');
    await new Promise((r) => setTimeout(r, 200));
    await service.ctx.hostLines!.deliver(row, 'jit c2VjcmV0', 5000);
    assert.deepEqual(await polled, { status: 200, text: 'jit c2VjcmV0\n' });
    assert.equal(service.ctx.hostLines!.has(vm.name), false);
    // A line nobody asks for is withdrawn, and the sender told.
    await assert.rejects(service.ctx.hostLines!.deliver(row, 'jit eA', 100), /did not ask/);
    assert.deepEqual(await get(vm.token, '?wait=0'), { status: 200, text: '' });
    // Messages still go by POST, in order, from seq 1.
    assert.equal((await post(vm.token, 'event 1 booted')).status, 200);
    const after = await state(vm.name);
    assert.equal(after.guestSeq, 1, 'the polls applied nothing');
  });

  it('stays healthy under 10,000 garbage messages and applies none', async () => {
    const vm = await bootingVm();
    const before = await state(vm.name);
    const garbage = [
      () => post(null, 'event 1 booted'),
      () => post(`${vm.name}.${randomBytes(32).toString('base64url')}`, 'event 1 registered'),
      () => post(vm.token, randomBytes(64).toString('base64')),
      () => post(randomBytes(40).toString('hex'), 'event 1 booted'),
    ];
    const statuses = new Map<number, number>();
    for (let i = 0; i < 10_000; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: 100 }, (_, j) => garbage[(i + j) % garbage.length]!()),
      );
      for (const r of batch) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
    assert.deepEqual([...statuses].sort(), [
      [400, 2500],
      [401, 7500],
    ]);
    assert.deepEqual(await state(vm.name), before);
    const health = await fetch(`${service.url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal((await post(vm.token, 'event 1 booted')).status, 200, 'the real guest still gets through');
  });
});

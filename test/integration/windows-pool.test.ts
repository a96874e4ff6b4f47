// A Windows pool, end to end without Windows: the service (real HTTP, real SQLite, the GitHub
// stand-in) provisions VMs of `os = "windows"` pools on the in-memory provider, and the test
// checks what such a VM receives — bootstrap/windows.ps1 and a config the script reads — then
// plays the guest: the messages windows.ps1 would send, in its own format (read from the script:
// test/helpers/windows-bootstrap.ts), posted to the HTTP guest channel with the VM's token, and
// the host lines it answers with. What only a real Windows VM could show is listed in
// packer/windows-runner/README.md.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'smol-toml';
import { loadConfig } from '../../src/config/load.ts';
import { sign } from '../../src/crypto/hmac.ts';
import { opensslEncrypt } from '../../src/crypto/openssl.ts';
import { renderGuestConfig } from '../../src/guest/config.ts';
import { GUEST_MESSAGES_PATH } from '../../src/guest/protocol.ts';
import { silentLogger } from '../../src/log.ts';
import { Providers } from '../../src/providers/build.ts';
import { MemoryProvider } from '../../src/providers/memory/provider.ts';
import { HatcheryService } from '../../src/service.ts';
import { FakeGitHub } from '../fakes/github/server.ts';
import { FULL_LIFECYCLE } from '../helpers/emulated-service.ts';
import { WindowsBootstrap } from '../helpers/windows-bootstrap.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const REPO = 'spinw/spinw';
const LINUX_RUNNER = { url: 'http://10.0.2.100/actions-runner-linux-x64.tar.gz', sha256: '1'.repeat(64) };
const LEGACY_SECRET = 'spinw-webhook-secret';
const LEGACY_PASSWORD = 'spinw-openssl-password';
const WINDOWS_ZIP = { url: 'http://10.0.2.100/actions-runner-win-x64.zip', sha256: '2'.repeat(64) };

describe('a Windows pool (os = "windows") on the in-memory provider', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-windows-pool-'));
  const secret = randomBytes(16).toString('hex');
  const ghToken = `ghp_${randomBytes(18).toString('hex')}`;
  const instanceId = `win-${randomBytes(3).toString('hex')}`;
  let fake: FakeGitHub;
  let service: HatcheryService;
  let win: WindowsBootstrap;
  // A provider with a channel of its own, as QEMU's: Windows pools must still get the HTTP one.
  // Its destroys wait for `release` while a test holds them, so that `destroying` can be seen.
  let held: Promise<void> = Promise.resolve();
  const provider = new MemoryProvider({
    instanceId,
    images: ['tiny', 'windows-2022'],
    backend: new Map(),
    nativeChannel: 'unix',
    onDestroyed: () => held,
  });

  before(async () => {
    win = await WindowsBootstrap.load();
    fake = await FakeGitHub.start({ tokens: [ghToken] });
    const file = path.join(dir, 'hatchery.toml');
    writeFileSync(
      file,
      stringify({
        instance_id: instanceId,
        server: { port: 0 },
        control: { secret },
        github: { api_url: fake.url, token: ghToken },
        runner: LINUX_RUNNER,
        store: { path: path.join(dir, 'hatchery.db') },
        workers: { poll_ms: 20 },
        log: { level: 'silent' },
        // SpinW's route, signed as the webhook action signs (its runners need not come online here).
        legacy: {
          enabled: true,
          secret: LEGACY_SECRET,
          openssl_password: LEGACY_PASSWORD,
          wait_for_ready: false,
        },
        providers: { mem: { kind: 'memory', images: ['tiny', 'windows-2022'] } },
        pools: [
          { name: 'win', labels: ['windows'], os: 'windows', image: 'windows-2022' },
          {
            name: 'winzip',
            labels: ['windows-zip'],
            os: 'windows',
            image: 'windows-2022',
            runner: WINDOWS_ZIP,
          },
          { name: 'linux', labels: ['linux'] },
        ],
      }),
    );
    const config = loadConfig({ file, env: {}, dotenv: false }).config;
    service = await HatcheryService.start({
      config,
      log: silentLogger(),
      providers: Providers.of({ mem: provider }, { win: 'mem', winzip: 'mem', linux: 'mem' }),
    });
  });
  after(async () => {
    await service?.stop();
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  let runId = 0;
  async function create(label: string): Promise<{ status: number; json: Record<string, unknown> }> {
    const body = JSON.stringify({
      action: 'create',
      repository: REPO,
      run_id: ++runId,
      run_attempt: 1,
      labels: [label],
    });
    const res = await fetch(`${service.url}/hooks/control`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-hatchery-signature-256': sign('sha256', secret, body),
      },
      body,
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }
  async function destroy(id: number, label: string): Promise<void> {
    const body = JSON.stringify({
      action: 'destroy',
      repository: REPO,
      run_id: id,
      run_attempt: 1,
      labels: [label],
    });
    const res = await fetch(`${service.url}/hooks/control`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-hatchery-signature-256': sign('sha256', secret, body),
      },
      body,
    });
    assert.equal(res.status, 202, await res.text());
  }
  async function waitState(name: string, states: string[]): Promise<string> {
    for (let i = 0; ; i++) {
      const vm = await service.store.getVm(name);
      if (vm && states.includes(vm.state)) return vm.state;
      assert.ok(i < 600, `${name} is ${vm?.state}, not ${states.join(' or ')}`);
      await service.ctx.notifier.waitForChange(name, 100);
    }
  }
  /** A VM created for `label`, once its create step has run: its name and what it received. */
  async function createdVm(label: string) {
    const r = await create(label);
    assert.equal(r.status, 202, JSON.stringify(r.json));
    const name = (r.json.vms as { name: string }[])[0]!.name;
    await waitState(name, ['booting']);
    const spec = provider.backend.get(name)!.spec;
    return { name, runId, spec };
  }

  it('hands its VMs windows.ps1 and a config the script reads: the JIT config, the HTTP channel, no Linux runner', async () => {
    const { name, runId, spec } = await createdVm('windows');
    assert.equal(spec.bootstrap, readFileSync(path.join(repo, 'bootstrap/windows.ps1'), 'utf8'));
    assert.equal(spec.image, 'windows-2022');
    assert.deepEqual(Object.keys(spec.guestConfig).sort(), [
      'HATCHERY_CHANNEL',
      'HATCHERY_CHANNEL_TOKEN',
      'HATCHERY_JITCONFIG',
    ]);
    // As a provider delivers it (the VM's name added), read as windows.ps1 reads it.
    const delivered = { HATCHERY_VM: name, ...spec.guestConfig };
    assert.deepEqual(win.parseConfig(renderGuestConfig(delivered)), delivered);
    const cfg = spec.guestConfig;
    assert.match(cfg.HATCHERY_JITCONFIG!, win.pattern('JitPattern'));
    assert.equal(cfg.HATCHERY_CHANNEL, `${service.url}${GUEST_MESSAGES_PATH}`);
    assert.ok(cfg.HATCHERY_CHANNEL_TOKEN!.startsWith(`${name}.`));
    const registration = fake.runners(REPO).find((r) => r.name === name);
    assert.ok(registration, 'the runner was registered with GitHub for this VM');
    await destroy(runId, 'windows');
    await waitState(name, ['destroyed']);
  });

  it("gives a pool's own runner download to its Windows VMs, and Linux VMs linux.sh on the native channel", async () => {
    const zip = await createdVm('windows-zip');
    assert.equal(zip.spec.guestConfig.HATCHERY_RUNNER_URL, WINDOWS_ZIP.url);
    assert.equal(zip.spec.guestConfig.HATCHERY_RUNNER_SHA256, WINDOWS_ZIP.sha256);
    assert.ok(zip.spec.guestConfig.HATCHERY_CHANNEL);
    const linux = await createdVm('linux');
    assert.equal(linux.spec.bootstrap, readFileSync(path.join(repo, 'bootstrap/linux.sh'), 'utf8'));
    assert.equal(linux.spec.guestConfig.HATCHERY_RUNNER_URL, LINUX_RUNNER.url);
    assert.equal(linux.spec.guestConfig.HATCHERY_CHANNEL, undefined, 'the provider has its own channel');
    await destroy(zip.runId, 'windows-zip');
    await destroy(linux.runId, 'linux');
    await waitState(zip.name, ['destroyed']);
    await waitState(linux.name, ['destroyed']);
  });

  it("serves SpinW's legacy request for linux and windows: one VM in each pool", async () => {
    const legacy = async (ghcontrol: string) => {
      const body = JSON.stringify({
        data: {
          ghcontrol,
          servers: 'linux, windows',
          PAT: opensslEncrypt(ghToken, LEGACY_PASSWORD),
          ID: '777_1',
        },
        repository: REPO,
      });
      const res = await fetch(`${service.url}/`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-hub-signature-256': sign('sha256', LEGACY_SECRET, body),
        },
        body,
      });
      return {
        status: res.status,
        json: (await res.json()) as { success: string; info: string; labels?: string[] },
      };
    };
    const r = await legacy('create');
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.success, 'true', r.json.info);
    const vms = (await service.store.listVms()).filter((v) => v.repository === REPO && v.runId === '777');
    assert.deepEqual(vms.map((v) => v.pool).sort(), ['linux', 'win']);
    const win = vms.find((v) => v.pool === 'win')!;
    await waitState(win.name, ['booting']);
    assert.equal(
      provider.backend.get(win.name)!.spec.bootstrap,
      readFileSync(path.join(repo, 'bootstrap/windows.ps1'), 'utf8'),
    );
    assert.ok(
      r.json.labels?.includes(win.runnerLabels[1]!),
      `${JSON.stringify(r.json.labels)} names the Windows runner`,
    );
    const d = await legacy('destroy');
    assert.equal(d.json.success, 'true', d.json.info);
    for (const v of vms) await waitState(v.name, ['destroyed']);
  });

  it('keeps the clear 400 for a label no pool serves', async () => {
    const r = await create('macos');
    assert.equal(r.status, 400);
    assert.match(
      String(r.json.message),
      /no pool serves label "macos" \(labels served: windows, windows-zip, linux\)/,
    );
  });

  it("takes the messages windows.ps1 sends, in order, with the VM's token, and answers sync and shutdown", async () => {
    const { name, runId: id, spec } = await createdVm('windows');
    const cfg = spec.guestConfig;
    const post = async (line: string, token = cfg.HATCHERY_CHANNEL_TOKEN!) => {
      // As Send-ChannelLine: POST, bearer token, the line as UTF-8 text, no newline.
      const res = await fetch(cfg.HATCHERY_CHANNEL!, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain; charset=utf-8' },
        body: Buffer.from(line, 'utf8'),
      });
      return { status: res.status, lines: (await res.text()).split('\n').filter(Boolean) };
    };
    const other = await createdVm('windows');

    assert.deepEqual(await post(win.eventLine(1, 'booted')), { status: 200, lines: [] });
    // Another VM's secret under this VM's name, or a made-up one: refused, nothing applied.
    const otherSecret = other.spec.guestConfig.HATCHERY_CHANNEL_TOKEN!.split('.')[1]!;
    assert.equal((await post(win.eventLine(2, 'registered'), `${name}.${otherSecret}`)).status, 401);
    assert.equal((await post(win.eventLine(2, 'registered'), `${name}.${'A'.repeat(43)}`)).status, 401);
    assert.equal((await service.store.getVm(name))!.state, 'booting');
    // The runner's own output, through the script's patterns.
    const [registered, started] = win.runnerEvents([
      '2026-12-02 10:00:00Z: Listening for Jobs',
      '2026-12-02 10:00:05Z: Running job: test (windows-latest)',
    ]);
    assert.deepEqual(await post(win.eventLine(2, registered!)), { status: 200, lines: [] });
    assert.equal(await waitState(name, ['idle']), 'idle');
    // A replay (a poll re-posts the latest event) changes nothing; a gap is answered `sync`.
    assert.deepEqual(await post(win.eventLine(2, registered!)), { status: 200, lines: [] });
    assert.deepEqual(await post(win.eventLine(4, 'stopping')), { status: 200, lines: ['sync'] });
    const [event, job] = started!.split(/ (.*)/);
    assert.deepEqual(await post(win.eventLine(3, event!, job!)), { status: 200, lines: [] });
    assert.equal(await waitState(name, ['busy']), 'busy');

    // The workflow's destroy step: the next poll is told to shut down.
    let release!: () => void;
    held = new Promise((r) => (release = r));
    await destroy(id, 'windows');
    await waitState(name, ['destroying']);
    assert.deepEqual(await post(win.eventLine(3, event!, job!)), { status: 200, lines: ['shutdown'] });
    // Invoke-Teardown: stopping, runner-exited <code>, then Complete-Bootstrap's poweroff.
    for (const [seq, n, detail] of [
      [4, 'stopping', ''],
      [5, 'runner-exited', '1'],
      [6, 'poweroff', ''],
    ] as const) {
      const r = await post(win.eventLine(seq, n, detail));
      assert.equal(r.status, 200);
    }
    release();
    assert.equal(await waitState(name, ['destroyed']), 'destroyed');
    assert.equal((await post(win.eventLine(7, 'poweroff'))).status, 410, 'a dead VM token');
    const events = (await service.store.listEvents((await service.store.getVm(name))!.id)).map(
      (e) => e.event,
    );
    assert.deepEqual(events.slice(0, 6), FULL_LIFECYCLE.slice(0, 6)); // requested … job_started
    assert.ok(events.includes('destroy_requested') && events.at(-1) === 'destroy_done', events.join(' '));
    assert.ok(!fake.runners(REPO).some((r) => r.name === name), 'its registration was removed');

    await destroy(other.runId, 'windows');
    await waitState(other.name, ['destroyed']);
  });

  it('leaves nothing behind', async () => {
    assert.deepEqual(await provider.list(), []);
    assert.deepEqual(await service.store.listRegistrations({ live: true }), []);
    assert.deepEqual(fake.runners(REPO), []);
  });
});

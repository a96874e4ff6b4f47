// `hatchery demo` — the quick start. Runs one whole three-job workflow on the embedded defaults:
// SQLite, the QEMU provider, the tiny guest, and the GitHub stand-in the tests use
// (test/fakes/github). Shows each step as it happens, then proves nothing was left behind.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { stringify } from 'smol-toml';
import { loadConfig } from '../config/load.ts';
import { sign } from '../crypto/hmac.ts';
import { createLogger } from '../log.ts';
import { isTerminal } from '../core/lifecycle.ts';
import { Providers } from '../providers/build.ts';
import { HatcheryService } from '../service.ts';

const t0 = Date.now();
const say = (msg: string): void => {
  process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}\n`);
};

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'run a full create → runner online → job → destroy workflow on a real VM, against the GitHub stand-in',
    )
    .option('--dir <dir>', 'working directory for the demo (store, VM files)', 'var/demo')
    .option('--keep', 'keep the demo directory afterwards')
    .action(async (opts: { dir: string; keep?: boolean }) => {
      process.exitCode = (await runDemo(path.resolve(opts.dir), Boolean(opts.keep))) ? 0 : 1;
    });
}

async function runDemo(dir: string, keep: boolean): Promise<boolean> {
  const { FakeGitHub } = await import('../../test/fakes/github/server.ts');
  if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const images = path.resolve('var/images'); // shared with `serve`: built once, reused
  const controlSecret = randomBytes(16).toString('hex');
  const apiToken = randomBytes(16).toString('hex');
  const repository = 'octo-org/demo';

  const token = `ghp_${randomBytes(18).toString('hex')}`;
  // A production install (npm ci --omit=dev) has no validator: the demo still runs, and says so.
  const fake = await FakeGitHub.start({
    guestBaseUrl: 'http://10.0.2.100',
    tokens: [token],
    validation: 'if-installed',
  });
  say(
    fake.unchecked === undefined
      ? "started the GitHub stand-in (validates every call against GitHub's OpenAPI description)"
      : `started the GitHub stand-in, without validation: ${fake.unchecked}`,
  );
  const fakePort = new URL(fake.url).port;
  // The operator's view: a hatchery.toml like the README's, on the embedded defaults (QEMU, the
  // tiny guest), whose guests reach the stand-in (and the runner download) at 10.0.2.100:80 only.
  const configFile = path.join(dir, 'hatchery.toml');
  writeFileSync(
    configFile,
    stringify({
      server: { port: 0 },
      store: { path: path.join(dir, 'hatchery.db') },
      control: { secret: controlSecret },
      api: { token: apiToken },
      github: { api_url: fake.url, token },
      runner: { url: `http://10.0.2.100${fake.runnerTarball.urlPath}`, sha256: fake.runnerTarball.sha256 },
      log: { level: process.env.HATCHERY_LOG_LEVEL ?? 'warn' },
      providers: { qemu: { kind: 'qemu', state_dir: path.join(dir, 'vms'), images_dir: images } },
      pools: [
        {
          name: 'linux',
          labels: ['linux'],
          forwards: [{ guest: '10.0.2.100:80', host: `127.0.0.1:${fakePort}` }],
        },
      ],
    }),
  );
  const { config } = loadConfig({ file: configFile, env: {}, dotenv: false });
  const providers = Providers.build(config, createLogger({ level: config.log.level }));

  say('the tiny guest (built from Debian packages on the first run, then cached by content hash):');
  await providers.forPool('linux').prepare?.('tiny', (msg) => say(`  ${msg}`));
  say('starting Hatchery');
  const service = await HatcheryService.start({
    config,
    providers,
    log: createLogger({ level: config.log.level }),
  });
  const provider = providers.forPool('linux');
  let ok = false;
  try {
    const runId = String(Date.now());
    const post = async (action: 'create' | 'destroy') => {
      const body = JSON.stringify({ action, repository, run_id: runId, run_attempt: 1, labels: ['linux'] });
      const started = performance.now();
      const res = await fetch(`${service.url}/hooks/control`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-hatchery-signature-256': sign('sha256', controlSecret, body),
        },
        body,
      });
      const json = (await res.json()) as { vms: { name: string; state: string; runner_labels: string[] }[] };
      return { status: res.status, ms: performance.now() - started, json };
    };

    say(`job 1 "create": POST /hooks/control {action: create, labels: [linux]} (HMAC-signed)`);
    const created = await post('create');
    const vm = created.json.vms[0]!;
    say(`  → ${created.status} in ${created.ms.toFixed(1)} ms: VM ${vm.name}, state ${vm.state}`);
    say(`  the test job will run on: runs-on: [self-hosted, ${vm.name}]`);

    say('  waiting for the runner: GET /api/v1/vms/{name}?wait=ready (showing each transition)');
    const printer = watchTransitions(service, vm.name);
    const ready = await fetch(`${service.url}/api/v1/vms/${vm.name}?wait=ready&timeout=300`, {
      headers: { authorization: `Bearer ${apiToken}` },
    });
    const readyJson = (await ready.json()) as { state: string; failure: string | null };
    if (ready.status !== 200)
      throw new Error(`VM not ready: ${ready.status} ${readyJson.state} ${readyJson.failure ?? ''}`);
    say(`  → runner online (${readyJson.state})`);

    say(`job 2 "test": the stand-in GitHub queues a job for [self-hosted, ${vm.name}]`);
    const job = fake.queueJob({
      repository,
      labels: ['self-hosted', vm.name],
      name: 'unit-tests',
      script: 'echo "hello from $(hostname)"; uname -sr; grep -m1 "model name" /proc/cpuinfo',
    });
    const done = await fake.waitForJob(job.id, { timeoutMs: 120_000 });
    say(`  → job ${done.conclusion} on runner ${done.runnerName}; its output:`);
    for (const line of (done.output ?? '').trim().split('\n')) say(`      | ${line}`);

    say('job 3 "destroy" (if: always()): POST /hooks/control {action: destroy}');
    const destroyed = await post('destroy');
    say(`  → ${destroyed.status} in ${destroyed.ms.toFixed(1)} ms`);
    const end = await waitForEnd(service, vm.name, 60_000);
    printer.stop();
    say(`  → VM ${end}`);

    say('checking that nothing is left behind');
    const leftovers = {
      vms: (await provider.list()).map((v) => v.name),
      runners: fake.runners(repository).map((r) => r.name),
    };
    say(`  provider VMs: ${leftovers.vms.length}, runner registrations: ${leftovers.runners.length}`);
    const events = await service.store.listEvents((await service.store.getVm(vm.name))!.id);
    say("the VM's audit trail (hatchery vm show):");
    for (const e of events)
      say(`  ${e.fromState.padEnd(12)} → ${e.toState.padEnd(12)} ${e.event.padEnd(18)} ${e.note}`);
    // Taken, not left for close(): the demo reports them itself and fails on them.
    const seen = fake.takeViolations();
    const violations = seen.length;
    if (violations)
      say(`GitHub stand-in saw ${violations} request(s) that do not match GitHub's API: ${seen.join('; ')}`);
    ok =
      end === 'destroyed' &&
      done.conclusion === 'success' &&
      !leftovers.vms.length &&
      !leftovers.runners.length &&
      !violations;
    say(ok ? 'demo passed: one fresh VM served one job and is gone.' : 'demo FAILED (see above)');
  } catch (e) {
    say(`demo FAILED: ${(e as Error).message}`);
  } finally {
    for (const v of await provider.list()) await provider.destroy(v.name).catch(() => undefined);
    await service.stop();
    await fake.close();
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
  return ok;
}

function watchTransitions(service: HatcheryService, name: string): { stop(): void } {
  let seen = 0;
  let stopped = false;
  void (async () => {
    const vm = await service.store.getVm(name);
    while (!stopped && vm) {
      const events = await service.store.listEvents(vm.id);
      for (const e of events.slice(seen)) say(`    ${e.toState.padEnd(12)} ${e.note}`);
      seen = events.length;
      await service.ctx.notifier.waitForChange(name, 500);
    }
  })();
  return { stop: () => (stopped = true) };
}

async function waitForEnd(service: HatcheryService, name: string, ms: number): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const vm = await service.store.getVm(name);
    if (!vm || isTerminal(vm.state) || Date.now() > until) return vm?.state ?? 'missing';
    await service.ctx.notifier.waitForChange(name, 500);
  }
}

// `hatchery demo` — the quick start. Runs one whole three-job workflow on the embedded defaults:
// SQLite, the QEMU provider, the tiny guest, and the GitHub stand-in the tests use
// (test/fakes/github). Shows each step as it happens, then proves nothing was left behind.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import { sign } from '../crypto/hmac.ts';
import { createLogger } from '../log.ts';
import { buildTinyImage } from '../images/tiny.ts';
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

  say("starting the GitHub stand-in (validates every call against GitHub's OpenAPI description)");
  const token = `ghp_${randomBytes(18).toString('hex')}`;
  const fake = await FakeGitHub.start({ guestBaseUrl: 'http://10.0.2.100', tokens: [token] });
  const fakePort = new URL(fake.url).port;
  const { config } = loadConfig({
    env: {
      HATCHERY_SERVER_PORT: '0',
      HATCHERY_STORE_PATH: path.join(dir, 'hatchery.db'),
      HATCHERY_QEMU_STATE_DIR: path.join(dir, 'vms'),
      HATCHERY_QEMU_IMAGES_DIR: images,
      HATCHERY_CONTROL_SECRET: controlSecret,
      HATCHERY_API_TOKEN: apiToken,
      HATCHERY_GITHUB_API_URL: fake.url,
      HATCHERY_GITHUB_TOKEN: token,
      HATCHERY_RUNNER_URL: `http://10.0.2.100${fake.runnerTarball.urlPath}`,
      HATCHERY_RUNNER_SHA256: fake.runnerTarball.sha256,
      HATCHERY_LOG_LEVEL: process.env.HATCHERY_LOG_LEVEL ?? 'warn',
    },
    dotenv: false,
  });
  // The guest reaches the stand-in (and the runner download) at 10.0.2.100:80 only.
  config.pools[0]!.forwards = [{ guest: '10.0.2.100:80', host: `127.0.0.1:${fakePort}` }];

  say('the tiny guest (built from Debian packages on the first run, then cached by content hash):');
  const image = await buildTinyImage({ imagesDir: images, onProgress: (msg) => say(`  ${msg}`) });
  say(`  ${image.dir}`);
  say('starting Hatchery');
  const service = await HatcheryService.start({ config, log: createLogger({ level: config.log.level }) });
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
      vms: (await service.provider.list()).map((v) => v.name),
      vmDirs: readdirSync(config.qemu.state_dir).filter((d) => d.startsWith('hatchery-')),
      runners: fake.runners(repository).map((r) => r.name),
    };
    say(
      `  provider VMs: ${leftovers.vms.length}, VM directories: ${leftovers.vmDirs.length}, runner registrations: ${leftovers.runners.length}`,
    );
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
      !leftovers.vmDirs.length &&
      !leftovers.runners.length &&
      !violations;
    say(ok ? 'demo passed: one fresh VM served one job and is gone.' : 'demo FAILED (see above)');
  } catch (e) {
    say(`demo FAILED: ${(e as Error).message}`);
  } finally {
    for (const v of await service.provider.list())
      await service.provider.destroy(v.name).catch(() => undefined);
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
    if (!vm || vm.state === 'destroyed' || vm.state === 'failed' || Date.now() > until)
      return vm?.state ?? 'missing';
    await service.ctx.notifier.waitForChange(name, 500);
  }
}

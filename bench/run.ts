// `npm run bench [-- boot|ack|limits|startup|control-plane|webhooks|jit-burst|warm|images|providers|openstack|openstack-burst]`: measures Hatchery against
// baselines taken in the same run and prints ratios (this machine's speed drifts 2–3× between
// batches: absolute times alone mislead). BENCH_ROUNDS (default 5), BENCH_CONCURRENCY (default
// 200), BENCH_SLOW (slow connections, default 3000) and BENCH_IDLE_S (startup: idle seconds
// before reading RSS, default 10) tune the runs. `images` (the Debian runner image against the
// tiny guest) is not part of the default run: it needs root and, the first time, an image build;
// nor is `openstack` (a real OpenStack from scripts/openstack.sh: root, ~1.5 min to start), nor
// `providers` (qemu and vagrant against their raw paths, BENCH_ROUNDS default 3: it starts a
// private libvirtd and boots Vagrant VMs, 30–60 s each), nor `openstack-burst` (BENCH_VMS, default
// 100, create webhooks at once on one replica with BENCH_WORKERS workers, default the config's 4:
// Hatchery's CPU per VM against the OpenStack services'; 15–30 min on this machine). `webhooks`: BENCH_HOOKS signed workflow_job
// deliveries (default 2000) vs bare Express. `jit-burst`: BENCH_JIT_JOBS queued jobs (default 200)
// with the stand-in granting BENCH_JIT_PER_MINUTE JIT configs a minute (default 170; bucket
// BENCH_JIT_BURST, default 3; refusals BENCH_JIT_STATUS 403 or 429): ~1.5 min at the defaults.
// `control-plane`: BENCH_LIFECYCLES per burst (default 200) after BENCH_WARMUP_BURSTS bursts of
// warm-up (default 3); BENCH_NODE_ARGS adds node flags to the measured service (e.g. to try a V8
// flag against bin/hatchery.js's). ~3.5 min.
import { benchAck, reportAck } from './ack.ts';
import { benchBoot, reportBoot } from './boot.ts';
import { benchControlPlane, reportControlPlane } from './control-plane.ts';
import { benchImages, reportImages } from './images.ts';
import { benchOpenStack, reportOpenStack } from './openstack.ts';
import { benchOpenStackBurst, reportOpenStackBurst } from './openstack-burst.ts';
import { benchProviders, reportProviders } from './providers.ts';
import { benchBodyLimit, benchSlowConnections, reportBodyLimit, reportSlowConnections } from './limits.ts';
import { benchStartup, reportStartup } from './startup.ts';
import { benchJitBurst, benchWebhookIngest, reportJitBurst, reportWebhookIngest } from './webhooks.ts';
import { benchWarm, reportWarm } from './warm.ts';

const which = process.argv[2] ?? 'all';
const SCENARIOS = [
  'boot',
  'ack',
  'limits',
  'startup',
  'control-plane',
  'webhooks',
  'jit-burst',
  'warm',
  'images',
  'providers',
  'openstack',
  'openstack-burst',
];
if (which !== 'all' && !SCENARIOS.includes(which)) {
  process.stderr.write(`usage: npm run bench [-- ${SCENARIOS.join('|')}]\n`);
  process.exit(2);
}
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 200);
const slow = Number(process.env.BENCH_SLOW ?? 3000);
const idleSeconds = Number(process.env.BENCH_IDLE_S ?? 10);
const ackRounds = Math.max(1, Math.min(rounds, 5));
const out: string[] = [];
const run = (name: string) => which === 'all' || which === name;
if (run('boot')) out.push(reportBoot(await benchBoot(rounds)));
if (run('ack')) out.push(reportAck(await benchAck(concurrency, ackRounds)));
if (run('limits')) {
  out.push(reportSlowConnections(await benchSlowConnections(slow, concurrency, ackRounds)));
  out.push(reportBodyLimit(await benchBodyLimit(rounds)));
}
if (run('control-plane')) {
  out.push(
    reportControlPlane(
      await benchControlPlane({
        lifecycles: Number(process.env.BENCH_LIFECYCLES ?? 200),
        warmupBursts: Number(process.env.BENCH_WARMUP_BURSTS ?? 3),
        acks: Number(process.env.BENCH_ACKS ?? 2000),
        reconcileVms: 10_000,
        rssVms: 1000,
        settleS: 30,
      }),
    ),
  );
}
if (run('webhooks'))
  out.push(reportWebhookIngest(await benchWebhookIngest(Number(process.env.BENCH_HOOKS ?? 2000))));
if (run('jit-burst')) {
  const status = Number(process.env.BENCH_JIT_STATUS ?? 403);
  out.push(
    reportJitBurst(
      await benchJitBurst({
        jobs: Number(process.env.BENCH_JIT_JOBS ?? 200),
        perMinute: Number(process.env.BENCH_JIT_PER_MINUTE ?? 170),
        burst: Number(process.env.BENCH_JIT_BURST ?? 3),
        status: status === 429 ? 429 : 403,
      }),
    ),
  );
}
if (run('startup')) out.push(reportStartup(await benchStartup(rounds, idleSeconds)));
if (run('warm')) out.push(reportWarm(await benchWarm(rounds)));
if (which === 'images') out.push(reportImages(await benchImages(rounds)));
if (which === 'openstack') out.push(reportOpenStack(await benchOpenStack(rounds)));
if (which === 'openstack-burst')
  out.push(
    reportOpenStackBurst(
      await benchOpenStackBurst(Number(process.env.BENCH_VMS ?? 100), Number(process.env.BENCH_WORKERS ?? 4)),
    ),
  );
if (which === 'providers')
  out.push(reportProviders(await benchProviders(Number(process.env.BENCH_ROUNDS ?? 3))));
process.stdout.write(`${out.join('\n\n')}\n`);

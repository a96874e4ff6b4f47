// `npm run bench [-- boot|ack|images]`: measures Hatchery against baselines taken in the same run
// and prints ratios (this machine's speed drifts 2–3× between batches: absolute times alone
// mislead). BENCH_ROUNDS (default 5) and BENCH_CONCURRENCY (default 200) tune the runs. `images`
// (the Debian runner image against the tiny guest) is not part of the default run: it needs root
// and, the first time, a ~5 min image build.
import { benchAck, reportAck } from './ack.ts';
import { benchBoot, reportBoot } from './boot.ts';
import { benchImages, reportImages } from './images.ts';

const which = process.argv[2] ?? 'all';
if (!['all', 'boot', 'ack', 'images'].includes(which)) {
  process.stderr.write(`usage: npm run bench [-- boot|ack|images]\n`);
  process.exit(2);
}
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 200);
const out: string[] = [];
if (which === 'all' || which === 'boot') out.push(reportBoot(await benchBoot(rounds)));
if (which === 'all' || which === 'ack') {
  out.push(reportAck(await benchAck(concurrency, Math.max(1, Math.min(rounds, 5)))));
}
if (which === 'images') out.push(reportImages(await benchImages(rounds)));
process.stdout.write(`${out.join('\n\n')}\n`);

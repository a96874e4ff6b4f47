// `npm run bench [-- boot|ack]`: measures Hatchery against baselines taken in the same run and
// prints ratios (this machine's speed drifts 2–3× between batches: absolute times alone mislead).
// BENCH_ROUNDS (default 5) and BENCH_CONCURRENCY (default 200) tune the runs.
import { benchAck, reportAck } from './ack.ts';
import { benchBoot, reportBoot } from './boot.ts';

const which = process.argv[2] ?? 'all';
if (!['all', 'boot', 'ack'].includes(which)) {
  process.stderr.write(`usage: npm run bench [-- boot|ack]\n`);
  process.exit(2);
}
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 200);
const out: string[] = [];
if (which !== 'ack') out.push(reportBoot(await benchBoot(rounds)));
if (which !== 'boot') out.push(reportAck(await benchAck(concurrency, Math.max(1, Math.min(rounds, 5)))));
process.stdout.write(`${out.join('\n\n')}\n`);

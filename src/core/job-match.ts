// Which pool serves a GitHub job, from its `runs-on` labels alone: pure. GitHub hands a job to
// any runner whose labels include all of the job's, compared case-insensitively, and every
// self-hosted runner carries `self-hosted`; so a pool serves a job when the job's labels are a
// subset of the pool's labels plus `self-hosted`. Pool labels are unique across pools (config),
// so at most one pool serves a job that names one of them. A job naming only `self-hosted` could
// go to any pool: it is not served (which pool would be a guess), and the reason says so.
import type { PoolConfig } from '../config/schema.ts';

export const SELF_HOSTED = 'self-hosted';

export type PoolMatch = { pool: PoolConfig; runnerLabels: string[] } | { pool: null; why: string };

export function poolForJob(pools: readonly PoolConfig[], labels: readonly string[]): PoolMatch {
  const wanted = [...new Set(labels.map((l) => l.toLowerCase()))].filter((l) => l !== SELF_HOSTED);
  if (wanted.length === 0) {
    return {
      pool: null,
      why: `runs-on names no pool label (${JSON.stringify(labels)}): every pool would match; add one of ${pools
        .flatMap((p) => p.labels)
        .join(', ')}`,
    };
  }
  for (const pool of pools) {
    const have = new Set(pool.labels.map((l) => l.toLowerCase()));
    // The runner registers with the job's labels (GitHub adds `self-hosted` itself).
    if (wanted.every((l) => have.has(l))) return { pool, runnerLabels: wanted };
  }
  return { pool: null, why: `no pool serves all of ${JSON.stringify(labels)}` };
}

// Small statistics for benchmarks: the machine is noisy, so results are medians and percentiles,
// and every figure that matters is a ratio against a baseline measured in the same run.

/** The p-th percentile (0–100) by nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export const median = (values: readonly number[]): number => percentile(values, 50);

export const fmtMs = (ms: number): string =>
  ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;

export const fmtRatio = (r: number): string => `${r.toFixed(2)}×`;

/** Progress on stderr, results on stdout: `npm run bench > results.txt` keeps only results. */
export const progress = (msg: string): void => {
  process.stderr.write(`  ${msg}\n`);
};

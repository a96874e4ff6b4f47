// A VM request row as intake would insert it, for tests that seed a store directly.
import type { NewVm } from '../../src/store/store.ts';

export function newVm(n: number, extra: Partial<NewVm> = {}): NewVm {
  const repository = extra.repository ?? 'o/r';
  const name = extra.name ?? `hatchery-linux-${n}-1-abcdef`;
  return {
    name,
    identity: `control:${repository}:${n}:1:linux`,
    pool: 'linux',
    provider: 'qemu',
    source: 'control',
    repository,
    runId: String(n),
    runAttempt: 1,
    label: 'linux',
    runnerLabels: ['linux', name],
    credential: null,
    initialDeadline: 60,
    ...extra,
  };
}

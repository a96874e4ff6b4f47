// Which pool serves a GitHub job: its labels ⊆ the pool's labels ∪ {self-hosted}, compared
// case-insensitively as GitHub compares them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configSchema } from '../../src/config/schema.ts';
import { poolForJob } from '../../src/core/job-match.ts';

const { pools } = configSchema.parse({
  pools: [
    { name: 'linux', labels: ['linux', 'X64', 'big'] },
    { name: 'gpu', labels: ['gpu'] },
  ],
});

describe('poolForJob', () => {
  const served: [string[], string, string[]][] = [
    [['self-hosted', 'linux'], 'linux', ['linux']],
    [['linux'], 'linux', ['linux']],
    [['Self-Hosted', 'LINUX', 'x64'], 'linux', ['linux', 'x64']],
    [['linux', 'big', 'linux'], 'linux', ['linux', 'big']],
    [['GPU'], 'gpu', ['gpu']],
  ];
  for (const [labels, pool, runner] of served) {
    it(`${JSON.stringify(labels)} → ${pool}, runner labels ${JSON.stringify(runner)}`, () => {
      const m = poolForJob(pools, labels);
      assert.equal(m.pool?.name, pool);
      assert.ok(m.pool);
      assert.deepEqual(m.runnerLabels, runner);
    });
  }
  const refused: [string[], RegExp][] = [
    [['self-hosted'], /names no pool label/],
    [[], /names no pool label/],
    [['linux', 'gpu'], /no pool serves all of/],
    [['ubuntu-latest'], /no pool serves all of/],
    [['self-hosted', 'linux', 'arm64'], /no pool serves all of/],
  ];
  for (const [labels, why] of refused) {
    it(`${JSON.stringify(labels)} → not served`, () => {
      const m = poolForJob(pools, labels);
      assert.equal(m.pool, null);
      assert.ok(!m.pool);
      assert.match(m.why, why);
    });
  }
});

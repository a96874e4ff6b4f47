// src/github/rate-gate.ts: every caller waits for one shared time after GitHub refuses a call,
// a single probe goes first when it has passed, a refusal naming no time backs off exponentially
// from `backoffMs`, and a wait ends with the step's signal or after `maxWaitMs`.
// rateLimitOf (src/github/runners.ts) reads GitHub's refusals as its docs describe them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RateGate, type Refusal } from '../../src/github/rate-gate.ts';
import { rateLimitOf } from '../../src/github/runners.ts';

class Refused extends Error {
  constructor(readonly waitMs: number | null) {
    super('You have exceeded a secondary rate limit');
  }
}
const refusal = (e: unknown): Refusal | undefined =>
  e instanceof Refused ? { waitMs: e.waitMs } : undefined;

/**
 * A stand-in for GitHub that refuses its first `refusals` calls, naming `waitMs`. `inFlight`:
 * for each call, how many were in flight when it was sent (itself included).
 */
function limitedServer(refusals: number, waitMs: number | null) {
  const log: string[] = [];
  const inFlight: number[] = [];
  let left = refusals;
  let now = 0;
  return {
    log,
    inFlight,
    call: (who: string) => async () => {
      inFlight.push(++now);
      try {
        await new Promise((r) => setImmediate(r));
        if (left > 0) {
          left--;
          log.push(`${who}: refused`);
          throw new Refused(waitMs);
        }
        log.push(`${who}: ok`);
        return who;
      } finally {
        now--;
      }
    },
  };
}

describe('RateGate', () => {
  it('a refused call is sent again after the time GitHub named, and succeeds', async () => {
    const strikes: { waitMs: number; named: boolean; strikes: number }[] = [];
    const gate = new RateGate({
      onRefused: ({ waitMs, named, strikes: s }) => strikes.push({ waitMs, named, strikes: s }),
    });
    const gh = limitedServer(2, 5);
    assert.equal(await gate.run('mint', gh.call('a'), refusal), 'a');
    assert.deepEqual(gh.log, ['a: refused', 'a: refused', 'a: ok']);
    assert.deepEqual(strikes, [
      { waitMs: 5, named: true, strikes: 1 },
      { waitMs: 5, named: true, strikes: 2 },
    ]);
  });

  it('callers refused together wait for one time, then a single probe goes first', async () => {
    const gate = new RateGate();
    // 5 calls at once, all refused; then 2 more refusals while the limit holds: sent one at a time.
    const gh = limitedServer(7, 5);
    const who = ['a', 'b', 'c', 'd', 'e'];
    const results = await Promise.all(who.map((w) => gate.run('mint', gh.call(w), refusal)));
    assert.deepEqual(results, who);
    assert.deepEqual(
      gh.log.slice(0, 5),
      who.map((w) => `${w}: refused`),
    );
    // While the limit holds, one call (a probe) at a time; once one succeeded, the rest at once.
    assert.deepEqual(
      gh.log.slice(5, 8).map((l) => l.split(': ')[1]),
      ['refused', 'refused', 'ok'],
    );
    assert.deepEqual(gh.inFlight.slice(5, 8), [1, 1, 1], `in flight: ${gh.inFlight.join(', ')}`);
    assert.equal(gh.log.length, 12, gh.log.join(', '));
    assert.ok(gh.log.slice(8).every((l) => l.endsWith(': ok')));
    assert.ok(Math.max(...gh.inFlight.slice(8)) > 1, 'the rest were sent together');
  });

  it('a refusal naming no time backs off exponentially from backoffMs, up to maxBackoffMs', async () => {
    const waits: number[] = [];
    const gate = new RateGate({
      backoffMs: 2,
      maxBackoffMs: 8,
      onRefused: ({ waitMs }) => waits.push(waitMs),
    });
    const gh = limitedServer(5, null);
    assert.equal(await gate.run('mint', gh.call('a'), refusal), 'a');
    assert.deepEqual(waits, [2, 4, 8, 8, 8]);
  });

  it('a success resets the backoff', async () => {
    const waits: number[] = [];
    const gate = new RateGate({ backoffMs: 2, onRefused: ({ waitMs }) => waits.push(waitMs) });
    await gate.run('mint', limitedServer(2, null).call('a'), refusal);
    await gate.run('mint', limitedServer(1, null).call('b'), refusal);
    assert.deepEqual(waits, [2, 4, 2]);
  });

  it('other errors are thrown at once, and the gate stays open', async () => {
    const gate = new RateGate();
    let calls = 0;
    await assert.rejects(
      gate.run(
        'mint',
        async () => {
          calls++;
          throw new Error('Not Found');
        },
        refusal,
      ),
      /Not Found/,
    );
    assert.equal(calls, 1);
    assert.equal(gate.openAt, 0);
  });

  it('a call that would wait longer than maxWaitMs fails with its last refusal', async () => {
    const gate = new RateGate({ maxWaitMs: 50 });
    const gh = limitedServer(100, 30);
    await assert.rejects(gate.run('mint', gh.call('a'), refusal), (e) => e instanceof Refused);
    assert.deepEqual(gh.log, ['a: refused', 'a: refused']);
  });

  it("the step's signal ends a wait", async () => {
    const gate = new RateGate();
    const gh = limitedServer(1, 60_000);
    const abort = new AbortController();
    const run = gate.run('mint', gh.call('a'), refusal, abort.signal);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(gh.log, ['a: refused']);
    abort.abort(new Error('lease lost'));
    await assert.rejects(run, /lease lost/);
    assert.deepEqual(gh.log, ['a: refused']);
  });
});

describe('rateLimitOf: how GitHub says it refused a call for a rate limit', () => {
  const now = 1_700_000_000_000;
  it('retry-after: that many seconds', () => {
    assert.deepEqual(
      rateLimitOf(403, { 'retry-after': '60' }, 'You have exceeded a secondary rate limit.', now),
      {
        waitMs: 60_000,
      },
    );
    assert.deepEqual(rateLimitOf(429, { 'retry-after': 3 }, '', now), { waitMs: 3000 });
  });
  it('x-ratelimit-remaining 0: until x-ratelimit-reset', () => {
    const headers = { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(now / 1000 + 42) };
    assert.deepEqual(rateLimitOf(403, headers, 'API rate limit exceeded', now), { waitMs: 42_000 });
  });
  it('a secondary rate limit, or any 429, naming no time: back off', () => {
    const headers = { 'x-ratelimit-remaining': '4000', 'x-ratelimit-reset': String(now / 1000 + 3000) };
    assert.deepEqual(
      rateLimitOf(403, headers, 'You have exceeded a secondary rate limit. Please wait', now),
      {
        waitMs: null,
      },
    );
    assert.deepEqual(rateLimitOf(429, {}, 'Too Many Requests', now), { waitMs: null });
  });
  it('not a rate limit: other 403s (permissions) and other statuses', () => {
    assert.equal(rateLimitOf(403, {}, 'Resource not accessible by integration', now), undefined);
    assert.equal(
      rateLimitOf(403, { 'x-ratelimit-remaining': '12' }, 'Must have admin rights', now),
      undefined,
    );
    assert.equal(rateLimitOf(404, { 'retry-after': '5' }, 'Not Found', now), undefined);
    assert.equal(rateLimitOf(null, {}, '', now), undefined);
  });
});

// The contract every provider must pass (terraform-aws-github-runner's idea, but run against the
// real provider, not a mock): create/destroy/list semantics, idempotency by name, ownership,
// clean failure, and nothing left behind. A provider's test file calls defineProviderContract.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { ProviderError, type Provider, type VmInfo, type VmSpec } from '../../src/providers/provider.ts';

/** A moment inside create() at which the contract aborts it. */
export interface AbortPoint {
  what: string;
  /** True once create() of the VM `name` has got this far (polled while create runs). */
  reached(name: string): Promise<boolean>;
  /**
   * Holds the VM's backend where it is (e.g. SIGSTOP of its processes), so that the create
   * cannot finish before the abort lands, however fast the machine; returns what lets it go on.
   */
  hold?(name: string): Promise<() => void>;
  /**
   * Holds the backend before create() starts, for a backend that must not be caught in the
   * middle of its own work on the VM (a delete would then wait for that work to go on): it stays
   * held until the abort has been checked; returns what lets it go on.
   */
  prepare?(name: string): Promise<() => void>;
}

export interface ContractSetup {
  /** A provider for this installation. */
  provider: Provider;
  /** A provider of another installation sharing the same backend. */
  foreign: Provider;
  /** A spec that boots; the bootstrap must keep the VM running until destroyed. */
  spec(name: string): VmSpec;
  /** An image name the provider cannot resolve. */
  badImage: string;
  /** Every OS-level trace of a VM (processes, files) the provider may leave; must be empty after destroy. */
  traces(name: string): Promise<string[]>;
  /** Moments inside create() to abort it at (in the order create reaches them). */
  abortPoints: AbortPoint[];
  cleanup(): Promise<void>;
}

/** For assert.rejects: a ProviderError whose message matches, with this retryable flag. */
function providerError(message: RegExp, retryable: boolean): (e: unknown) => true {
  return (e) => {
    assert.ok(e instanceof ProviderError, `not a ProviderError: ${(e as Error)?.stack ?? String(e)}`);
    assert.match(e.message, message);
    assert.equal(e.retryable, retryable, `retryable for ${JSON.stringify(e.message)}`);
    return true;
  };
}

const ATTEMPTS = 10;
/** How long an aborted create may take to clean up and return. */
const ABORT_TIMEOUT_MS = 30_000;

export function defineProviderContract(kind: string, setup: () => Promise<ContractSetup>): void {
  describe(`${kind} provider contract`, () => {
    let s: ContractSetup;
    const names: string[] = [];
    const name = (suffix: string): string => {
      const n = `hatchery-contract-${suffix}`;
      names.push(n);
      return n;
    };
    after(async () => {
      if (!s) return;
      for (const n of names) await s.provider.destroy(n).catch(() => undefined);
      for (const n of names) assert.deepEqual(await s.traces(n), [], `${n} left traces`);
      await s.cleanup();
    });

    before(async () => {
      s = await setup();
    });

    it('creates a running VM that list() returns with its tags', async () => {
      const n = name('a');
      const info = await s.provider.create(s.spec(n));
      assert.equal(info.name, n);
      assert.equal(info.status, 'running');
      const listed = (await s.provider.list()).find((v) => v.name === n);
      assert.equal(listed?.status, 'running');
      assert.equal(listed?.tags['hatchery.pool'], s.spec(n).tags['hatchery.pool']);
    });

    it('is idempotent by name: a second create returns the same VM', async () => {
      const n = names[0]!;
      const before = await s.traces(n);
      const again = await s.provider.create(s.spec(n));
      assert.equal(again.status, 'running');
      assert.deepEqual(await s.traces(n), before, 'no second VM was started');
      assert.equal((await s.provider.list()).filter((v) => v.name === n).length, 1);
    });

    it('get() finds the VM by name as list() shows it, and nothing else', async () => {
      const n = names[0]!;
      const got = await s.provider.get(n);
      assert.equal(got?.name, n);
      assert.equal(got?.status, 'running');
      assert.deepEqual(got?.tags, (await s.provider.list()).find((v) => v.name === n)?.tags);
      assert.equal(await s.provider.get('hatchery-contract-absent'), null);
      assert.equal(await s.foreign.get(n), null, "another installation's VM is not found");
      await assert.rejects(s.provider.get('../escape'), /invalid VM name/);
    });

    it("does not list or destroy another installation's VMs", async () => {
      const n = names[0]!;
      assert.equal(
        (await s.foreign.list()).some((v) => v.name === n),
        false,
      );
      await assert.rejects(s.foreign.destroy(n), providerError(/belongs to another installation/, false));
      assert.equal((await s.provider.list()).find((v) => v.name === n)?.status, 'running');
    });

    it('destroys a VM completely, and destroying it again succeeds', async () => {
      const n = names[0]!;
      await s.provider.destroy(n);
      assert.equal(
        (await s.provider.list()).some((v) => v.name === n),
        false,
      );
      assert.deepEqual(await s.traces(n), []);
      await s.provider.destroy(n);
      await s.provider.destroy(name('never-created'));
    });

    it('leaves nothing behind when create fails', async () => {
      const n = name('bad-image');
      await assert.rejects(
        s.provider.create({ ...s.spec(n), image: s.badImage }),
        // Whatever else the provider says, the message names the image at fault.
        providerError(new RegExp(`\\bimage ${s.badImage}\\b`), false),
      );
      assert.deepEqual(await s.traces(n), []);
      assert.equal(
        (await s.provider.list()).some((v) => v.name === n),
        false,
      );
    });

    it('refuses names outside the allow-list before touching anything', async () => {
      for (const bad of ['../escape', 'hatchery-a/../../b', 'hatchery-$(id)', 'HATCHERY-A', '']) {
        await assert.rejects(s.provider.create(s.spec(bad)), providerError(/^invalid VM name /, false));
        await assert.rejects(s.provider.destroy(bad), providerError(/^invalid VM name /, false));
      }
    });

    it('aborts a create asked to stop before it started, leaving nothing', async () => {
      const n = name('aborted');
      await assert.rejects(
        s.provider.create(s.spec(n), AbortSignal.abort()),
        providerError(new RegExp(`^create ${n}\\b.*\\baborted\\b`), true),
      );
      assert.deepEqual(await s.traces(n), []);
    });

    it('aborts a create in progress at each moment, and returns only once nothing is left', async (t) => {
      assert.ok(s.abortPoints.length > 0, 'the provider names the moments of its create');
      for (const [i, point] of s.abortPoints.entries()) {
        const n = name(`abort-${i}`);
        let caught = false;
        // The moment can be missed (create got past it between two polls): then try again.
        for (let attempt = 1; attempt <= ATTEMPTS && !caught; attempt++) {
          const ac = new AbortController();
          let outcome: { ok: true; info: VmInfo } | { ok: false; error: unknown } | undefined;
          let prepared = await point.prepare?.(n);
          let held: (() => void) | undefined;
          const letGo = (): void => {
            held?.();
            prepared?.();
            held = prepared = undefined;
          };
          try {
            const creating = s.provider.create(s.spec(n), ac.signal).then(
              (info) => (outcome = { ok: true, info }),
              (error: unknown) => (outcome = { ok: false, error }),
            );
            while (!outcome && !(await point.reached(n))) await nextTurn();
            held = outcome ? undefined : await point.hold?.(n);
            // Every callback that could settle the create has run: if it has not, it is in progress.
            await nextTurn();
            if (outcome) {
              letGo();
              await creating;
              if (!outcome.ok) throw outcome.error;
              await s.provider.destroy(n);
              continue;
            }
            ac.abort();
            caught = true;
            const timer = new Promise<'hung'>((r) => setTimeout(() => r('hung'), ABORT_TIMEOUT_MS).unref());
            assert.notEqual(
              await Promise.race([creating, timer]),
              'hung',
              `create did not return within ${ABORT_TIMEOUT_MS} ms of its abort ${point.what}`,
            );
            const settled = outcome as { ok: true; info: VmInfo } | { ok: false; error: unknown } | undefined;
            assert.equal(settled?.ok, false, `aborted ${point.what}, the create still returned a VM`);
            if (settled && !settled.ok)
              providerError(new RegExp(`^create ${n}\\b.*\\baborted\\b`), true)(settled.error);
            // Nothing left the moment create returns (the backend still held): no process on its
            // way out, no file.
            assert.deepEqual(await s.traces(n), [], `aborted ${point.what}`);
            assert.equal(
              (await s.provider.list()).some((v) => v.name === n),
              false,
            );
            t.diagnostic(`aborted ${point.what} (attempt ${attempt})`);
          } finally {
            letGo();
          }
        }
        assert.ok(caught, `create never stopped ${point.what} in ${ATTEMPTS} attempts`);
      }
    });
  });
}

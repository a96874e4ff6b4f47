// The contract every provider must pass (terraform-aws-github-runner's idea, but run against the
// real provider, not a mock): create/destroy/list semantics, idempotency by name, ownership,
// clean failure, and nothing left behind. A provider's test file calls defineProviderContract.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Provider, VmSpec } from '../../src/providers/provider.ts';

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
  cleanup(): Promise<void>;
}

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

    it('creates a running VM that list() returns with its tags', async () => {
      s = await setup();
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
      await assert.rejects(s.foreign.destroy(n), /another installation/);
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
      await assert.rejects(s.provider.create({ ...s.spec(n), image: s.badImage }));
      assert.deepEqual(await s.traces(n), []);
      assert.equal(
        (await s.provider.list()).some((v) => v.name === n),
        false,
      );
    });

    it('refuses names outside the allow-list before touching anything', async () => {
      for (const bad of ['../escape', 'hatchery-a/../../b', 'hatchery-$(id)', 'HATCHERY-A', '']) {
        await assert.rejects(s.provider.create(s.spec(bad)), /invalid VM name/);
        await assert.rejects(s.provider.destroy(bad), /invalid VM name/);
      }
    });

    it('aborts a create when asked, leaving nothing', async () => {
      const n = name('aborted');
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(s.provider.create(s.spec(n), ac.signal));
      assert.deepEqual(await s.traces(n), []);
    });
  });
}

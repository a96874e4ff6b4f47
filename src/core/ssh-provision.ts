// The provision step of a pool with `bootstrap = "ssh"`: create the VM with the VM's public key,
// then log in over SSH and start the bootstrap (src/remote/ does the SSH). It ends when the
// bootstrap has been started; the guest then reports over the HTTP channel like any other.
//
// Crash-resume: a step resumed on a VM that exists creates nothing, logs in again (the host key
// must be the one pinned on first use, or the provider's), and starts nothing if the guest's
// marker says the bootstrap was started. Only then are a channel token and a JIT config minted:
// a VM that already runs its bootstrap keeps the ones it has.
import { renderGuestConfig } from '../guest/config.ts';
import type { PoolConfig } from '../config/schema.ts';
import { ProviderError, type Provider, type VmInfo } from '../providers/provider.ts';
import { RemoteError, type RemoteOps } from '../remote/port.ts';
import type { VmRecord } from '../store/store.ts';
import type { CoreContext } from './context.ts';
import { timeoutsFor } from './context.ts';

/** Where the store keeps the host key fingerprint pinned on first use (providerData). */
export const PINNED_HOST_KEY = 'sshHostKey';

export interface SshProvisionDeps {
  /** The guest config entries that say where the runner comes from (guest/os.ts). */
  runner: Record<string, string>;
  /** The guest config entries of the HTTP channel, with a new token (its hash recorded). */
  httpChannel(): Promise<Record<string, string>>;
  /** A new one-shot runner config, and the note to add when a stale registration was replaced. */
  mintJit(): Promise<{ jit: string; note?: string }>;
}

function remoteOf(ctx: CoreContext): RemoteOps {
  if (!ctx.remote) throw new RemoteError('SSH is not available in this service', false);
  return ctx.remote;
}

/** Returns the notes for the `created` event. */
export async function provisionOverSsh(
  ctx: CoreContext,
  vm: VmRecord,
  pool: PoolConfig,
  provider: Provider,
  existing: VmInfo | null,
  deps: SshProvisionDeps,
  signal: AbortSignal,
): Promise<string[]> {
  const remote = remoteOf(ctx);
  if (!provider.sshBootstrap) {
    throw new ProviderError(
      `pool ${pool.name} has bootstrap = "ssh", which its provider (${provider.kind}) does not offer`,
      false,
    );
  }
  let info = existing;
  if (!info) {
    const authorizedKey = await remote.authorizedKey(vm.name);
    // A key pinned for an earlier VM of this name (a failed create) is not this VM's.
    await ctx.store.setProviderData(vm.name, { [PINNED_HOST_KEY]: null }, ctx.clock());
    signal.throwIfAborted();
    info = await provider.create(
      {
        name: vm.name,
        pool: vm.pool,
        image: pool.image,
        cpus: pool.cpus,
        memoryMiB: pool.memory,
        // Delivered over SSH below: the JIT config never passes through the provider.
        bootstrap: '',
        guestConfig: {},
        ssh: { authorizedKey },
        tags: {
          'hatchery.instance': ctx.instanceId,
          'hatchery.pool': vm.pool,
          'hatchery.repository': vm.repository,
        },
      },
      signal,
    );
    ctx.crashPoint?.('vm-created');
  }
  // An SSH-bootstrapped VM always reports over HTTP.
  await ctx.store.setProviderData(vm.name, { channel: { kind: 'http' } }, ctx.clock());
  if (!info.ssh) throw new ProviderError(`${provider.kind} reported no SSH address for ${vm.name}`, false);

  const pinned = existing ? vm.providerData[PINNED_HOST_KEY] : undefined;
  const expected = info.ssh.hostKey ?? (typeof pinned === 'string' ? pinned : undefined);
  const trust = info.ssh.hostKey
    ? 'as its provider expects'
    : expected
      ? 'as pinned at first use'
      : 'pinned now (first use)';
  // The guest boots meanwhile: wait for its sshd as long as a boot may take.
  const t = timeoutsFor(ctx, vm.pool);
  const deadline = Date.now() + Math.min(t.boot, t.provision) * 1000;
  const session = await remote.connect(
    vm.name,
    pool,
    info.ssh,
    {
      expected,
      onFirstUse: async (fingerprint) => {
        await ctx.store.setProviderData(vm.name, { [PINNED_HOST_KEY]: fingerprint }, ctx.clock());
        ctx.crashPoint?.('ssh-host-key-pinned');
      },
    },
    deadline,
    signal,
  );
  try {
    const login = `host key ${session.hostKey} ${trust}`;
    if (await session.started()) return [`the bootstrap was already started over SSH (${login})`];
    const channel = await deps.httpChannel();
    const { jit, note } = await deps.mintJit();
    signal.throwIfAborted();
    const config = renderGuestConfig({
      HATCHERY_VM: vm.name,
      // sshd answered: the network is up, as the image configured it.
      HATCHERY_NET: 'none',
      ...deps.runner,
      HATCHERY_JITCONFIG: jit,
      ...channel,
    });
    const started = await session.start({ script: ctx.bootstraps[pool.os], config });
    return [
      started
        ? `bootstrap started over SSH (${login})`
        : `the bootstrap was already started over SSH (${login})`,
      ...(note ? [note] : []),
    ];
  } finally {
    session.close();
  }
}

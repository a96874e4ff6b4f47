// The worker's steps, one function per lifecycle action (Ubicloud's named steps). Each returns
// the lifecycle event its outcome stands for; it never writes the VM's state itself.
import { GitHubError } from '../github/runners.ts';
import { ProviderError } from '../providers/provider.ts';
import type { VmRecord } from '../store/store.ts';
import { timeoutsFor, type CoreContext } from './context.ts';
import { GUEST_MESSAGES_PATH } from '../guest/protocol.ts';
import { runnerFor, runnerGuestConfig } from '../guest/os.ts';
import { mintChannelToken } from './channel-token.ts';
import type { LifecycleEvent } from './lifecycle.ts';
import type { PoolConfig } from '../config/schema.ts';
import { RemoteError } from '../remote/port.ts';
import { provisionOverSsh } from './ssh-provision.ts';

function poolOf(ctx: CoreContext, vm: VmRecord) {
  const pool = ctx.pools.find((p) => p.name === vm.pool);
  if (!pool) throw new ProviderError(`pool ${vm.pool} is no longer configured`, false);
  return pool;
}

/**
 * Runs the pool's `prepare` command if it has one, mints the VM's one-shot runner config, then
 * creates the VM with it (or, with `bootstrap = "ssh"`, creates it and starts the bootstrap over
 * SSH: ssh-provision.ts).
 */
export async function provision(
  ctx: CoreContext,
  vm: VmRecord,
  signal: AbortSignal,
): Promise<LifecycleEvent> {
  if (vm.destroyRequested) return { type: 'create_cancelled' };
  try {
    const pool = poolOf(ctx, vm);
    const provider = ctx.providerFor(vm);
    const overSsh = pool.bootstrap === 'ssh';
    // Crash-resume: a previous attempt may have created the VM before the service died.
    const existing = await provider.get(vm.name);
    const running = existing?.status === 'running' ? existing : null;
    if (running && !overSsh) {
      // An HTTP channel token was recorded before that create: the guest holds that one.
      const address = vm.channelTokenHash ? { kind: 'http' } : running.channel;
      if (address) await ctx.store.setProviderData(vm.name, { channel: address }, ctx.clock());
      ctx.log.info({ vm: vm.name }, 'adopted a VM created before a restart');
      return { type: 'created', note: 'adopted: the VM was created before the service restarted' };
    }
    const runner = runnerFor(pool, ctx.runnerDownload);
    if (!runner) throw new ProviderError('runner.url and runner.sha256 are not configured', false);
    const notes: string[] = [];
    // Before the VM starts (seed 000's board preparation); not again for a VM that exists.
    if (pool.prepare && !running) {
      if (!ctx.remote) throw new ProviderError('SSH is not available in this service', false);
      notes.push(await ctx.remote.prepare(pool, prepareTarget(vm), signal));
      signal.throwIfAborted();
    }
    if (overSsh) {
      notes.push(
        ...(await provisionOverSsh(
          ctx,
          vm,
          pool,
          provider,
          running,
          {
            runner: runnerGuestConfig(runner),
            httpChannel: () => httpChannel(ctx, vm, pool),
            mintJit: async () => {
              const { jit, replaced } = await mintJitConfig(ctx, vm, signal);
              return { jit, ...(replaced !== undefined ? { note: replacedNote(replaced) } : {}) };
            },
          },
          signal,
        )),
      );
      if (running) ctx.log.info({ vm: vm.name }, 'adopted a VM created before a restart');
      return created(
        running ? ['adopted: the VM was created before the service restarted', ...notes] : notes,
      );
    }
    // The HTTP guest channel: for providers without one of their own, when the pool asks, and
    // for Windows guests (windows.ps1 speaks no other). Its token is recorded (as a hash) before
    // the VM exists, so its first message is accepted.
    const http = pool.channel === 'http' || !provider.nativeChannel || pool.os === 'windows';
    const channel = http ? await httpChannel(ctx, vm, pool) : {};
    // A VM booted ahead (warm pool) gets its JIT config later, from the job that takes it (configure).
    const { jit, replaced } =
      vm.source === 'warm' ? { jit: null, replaced: undefined } : await mintJitConfig(ctx, vm, signal);
    signal.throwIfAborted();
    const info = await provider.create(
      {
        name: vm.name,
        pool: vm.pool,
        image: pool.image,
        cpus: pool.cpus,
        memoryMiB: pool.memory,
        bootstrap: ctx.bootstraps[pool.os],
        guestConfig: {
          ...runnerGuestConfig(runner),
          ...(jit !== null ? { HATCHERY_JITCONFIG: jit } : warmGuestConfig(ctx, vm)),
          ...channel,
        },
        tags: {
          'hatchery.instance': ctx.instanceId,
          'hatchery.pool': vm.pool,
          // A warm VM has no repository yet (and keeps none in its tags once taken).
          ...(vm.repository ? { 'hatchery.repository': vm.repository } : {}),
        },
      },
      signal,
    );
    ctx.crashPoint?.('vm-created');
    const address = http ? { kind: 'http' } : info.channel;
    if (address) await ctx.store.setProviderData(vm.name, { channel: address }, ctx.clock());
    if (replaced !== undefined) notes.push(replacedNote(replaced));
    return created(notes);
  } catch (e) {
    return { type: 'create_failed', error: (e as Error).message, retryable: isRetryable(e) };
  }
}

/**
 * A warm VM's guest waits for its JIT config a while longer than the service keeps it warm
 * (warm_max_age, then the boot timeout for the config to arrive): the service recycles it first,
 * and a guest whose service is gone for good powers itself off.
 */
function warmGuestConfig(ctx: CoreContext, vm: VmRecord): Record<string, string> {
  const t = timeoutsFor(ctx, vm.pool);
  return { HATCHERY_JIT_TIMEOUT: String(t.boot + t.warm + t.boot) };
}

/** How long a configure step waits for a guest on the HTTP channel to take its `jit` line. */
const DELIVER_MS = 30_000;

/**
 * A job took a warm VM: mints its one-shot runner config (with the job's labels, now in the
 * row) and sends it to the waiting guest as a `jit` line over its guest channel.
 */
export async function configure(
  ctx: CoreContext,
  vm: VmRecord,
  signal: AbortSignal,
): Promise<LifecycleEvent> {
  try {
    if (!ctx.hostLines) throw new ProviderError('no host → guest channel in this service', false);
    // After a crash mid-step the name may be registered already: mintJitConfig replaces it.
    const { jit } = await mintJitConfig(ctx, vm, signal);
    signal.throwIfAborted();
    await ctx.hostLines.deliver(vm, `jit ${jit}`, DELIVER_MS, signal);
    return { type: 'jit_delivered' };
  } catch (e) {
    return { type: 'configure_failed', error: (e as Error).message, retryable: isRetryable(e) };
  }
}

function created(notes: string[]): LifecycleEvent {
  return { type: 'created', ...(notes.length ? { note: notes.join('; ') } : {}) };
}

function replacedNote(replaced: number): string {
  return (
    `its runner was registered again: the name was taken by registration ${replaced}, ` +
    'minted by an earlier attempt (cut short by a crash, or whose VM could not be created); that one was removed'
  );
}

function prepareTarget(vm: VmRecord) {
  return { vm: vm.name, pool: vm.pool, repository: vm.repository, label: vm.label };
}

/** A new HTTP channel token for the VM (its hash recorded) and the guest config that carries it. */
async function httpChannel(
  ctx: CoreContext,
  vm: VmRecord,
  pool: PoolConfig,
): Promise<Record<string, string>> {
  const { token, hash } = mintChannelToken(vm.name);
  await ctx.store.setChannelToken(vm.name, hash, ctx.clock());
  return {
    HATCHERY_CHANNEL: `${ctx.channelUrl(pool).replace(/\/+$/, '')}${GUEST_MESSAGES_PATH}`,
    HATCHERY_CHANNEL_TOKEN: token,
  };
}

function isRetryable(e: unknown): boolean {
  if (e instanceof ProviderError || e instanceof GitHubError || e instanceof RemoteError) return e.retryable;
  return true;
}

/**
 * `replaced`: the id of a registration of the same name, minted by an earlier attempt (one a
 * crash cut short, or one whose provider create failed and is being retried), now removed.
 * GitHub's rate limits are waited out inside generateJitConfig (the VM stays provisioning, no
 * attempt is spent); `signal` (the step's lease) ends such a wait.
 */
async function mintJitConfig(
  ctx: CoreContext,
  vm: VmRecord,
  signal: AbortSignal,
): Promise<{ jit: string; replaced?: number }> {
  const runners = ctx.runnersFor(vm);
  const request = { name: vm.name, labels: vm.runnerLabels, runnerGroupId: ctx.runnerGroupId };
  let jit;
  let replaced: number | undefined;
  try {
    jit = await runners.generateJitConfig(vm.repository, request, signal);
  } catch (e) {
    if (!(e instanceof GitHubError) || e.status !== 409) throw e;
    // The name is taken: a registration from an earlier attempt (interrupted by a crash, or
    // whose VM could not be created). Ours by name (VM names are unique), so remove it and mint
    // again: a JIT config is single-use and never stored, so the old one cannot be reused.
    const stale = (await runners.listRunners(vm.repository)).find((r) => r.name === vm.name);
    if (stale) {
      await runners.deleteRunner(vm.repository, stale.id);
      replaced = stale.id;
      ctx.log.warn(
        { vm: vm.name, runnerId: stale.id },
        'removed a registration minted by an earlier attempt',
      );
    }
    jit = await runners.generateJitConfig(vm.repository, request, signal);
  }
  ctx.crashPoint?.('jit-minted');
  await ctx.store.recordRegistration({
    vmId: vm.id,
    repository: vm.repository,
    runnerId: jit.runnerId,
    runnerName: jit.runnerName,
    createdAt: ctx.clock(),
  });
  return { jit: jit.encodedJitConfig, ...(replaced !== undefined ? { replaced } : {}) };
}

/** Removes the VM, then every runner registration it still has. Idempotent. */
export async function destroy(ctx: CoreContext, vm: VmRecord, signal: AbortSignal): Promise<LifecycleEvent> {
  try {
    await ctx.providerFor(vm).destroy(vm.name, signal);
    // The VM's SSH key pair (bootstrap = "ssh") goes with it. Other pools' VMs have none (a key
    // left by a pool changed since is removed at start-up with those of every ended VM).
    if (ctx.pools.find((p) => p.name === vm.pool)?.bootstrap === 'ssh') await ctx.remote?.forget(vm.name);
    ctx.crashPoint?.('vm-destroyed');
    const regs = await ctx.store.listRegistrations({ vmId: vm.id, live: true });
    if (regs.length > 0) {
      const runners = ctx.runnersFor(vm);
      for (const reg of regs) {
        // Ephemeral runners are removed by GitHub after their job: 'absent' is the usual answer.
        const r = await runners.deleteRunner(reg.repository, reg.runnerId);
        await ctx.store.markRegistrationRemoved(vm.id, reg.runnerId, ctx.clock());
        ctx.log.info({ vm: vm.name, runnerId: reg.runnerId, result: r }, 'runner registration removed');
      }
    }
    return { type: 'destroy_done' };
  } catch (e) {
    return { type: 'destroy_failed', error: (e as Error).message };
  }
}

// Named sweeps that compare the store with the providers and GitHub, and repair differences
// by emitting lifecycle events (garm's sweeps, servo's observe-then-decide). Sweeps mark;
// workers act — except for zombies, which no row owns, so the sweep destroys them itself after
// seeing them on two consecutive passes.
import { hostname } from 'node:os';
import type { Provider } from '../providers/provider.ts';
import type { Store, VmSummary } from '../store/store.ts';
import { applyEvent } from './apply.ts';
import type { CoreContext } from './context.ts';
import type { GuestLinks } from './guest-links.ts';
import { isTerminal, LINKED_STATES } from './lifecycle.ts';
import { VM_PREFIX } from './naming.ts';

export interface SweepReport {
  adopted: number;
  vanished: string[];
  zombiesDestroyed: string[];
  registrationsRemoved: number;
  /** Runner registrations of ended VMs found on GitHub (not in our records) and removed. */
  ghostsRemoved: number;
  errors: string[];
}

/** …for the repositories whose VMs changed within this window. */
const GHOST_WINDOW_MS = 24 * 3600 * 1000;

/**
 * How long a delivery id is remembered (duplicates recognised): a delivery may be redelivered
 * for 3 days on github.com and 7 on GitHub Enterprise Server; the redelivery sweep looks back an
 * hour, a control client retries within minutes. Older ids are forgotten, a bounded batch per
 * pass: the table no longer grows with every webhook ever received.
 */
export const DELIVERY_RETENTION_MS = 14 * 24 * 3600 * 1000;
const DELIVERY_PRUNE_BATCH = 5000;

export class Reconciler {
  private readonly suspects = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<SweepReport> | null = null;
  private passes = 0;

  constructor(
    private readonly ctx: CoreContext,
    private readonly links: GuestLinks,
    private readonly intervalMs: number,
    /** The ghost sweep costs a list call per repository: run it on every Nth pass only. */
    private readonly ghostSweepEvery = 20,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.sweep(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /**
   * Start-up: free leases of our own crashed predecessors, erase credentials nothing needs any
   * more (rows written before that rule, or a crash between two writes), adopt what still runs.
   */
  async recover(): Promise<SweepReport> {
    await releaseDeadLeases(this.ctx.store, this.ctx.instanceId);
    const erased = await this.ctx.store.eraseSpentCredentials();
    if (erased) this.ctx.log.info({ erased }, 'erased the credentials of ended VMs');
    return this.sweep();
  }

  /** One pass of every sweep; concurrent calls share the pass in progress. */
  sweep(): Promise<SweepReport> {
    this.running ??= this.sweepOnce().finally(() => (this.running = null));
    return this.running;
  }

  private async sweepOnce(): Promise<SweepReport> {
    const report: SweepReport = {
      adopted: 0,
      vanished: [],
      zombiesDestroyed: [],
      registrationsRemoved: 0,
      ghostsRemoved: 0,
      errors: [],
    };
    // Every running VM, however many: a capped list once left most of 10,000 unchecked.
    const live = await this.ctx.store.summaries(LINKED_STATES);
    await this.sweepProviders(live, report);
    // Adoption: a running VM whose guest talks over a socket gets its link (after a restart,
    // every one of them); read whole only those that need one.
    const vanished = new Set(report.vanished);
    const unlinked = live
      .filter((vm) => vm.channelKind === 'unix' && !vanished.has(vm.name) && !this.links.has(vm.name))
      .map((vm) => vm.name);
    for (const vm of await this.ctx.store.getVms(unlinked)) {
      await this.links.ensure(vm);
      if (this.links.has(vm.name)) report.adopted++;
    }
    await this.sweepRegistrations(report);
    // The first pass after a start (crash recovery) always looks for ghosts.
    if (this.passes++ % this.ghostSweepEvery === 0) await this.sweepGhosts(report);
    const forgotten = await this.ctx.store.pruneDeliveries(
      this.ctx.clock() - DELIVERY_RETENTION_MS,
      DELIVERY_PRUNE_BATCH,
    );
    if (forgotten > 0) this.ctx.log.debug({ forgotten }, 'forgot delivery ids past their retention');
    // Credentials erased since the last pass leave no copy in the database files.
    await this.ctx.store.scrub();
    if (report.errors.length) this.ctx.log.warn({ errors: report.errors }, 'reconcile: some sweeps failed');
    return report;
  }

  /** VMs the store runs but the provider lost → vm_exited; VMs no row owns → zombies. */
  private async sweepProviders(live: VmSummary[], report: SweepReport): Promise<void> {
    const expected = new Map<Provider, VmSummary[]>();
    for (const vm of live) {
      let provider: Provider;
      try {
        provider = this.ctx.providerFor(vm);
      } catch (e) {
        report.errors.push(`${vm.name}: ${(e as Error).message}`);
        continue;
      }
      const list = expected.get(provider) ?? [];
      list.push(vm);
      expected.set(provider, list);
    }
    const liveNames = new Set(live.map((vm) => vm.name));
    const seenNow = new Set<string>();
    for (const provider of this.ctx.providers()) {
      let observed;
      try {
        observed = await provider.list();
      } catch (e) {
        report.errors.push(`${provider.kind}.list: ${(e as Error).message}`);
        continue;
      }
      const byName = new Map(observed.map((v) => [v.name, v]));
      for (const vm of expected.get(provider) ?? []) {
        if (byName.get(vm.name)?.status === 'running') continue;
        report.vanished.push(vm.name);
        await applyEvent(this.ctx, vm.name, { type: 'vm_exited' });
      }
      // VMs at the provider that no running row explains: a row in another live state
      // (provisioning, destroying) owns them; any other is a zombie. Looked up in one batch.
      const unexplained = observed.filter((v) => !liveNames.has(v.name)).map((v) => v.name);
      const rows = new Map((await this.ctx.store.getVms(unexplained)).map((r) => [r.name, r]));
      for (const name of unexplained) {
        const row = rows.get(name);
        if (row && !isTerminal(row.state)) continue;
        seenNow.add(name);
        if (!this.suspects.has(name)) continue; // first sighting: could be a create in flight
        try {
          await provider.destroy(name);
          report.zombiesDestroyed.push(name);
          this.ctx.log.warn({ vm: name, row: row?.state ?? 'none' }, 'zombie VM destroyed');
        } catch (e) {
          report.errors.push(`destroy zombie ${name}: ${(e as Error).message}`);
        }
      }
    }
    this.suspects.clear();
    for (const n of seenNow) if (!report.zombiesDestroyed.includes(n)) this.suspects.add(n);
  }

  /** Registrations of ended VMs: left over by a destroy step that could not reach GitHub. */
  private async sweepRegistrations(report: SweepReport): Promise<void> {
    for (const reg of await this.ctx.store.listRegistrations({ live: true, ofEndedVms: true })) {
      const vm = await this.ctx.store.getVmById(reg.vmId);
      if (!vm) continue;
      try {
        await this.ctx.runnersFor(vm).deleteRunner(reg.repository, reg.runnerId);
        await this.ctx.store.markRegistrationRemoved(reg.vmId, reg.runnerId, this.ctx.clock());
        report.registrationsRemoved++;
      } catch (e) {
        report.errors.push(`remove runner ${reg.runnerId} of ${vm.name}: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Runners on GitHub that belong to VMs of ours that have ended, but that our records do not
   * know (minted by a process that crashed before recording the registration). Only runners
   * named after a VM in our store are touched: another installation's runners, even in the same
   * repository, are never ours to remove. Busy runners are left alone (GitHub refuses anyway).
   */
  private async sweepGhosts(report: SweepReport): Promise<void> {
    const since = this.ctx.clock() - GHOST_WINDOW_MS;
    for (const { repository, credential } of await this.ctx.store.recentRepositories(since)) {
      let runners;
      try {
        runners = this.ctx.runnersFor({ repository, credential });
      } catch (e) {
        // No credential left for it (its legacy VMs ended and theirs were erased): nothing to use.
        this.ctx.log.debug({ repository, err: (e as Error).message }, 'ghost sweep: no credential');
        continue;
      }
      try {
        const candidates = (await runners.listRunners(repository)).filter(
          (r) => r.name.startsWith(VM_PREFIX) && !r.busy,
        );
        const rows = new Map(
          (await this.ctx.store.getVms(candidates.map((r) => r.name))).map((v) => [v.name, v]),
        );
        for (const r of candidates) {
          const vm = rows.get(r.name);
          if (!vm || vm.repository !== repository || !isTerminal(vm.state)) continue;
          await runners.deleteRunner(repository, r.id);
          await this.ctx.store.markRegistrationRemoved(vm.id, r.id, this.ctx.clock());
          report.ghostsRemoved++;
          this.ctx.log.warn({ runner: r.name, repository }, 'ghost runner registration removed');
        }
      } catch (e) {
        report.errors.push(`ghost sweep of ${repository}: ${(e as Error).message}`);
      }
    }
  }
}

/** Leases held by a process of this installation on this host that no longer exists. */
export async function releaseDeadLeases(store: Store, instanceId: string): Promise<number> {
  const prefix = `${instanceId}/${hostname()}/`;
  let released = 0;
  for (const { name, owner } of await store.leasesHeldBy(prefix)) {
    const pid = Number(owner.slice(prefix.length));
    if (pid === process.pid || isAlive(pid)) continue;
    if (await store.releaseLease(name, owner)) released++;
  }
  return released;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

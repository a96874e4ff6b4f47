// What the core needs from the outside world, handed in once by the composition root
// (src/service.ts). The core reads no environment and opens no files of its own.
import type { PoolConfig } from '../config/schema.ts';
import type { GuestOs, RunnerDownload } from '../guest/os.ts';
import type { RunnersApi } from '../github/runners.ts';
import type { Logger } from '../log.ts';
import type { Provider } from '../providers/provider.ts';
import type { RemoteOps } from '../remote/port.ts';
import type { Store, VmRecord } from '../store/store.ts';
import type { AdmissionConfig } from './admission.ts';
import type { Timeouts } from './lifecycle.ts';
import type { RunOrigin } from './trust.ts';
import type { CrashPoint } from './crash-points.ts';
import type { Notifier } from './notifier.ts';
import type { HostLines } from './host-lines.ts';

export interface CoreContext {
  store: Store;
  /** A VM's provider instance: the one that created it, else (older rows) its pool's. */
  providerFor(vm: Pick<VmRecord, 'pool' | 'provider'>): Provider;
  /** Every provider instance (for reconciliation). */
  providers(): Provider[];
  /** GitHub runner API with the credential this VM's request came with (throws if none). */
  runnersFor(vm: Pick<VmRecord, 'credential' | 'repository'>): RunnersApi;
  pools: PoolConfig[];
  maxVms: number;
  /** `limits.max_provisioning` and `limits.tenants` (admission.ts); absent: oldest first, no cap. */
  admission?: AdmissionConfig;
  /** A workflow run's event and head repository, read from GitHub (the App); absent: no App. */
  runOrigin?: (repository: string, runId: number, installationId: number | null) => Promise<RunOrigin>;
  /** Runner tarball as the guest downloads it (`[runner]`; a pool may name its own). */
  runnerDownload: RunnerDownload | null;
  runnerGroupId: number;
  /** The bootstrap script handed to each VM, by its pool's `os`. */
  bootstraps: Record<GuestOs, string>;
  /** SSH: pools' `prepare` commands and `bootstrap = "ssh"` (src/remote/). */
  remote?: RemoteOps;
  /** The service's base URL as a pool's guests reach it (HTTP guest channel). */
  channelUrl(pool: PoolConfig): string;
  instanceId: string;
  clock: () => number;
  log: Logger;
  /**
   * Named moments where a crash is most dangerous (tests only: crash-points.ts); a no-op in
   * service. The test makes the process stop itself there, then kills it with -9.
   */
  crashPoint?: (point: CrashPoint) => void;
  notifier: Notifier;
  /** Host → guest lines (a warm VM's `jit`): set by the composition root once links exist. */
  hostLines?: HostLines;
}

export class UnknownLabelError extends Error {
  override name = 'UnknownLabelError';
}

/** The pool may not serve the request's repository (its trust rules: trust.ts). */
export class PoolRefusedError extends Error {
  override name = 'PoolRefusedError';
}

export function poolForLabel(ctx: Pick<CoreContext, 'pools'>, label: string): PoolConfig {
  const pool = ctx.pools.find((p) => p.labels.some((l) => l.toLowerCase() === label.toLowerCase()));
  if (!pool) {
    const known = ctx.pools.flatMap((p) => p.labels).join(', ');
    throw new UnknownLabelError(`no pool serves label "${label}" (labels served: ${known})`);
  }
  return pool;
}

export function timeoutsFor(ctx: Pick<CoreContext, 'pools'>, poolName: string): Timeouts {
  const pool = ctx.pools.find((p) => p.name === poolName);
  // A VM whose pool was removed from the config still needs timeouts to wind down.
  if (!pool) return { queue: 3600, provision: 300, boot: 300, idle: 900, job: 21600, drain: 60, warm: 3600 };
  return { ...pool.timeouts, warm: pool.warm_max_age };
}

// The store is the only source of truth. This interface is what core/ needs; SQLite implements
// it today (sqlite.ts) and a PostgreSQL store will implement the same methods. Every method is
// async so that a networked database fits; every state change happens inside one transaction
// that re-checks the transition table (lifecycle.TRANSITIONS).
import type { Action, StateChange, VmState } from '../model/states.ts';

/** `warm`: booted ahead for its pool (min_idle), bound to no request yet; a request that takes it rebinds it. */
export type VmSource = 'control' | 'legacy' | 'api' | 'github' | 'warm';

/** How far a GitHub job got, as its workflow_job webhooks said (only ever moves forward). */
export type JobStatus = 'waiting' | 'queued' | 'in_progress' | 'completed';

/** A GitHub job seen in a workflow_job webhook (GitHub App autoscaling). */
export interface WorkflowJob {
  jobId: number;
  repository: string;
  runId: number;
  runAttempt: number;
  installationId: number | null;
  /** Its `runs-on` labels, as GitHub sent them. */
  labels: string[];
  /** The pool serving it; null: none does (`note` says why). */
  pool: string | null;
  status: JobStatus;
  /** The VM bound to it: created for it, or the one whose runner took it. */
  vm: string | null;
  /** The runner GitHub gave it (in_progress, completed). */
  runnerName: string | null;
  /** VMs created for it so far (a job whose VM was taken by another job gets another). */
  vmsCreated: number;
  note: string;
  createdAt: number;
  updatedAt: number;
}

export interface VmRecord {
  id: number;
  name: string;
  /** Live-unique identity (e.g. `control:owner/repo:run:attempt:label`). */
  identity: string;
  pool: string;
  /** The provider instance that creates it (null: a row from before providers had names). */
  provider: string | null;
  source: VmSource;
  repository: string;
  runId: string | null;
  runAttempt: number | null;
  /** The pool label that was requested (e.g. `linux`). */
  label: string;
  /** Labels the runner registers with; includes the VM's unique label. */
  runnerLabels: string[];
  state: VmState;
  destroyRequested: boolean;
  failure: string | null;
  attempts: number;
  destroyAttempts: number;
  action: Action | null;
  /** Epoch ms: run the action no sooner than this. */
  notBefore: number;
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
  /** Epoch ms: a `timeout` event is due at this time. */
  deadlineAt: number | null;
  /**
   * Legacy requests: the PAT as received (openssl-encrypted), decrypted only when used; erased
   * once the VM has ended and none of its runner registrations is left to remove.
   */
  credential: string | null;
  /** Highest guest channel message sequence number applied. */
  guestSeq: number;
  /** sha256 (hex) of the VM's HTTP guest channel token; null: none (unix channel, or not yet). */
  channelTokenHash: string | null;
  /** Provider data the service needs later (e.g. the guest channel address). */
  providerData: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
}

export interface VmSummary {
  name: string;
  pool: string;
  provider: string | null;
  state: VmState;
  /** The kind of its guest channel address, if it has one (`unix`, `http`). */
  channelKind: string | null;
}

export interface VmEventRecord {
  id: number;
  vmId: number;
  at: number;
  event: string;
  fromState: VmState;
  toState: VmState;
  note: string;
}

export interface RunnerRegistration {
  vmId: number;
  repository: string;
  runnerId: number;
  runnerName: string;
  createdAt: number;
  removedAt: number | null;
}

export interface NewVm {
  name: string;
  identity: string;
  pool: string;
  /** The provider instance serving the pool now. */
  provider: string;
  source: VmSource;
  repository: string;
  runId: string | null;
  runAttempt: number | null;
  label: string;
  runnerLabels: string[];
  credential: string | null;
  /** Seconds until the initial state times out (lifecycle.deadlineFor); null: never. */
  initialDeadline: number | null;
}

/** The decision a pure function took for one VM: written with its audit event. */
export interface Transition {
  /** The lifecycle event that caused it (its type is the audit trail's `event`). */
  event: { type: string };
  decision: StateChange;
}

/**
 * Called inside the store's transaction with the current row; returns the transition to write,
 * or null to write nothing. Must be pure and synchronous (it may run under a database lock).
 */
export type Decide = (vm: VmRecord) => Transition | null;

export interface TransitionResult {
  vm: VmRecord | null;
  /** A transition was written (the event applied). */
  applied: boolean;
  /** The write was refused: the lease given is no longer held. */
  leaseLost: boolean;
  /** With a guest seq: taken as the next message, or refused as a replay or after a gap. */
  guest?: GuestOrder;
}

export type GuestOrder = 'next' | 'duplicate' | 'gap';

/** Where a guest message stands relative to the last one applied. */
export function guestOrder(seq: number, applied: number): GuestOrder {
  return seq <= applied ? 'duplicate' : seq === applied + 1 ? 'next' : 'gap';
}

export interface Lease {
  owner: string;
  expiresAt: number;
}

export interface VmFilter {
  states?: readonly VmState[];
  repository?: string;
  /** At most this many (default: every match: callers that need a bound page with `before`). */
  limit?: number;
  /** Only VMs with a smaller id (newest first: the previous page's last id is the next cursor). */
  before?: number;
}

/** Which delivery a request came with: recorded in the same transaction as its intent. */
export interface DeliveryRef {
  source: string;
  id: string;
}

export interface Store {
  readonly kind: string;
  close(): Promise<void>;

  /** Records a delivery id; false when it was seen before (a duplicate). */
  recordDelivery(source: string, id: string, now: number): Promise<boolean>;
  /** Whether a delivery id was recorded. */
  deliverySeen(source: string, id: string): Promise<boolean>;
  /**
   * Forgets delivery ids received before `before`, at most `limit` of them (a bounded write:
   * a first pass over a long history must not hold the database); how many were forgotten.
   */
  pruneDeliveries(before: number, limit: number): Promise<number>;

  getJob(jobId: number): Promise<WorkflowJob | null>;
  /** The job a VM is bound to, if any. */
  jobOfVm(vm: string): Promise<WorkflowJob | null>;
  /** Inserts or replaces jobs (by job id), all in one transaction. */
  saveJobs(jobs: WorkflowJob[]): Promise<void>;
  /** Jobs, newest first; only those in `statuses` if given. */
  listJobs(filter?: { statuses?: readonly JobStatus[]; limit?: number }): Promise<WorkflowJob[]>;

  /**
   * Inserts a VM unless a live VM (not destroyed/failed) with the same identity exists;
   * returns that one instead (`created: false`). The `pending` state is recorded as its first event.
   */
  insertVm(vm: NewVm, now: number): Promise<{ vm: VmRecord; created: boolean }>;
  /**
   * insertVm for each, and the request's delivery id, in one transaction: a request is recorded
   * whole or not at all. `duplicate`: the delivery id was seen before.
   */
  insertVms(
    vms: NewVm[],
    now: number,
    delivery?: DeliveryRef,
    /**
     * With it, a new VM whose pool has a warm VM (state `warm`, source `warm`) takes the oldest
     * instead of a new row: that row is rebound to the new VM's identity, source, repository, run,
     * labels (its own name as the unique label) and credential, with the transition this returns
     * (warm → configuring), in the same transaction. The result then carries the warm VM's name.
     */
    takeWarm?: Decide,
  ): Promise<{ results: { vm: VmRecord; created: boolean }[]; duplicate: boolean }>;
  /** Live VMs booted ahead and bound to no request (source `warm`, not destroying), oldest first. */
  warmVms(): Promise<VmRecord[]>;
  /** The newest VM with this identity, live or not. */
  findByIdentity(identity: string): Promise<VmRecord | null>;
  /** How many VMs (any state) have carried this identity: the next generation number. */
  countByIdentity(identity: string): Promise<number>;
  getVm(name: string): Promise<VmRecord | null>;
  /**
   * What a reconcile pass compares, for every VM in `states`: names, where they run and how
   * their guest talks — without the full rows (10,000 of them cost more to parse than to use).
   */
  summaries(states: readonly VmState[]): Promise<VmSummary[]>;
  /** The VMs with these names (absent names are simply missing from the answer). */
  getVms(names: readonly string[]): Promise<VmRecord[]>;
  /** Matching VMs, newest first; every match unless `limit` bounds it (pages: `before`). */
  listVms(filter?: VmFilter): Promise<VmRecord[]>;
  getVmById(id: number): Promise<VmRecord | null>;
  /** How many VMs are in one of `states`, per pool (capacity accounting, cheap). */
  activeByPool(states: readonly VmState[]): Promise<Record<string, number>>;
  /** The oldest pending VMs of each pool, at most `perPool[pool]` each, oldest first overall. */
  pendingHeads(perPool: Record<string, number>): Promise<{ id: number; name: string; pool: string }[]>;
  /** How many VMs in one of `states` per pool, repository and state (fair admission; few rows: active VMs are bounded). */
  activeUse(
    states: readonly VmState[],
  ): Promise<{ pool: string; repository: string; state: VmState; n: number }[]>;
  /**
   * The oldest pending VMs of each pool and tenant (a tenant is a repository's owner or the
   * repository, case-insensitively), at most `perPool[pool]` each, oldest first overall.
   */
  pendingHeadsByTenant(
    perPool: Record<string, number>,
    by: 'owner' | 'repository',
  ): Promise<{ id: number; name: string; pool: string; repository: string }[]>;
  listEvents(vmId: number): Promise<VmEventRecord[]>;
  /**
   * Repositories with a VM changed since `since`, each with the newest credential its VMs still
   * hold (null: none; the service's own token is then the only way to reach GitHub for it).
   */
  recentRepositories(since: number): Promise<{ repository: string; credential: string | null }[]>;

  /**
   * Applies `decide` to the VM inside one transaction and appends the audit event. With `lease`,
   * the write happens only if the VM is still leased to that owner (compare-and-set), and the
   * lease is released. Returns the VM after the write and whether a transition was written;
   * `leaseLost` when the lease did not match.
   */
  transition(
    name: string,
    decide: Decide,
    now: number,
    lease?: Lease,
    /**
     * The seq of the guest message that carried the event: only the next one (applied seq + 1)
     * is taken, and recorded in the same write whether the lifecycle applies the event or not.
     */
    guestSeq?: number,
  ): Promise<TransitionResult>;

  /** Records the hash of the VM's HTTP guest channel token (null: revoke). */
  setChannelToken(name: string, hash: string | null, now: number): Promise<void>;

  /** Merges provider data (e.g. the channel address) into the VM's record. */
  setProviderData(name: string, data: Record<string, unknown>, now: number): Promise<void>;

  /**
   * Leases up to `limit` VMs with a due action and no live lease: one conditional update
   * (expired leases are taken over: a crashed worker's step is resumed).
   */
  claim(owner: string, now: number, leaseMs: number, limit: number): Promise<VmRecord[]>;
  /** Extends a lease the owner still holds. */
  renew(name: string, lease: Lease, leaseMs: number, now: number): Promise<Lease | null>;

  /** Drops a lease held by `owner` (a crashed process of ours), so its step is resumed now. */
  releaseLease(name: string, owner: string): Promise<boolean>;
  /** VMs leased by an owner whose name starts with `prefix` (this host's processes). */
  leasesHeldBy(prefix: string): Promise<{ name: string; owner: string }[]>;

  /** VMs in a non-terminal state whose deadline has passed. */
  due(now: number): Promise<VmRecord[]>;

  recordRegistration(reg: Omit<RunnerRegistration, 'removedAt'>): Promise<void>;
  /** Marks it removed; a VM that has ended and has no other left loses its credential. */
  markRegistrationRemoved(vmId: number, runnerId: number, now: number): Promise<void>;
  listRegistrations(filter: {
    vmId?: number;
    live?: boolean;
    /** Only those of VMs that have ended (left over by a destroy that could not reach GitHub). */
    ofEndedVms?: boolean;
  }): Promise<RunnerRegistration[]>;
  /**
   * Erases the credentials of every VM that has ended with no registration left (start-up: rows
   * from before this rule, or from a crash between the two writes); returns how many.
   */
  eraseSpentCredentials(): Promise<number>;
  /**
   * Makes erased values unrecoverable from the files too (old page images in a write-ahead log);
   * cheap when nothing was erased since the last call.
   */
  scrub(): Promise<void>;

  /** Cheap liveness check for /healthz. */
  ping(): Promise<void>;
}

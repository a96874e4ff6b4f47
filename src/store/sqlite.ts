// SQLite store (better-sqlite3, WAL). Statements are synchronous; the async interface is for
// the PostgreSQL store to come. Several processes may open the same file (WAL + busy timeout):
// claims are single conditional UPDATEs, so two workers never lease the same VM.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import {
  INITIAL_STATE,
  isTerminal,
  LIVE_STATES,
  sqlList,
  TERMINAL_STATES,
  TRANSITIONS,
  type VmState,
} from '../model/states.ts';
import { migrations } from './migrations/sqlite.ts';
import type {
  Decide,
  DeliveryRef,
  JobStatus,
  Lease,
  NewVm,
  RunnerRegistration,
  Store,
  VmEventRecord,
  VmFilter,
  Transition,
  TransitionResult,
  VmRecord,
  VmSummary,
  WorkflowJob,
} from './store.ts';
import { guestOrder } from './store.ts';

type Row = Record<string, unknown>;

const TERMINAL = sqlList(TERMINAL_STATES);

/**
 * A bound row limit. Not `LIMIT ?`: SQLite plans for the value bound there and re-prepares the
 * statement whenever it changes (19 against 5 µs for the pending heads; the claim's UPDATE was
 * re-prepared on most wake-ups: seen in a profile). It does not look into an expression.
 */
const LIMIT_BOUND = 'LIMIT ? + 0';

function toVm(r: Row): VmRecord {
  return {
    id: r.id as number,
    name: r.name as string,
    identity: r.identity as string,
    pool: r.pool as string,
    provider: (r.provider as string | null) ?? null,
    source: r.source as VmRecord['source'],
    repository: r.repository as string,
    runId: (r.run_id as string | null) ?? null,
    runAttempt: (r.run_attempt as number | null) ?? null,
    label: r.label as string,
    runnerLabels: JSON.parse(r.runner_labels as string) as string[],
    state: r.state as VmState,
    destroyRequested: r.destroy_requested === 1,
    failure: (r.failure as string | null) ?? null,
    attempts: r.attempts as number,
    destroyAttempts: r.destroy_attempts as number,
    action: (r.action as VmRecord['action']) ?? null,
    notBefore: r.not_before as number,
    leaseOwner: (r.lease_owner as string | null) ?? null,
    leaseExpiresAt: (r.lease_expires_at as number | null) ?? null,
    deadlineAt: (r.deadline_at as number | null) ?? null,
    credential: (r.credential as string | null) ?? null,
    guestSeq: r.guest_seq as number,
    channelTokenHash: (r.channel_token_hash as string | null) ?? null,
    providerData: JSON.parse(r.provider_data as string) as Record<string, unknown>,
    createdAt: r.created_at as number,
    updatedAt: r.updated_at as number,
  };
}

/** The columns a transition may change (write()) and their fields; updated_at is always written. */
const WRITABLE = [
  ['state', 'state'],
  ['destroy_requested', 'destroyRequested'],
  ['failure', 'failure'],
  ['attempts', 'attempts'],
  ['destroy_attempts', 'destroyAttempts'],
  ['action', 'action'],
  ['not_before', 'notBefore'],
  ['deadline_at', 'deadlineAt'],
  ['lease_owner', 'leaseOwner'],
  ['lease_expires_at', 'leaseExpiresAt'],
  ['guest_seq', 'guestSeq'],
  ['credential', 'credential'],
] as const satisfies readonly (readonly [string, keyof VmRecord])[];

function jobFromRow(r: Row): WorkflowJob {
  return {
    jobId: r.job_id as number,
    repository: r.repository as string,
    runId: r.run_id as number,
    runAttempt: r.run_attempt as number,
    installationId: (r.installation_id as number | null) ?? null,
    labels: JSON.parse(r.labels as string) as string[],
    pool: (r.pool as string | null) ?? null,
    status: r.status as JobStatus,
    vm: (r.vm as string | null) ?? null,
    runnerName: (r.runner_name as string | null) ?? null,
    vmsCreated: r.vms_created as number,
    note: r.note as string,
    createdAt: r.created_at as number,
    updatedAt: r.updated_at as number,
  };
}

export class InvalidTransitionError extends Error {
  override name = 'InvalidTransitionError';
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  private readonly db: Database.Database;
  /** Prepared statements by SQL text: preparing costs more than running most of them. */
  private readonly statements = new Map<string, Database.Statement>();
  /** A secret was erased since the last scrub(). */
  private erased = false;

  constructor(readonly file: string) {
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = ON');
    // Deleted and overwritten values (erased credentials) are zeroed in the file, not just unlinked.
    this.db.pragma('secure_delete = ON');
    // One transaction wrapper for every write: better-sqlite3 builds four functions and their
    // properties on each db.transaction() call, ~3% of a lifecycle's CPU when made per write.
    const inImmediate = this.db.transaction((fn: () => unknown) => fn()).immediate;
    this.immediate = <R>(fn: () => R): R => inImmediate(fn) as R;
    this.migrate();
  }

  /** Runs `fn` in a BEGIN IMMEDIATE transaction (rolled back if it throws). */
  private readonly immediate: <R>(fn: () => R) => R;

  /** Writes waiting for this turn's group commit (see grouped()). */
  private group: { fn: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];

  /**
   * Group commit, for every write but the migrations and the jobs' bookkeeping: the writes asked
   * for in one turn of the event loop (a burst of requests, the guest messages of many VMs, the
   * worker's claims and leases) run in one transaction, each in a savepoint of its own — it
   * succeeds or fails alone, in the order asked — committed once. A commit is most of a small
   * write's cost (~13 WAL page writes and their locks for a new VM); each caller still hears
   * back only once its write is durable.
   */
  private grouped<R>(fn: () => R): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      if (this.group.length === 0) setImmediate(() => this.commitGroup());
      this.group.push({ fn, resolve: resolve as (v: unknown) => void, reject });
    });
  }

  private commitGroup(): void {
    const group = this.group;
    this.group = [];
    if (group.length === 0) return;
    if (group.length === 1) {
      // Alone in its turn: the transaction is its savepoint (it succeeds or fails alone anyway).
      const w = group[0]!;
      let value: unknown;
      try {
        value = this.immediate(w.fn);
      } catch (error) {
        w.reject(error);
        return;
      }
      w.resolve(value);
      return;
    }
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      this.immediate(() => {
        for (const w of group) {
          try {
            outcomes.push({ ok: true, value: this.immediate(w.fn) }); // nested: a savepoint
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
        }
      });
    } catch (error) {
      for (const w of group) w.reject(error); // the commit itself failed: none of them happened
      return;
    }
    group.forEach((w, i) => {
      const o = outcomes[i]!;
      if (o.ok) w.resolve(o.value);
      else w.reject(o.error);
    });
  }

  private sql(text: string, raw = false): Database.Statement {
    const key = raw ? `raw:${text}` : text;
    let st = this.statements.get(key);
    if (!st) {
      st = this.db.prepare(text);
      if (raw) st.raw(true);
      this.statements.set(key, st);
    }
    return st;
  }

  /** Applies pending migrations; returns the versions applied. */
  migrate(): number[] {
    this.db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)',
    );
    const applied = new Set(
      (this.db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map(
        (r) => r.version,
      ),
    );
    const done: number[] = [];
    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      this.immediate(() => {
        this.db.exec(m.sql);
        this.db
          .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
          .run(m.version, m.name, Date.now());
      });
      done.push(m.version);
    }
    return done;
  }

  schemaVersion(): number {
    const r = this.sql('SELECT MAX(version) AS v FROM schema_migrations').get() as {
      v: number | null;
    };
    return r.v ?? 0;
  }

  async close(): Promise<void> {
    if (this.db.open) this.commitGroup();
    if (this.db.open) this.db.close();
  }

  async ping(): Promise<void> {
    this.sql('SELECT 1').get();
  }

  async recordDelivery(source: string, id: string, now: number): Promise<boolean> {
    return this.recordDeliverySync(source, id, now);
  }

  private recordDeliverySync(source: string, id: string, now: number): boolean {
    const r = this.sql(
      'INSERT INTO deliveries (source, id, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    ).run(source, id, now);
    return r.changes === 1;
  }

  async deliverySeen(source: string, id: string): Promise<boolean> {
    return this.sql('SELECT 1 FROM deliveries WHERE source = ? AND id = ?').get(source, id) !== undefined;
  }

  async pruneDeliveries(before: number, limit: number): Promise<number> {
    const r = await this.grouped(() =>
      this.sql(
        `DELETE FROM deliveries WHERE rowid IN
           (SELECT rowid FROM deliveries WHERE received_at < ? ORDER BY received_at ${LIMIT_BOUND})`,
      ).run(before, limit),
    );
    return r.changes;
  }

  async getJob(jobId: number): Promise<WorkflowJob | null> {
    const r = this.sql('SELECT * FROM workflow_jobs WHERE job_id = ?').get(jobId) as Row | undefined;
    return r ? jobFromRow(r) : null;
  }

  async jobOfVm(vm: string): Promise<WorkflowJob | null> {
    const r = this.sql('SELECT * FROM workflow_jobs WHERE vm = ? ORDER BY updated_at DESC LIMIT 1').get(
      vm,
    ) as Row | undefined;
    return r ? jobFromRow(r) : null;
  }

  async saveJobs(jobs: WorkflowJob[]): Promise<void> {
    const st = this.sql(
      `INSERT INTO workflow_jobs (job_id, repository, run_id, run_attempt, installation_id, labels, pool,
         status, vm, runner_name, vms_created, note, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (job_id) DO UPDATE SET repository = excluded.repository, run_id = excluded.run_id,
         run_attempt = excluded.run_attempt, installation_id = excluded.installation_id,
         labels = excluded.labels, pool = excluded.pool, status = excluded.status, vm = excluded.vm,
         runner_name = excluded.runner_name, vms_created = excluded.vms_created, note = excluded.note,
         updated_at = excluded.updated_at`,
    );
    this.immediate(() => {
      for (const j of jobs) {
        st.run(
          j.jobId,
          j.repository,
          j.runId,
          j.runAttempt,
          j.installationId,
          JSON.stringify(j.labels),
          j.pool,
          j.status,
          j.vm,
          j.runnerName,
          j.vmsCreated,
          j.note,
          j.createdAt,
          j.updatedAt,
        );
      }
    });
  }

  async listJobs(filter: { statuses?: readonly JobStatus[]; limit?: number } = {}): Promise<WorkflowJob[]> {
    const where = filter.statuses?.length
      ? `WHERE status IN (${filter.statuses.map(() => '?').join(', ')})`
      : '';
    const rows = this.db
      .prepare(`SELECT * FROM workflow_jobs ${where} ORDER BY created_at DESC, job_id DESC ${LIMIT_BOUND}`)
      .all(...(filter.statuses ?? []), filter.limit ?? 1000) as Row[];
    return rows.map(jobFromRow);
  }

  async insertVm(vm: NewVm, now: number): Promise<{ vm: VmRecord; created: boolean }> {
    return (await this.insertVms([vm], now)).results[0]!;
  }

  async insertVms(
    vms: NewVm[],
    now: number,
    delivery?: DeliveryRef,
    takeWarm?: Decide,
  ): Promise<{ results: { vm: VmRecord; created: boolean }[]; duplicate: boolean }> {
    return this.grouped(() => {
      const results = vms.map((vm) => this.insertOne(vm, now, takeWarm));
      const duplicate = delivery ? !this.recordDeliverySync(delivery.source, delivery.id, now) : false;
      return { results, duplicate };
    });
  }

  private insertOne(vm: NewVm, now: number, takeWarm?: Decide): { vm: VmRecord; created: boolean } {
    const live = this.sql(`SELECT * FROM vms WHERE identity = ? AND state NOT IN (${TERMINAL})`).get(
      vm.identity,
    ) as Row | undefined;
    if (live) return { vm: toVm(live), created: false };
    const taken = takeWarm ? this.takeWarm(vm, now, takeWarm) : null;
    if (taken) return { vm: taken, created: true };
    const deadlineAt = vm.initialDeadline === null ? null : now + vm.initialDeadline * 1000;
    const info = this.sql(
      `INSERT INTO vms (name, identity, pool, provider, source, repository, run_id, run_attempt, label,
           runner_labels, state, credential, deadline_at, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '${INITIAL_STATE}', ?, ?, ?, ?)`,
    ).run(
      vm.name,
      vm.identity,
      vm.pool,
      vm.provider,
      vm.source,
      vm.repository,
      vm.runId,
      vm.runAttempt,
      vm.label,
      JSON.stringify(vm.runnerLabels),
      vm.credential,
      deadlineAt,
      now,
      now,
    );
    const note = `requested via ${vm.source}`;
    this.sql(
      `INSERT INTO vm_events (vm_id, at, event, from_state, to_state, note)
         VALUES (?, ?, 'requested', '${INITIAL_STATE}', '${INITIAL_STATE}', ?)`,
    ).run(info.lastInsertRowid, now, note);
    // The row as written, without reading it back.
    const id = Number(info.lastInsertRowid);
    return {
      created: true,
      vm: {
        id,
        name: vm.name,
        identity: vm.identity,
        pool: vm.pool,
        provider: vm.provider,
        source: vm.source,
        repository: vm.repository,
        runId: vm.runId,
        runAttempt: vm.runAttempt,
        label: vm.label,
        runnerLabels: [...vm.runnerLabels],
        state: INITIAL_STATE,
        destroyRequested: false,
        failure: null,
        attempts: 0,
        destroyAttempts: 0,
        action: null,
        notBefore: 0,
        leaseOwner: null,
        leaseExpiresAt: null,
        deadlineAt,
        credential: vm.credential,
        guestSeq: 0,
        channelTokenHash: null,
        providerData: {},
        createdAt: now,
        updatedAt: now,
      },
    };
  }

  /**
   * The oldest warm VM of the new VM's pool, rebound to it (identity, source, repository, run,
   * labels — its own name replacing the new VM's as the unique label — and credential), with the
   * transition `decide` returns; null when the pool has none (or `decide` declines).
   */
  private takeWarm(vm: NewVm, now: number, decide: Decide): VmRecord | null {
    const row = this.sql(
      `SELECT * FROM vms WHERE state = 'warm' AND source = 'warm' AND pool = ? ORDER BY id LIMIT 1`,
    ).get(vm.pool) as Row | undefined;
    if (!row) return null;
    const warm = toVm(row);
    const bound: VmRecord = {
      ...warm,
      identity: vm.identity,
      source: vm.source,
      repository: vm.repository,
      runId: vm.runId,
      runAttempt: vm.runAttempt,
      label: vm.label,
      runnerLabels: vm.runnerLabels.map((l) => (l === vm.name ? warm.name : l)),
      credential: vm.credential,
    };
    const t = decide(bound);
    if (!t) return null;
    this.sql(
      `UPDATE vms SET identity = ?, source = ?, repository = ?, run_id = ?, run_attempt = ?, label = ?,
           runner_labels = ?, credential = ? WHERE id = ?`,
    ).run(
      bound.identity,
      bound.source,
      bound.repository,
      bound.runId,
      bound.runAttempt,
      bound.label,
      JSON.stringify(bound.runnerLabels),
      bound.credential,
      warm.id,
    );
    return this.write(bound, { ...bound, updatedAt: now }, t, now);
  }

  async warmVms(): Promise<VmRecord[]> {
    // Through the state index: only live rows are read, however long the history.
    const live = LIVE_STATES.filter((s) => s !== 'destroying');
    return (
      this.sql(
        `SELECT * FROM vms WHERE state IN (${sqlList(live)}) AND source = 'warm' ORDER BY id`,
      ).all() as Row[]
    ).map(toVm);
  }

  async findByIdentity(identity: string): Promise<VmRecord | null> {
    const r = this.sql('SELECT * FROM vms WHERE identity = ? ORDER BY id DESC LIMIT 1').get(identity) as
      Row | undefined;
    return r ? toVm(r) : null;
  }

  async countByIdentity(identity: string): Promise<number> {
    return (this.sql('SELECT COUNT(*) AS n FROM vms WHERE identity = ?').get(identity) as { n: number }).n;
  }

  async getVm(name: string): Promise<VmRecord | null> {
    const r = this.sql('SELECT * FROM vms WHERE name = ?').get(name) as Row | undefined;
    return r ? toVm(r) : null;
  }

  async listVms(filter: VmFilter = {}): Promise<VmRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    // Deduplicated: the SQL text depends only on how many states, so the statement cache stays small.
    const states = [...new Set(filter.states ?? [])];
    if (states.length) {
      where.push(`state IN (${states.map(() => '?').join(', ')})`);
      args.push(...states);
    }
    if (filter.repository) {
      where.push('repository = ?');
      args.push(filter.repository);
    }
    if (filter.before !== undefined) {
      where.push('id < ?');
      args.push(filter.before);
    }
    // No limit means every match: a silent cap here once hid VMs from the reconciler.
    const sql = `SELECT * FROM vms ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC ${LIMIT_BOUND}`;
    return (this.sql(sql).all(...args, filter.limit ?? -1) as Row[]).map(toVm);
  }

  async summaries(states: readonly VmState[]): Promise<VmSummary[]> {
    const unique = [...new Set(states)];
    // Rows as arrays (.raw): better-sqlite3 builds row objects slower than this map does.
    const rows = this.sql(
      `SELECT name, pool, provider, state, json_extract(provider_data, '$.channel.kind')
         FROM vms WHERE state IN (${unique.map(() => '?').join(', ')})`,
      true,
    ).all(...unique) as [string, string, string | null, VmState, string | null][];
    return rows.map(([name, pool, provider, state, channelKind]) => ({
      name,
      pool,
      provider,
      state,
      channelKind,
    }));
  }

  async getVms(names: readonly string[]): Promise<VmRecord[]> {
    const out: VmRecord[] = [];
    // Chunks keep the statement cache small (one text per chunk size) and under SQLite's
    // bound-parameter limit.
    for (let i = 0; i < names.length; i += 500) {
      const chunk = names.slice(i, i + 500);
      const sql = `SELECT * FROM vms WHERE name IN (${chunk.map(() => '?').join(', ')})`;
      for (const r of this.sql(sql).all(...chunk) as Row[]) out.push(toVm(r));
    }
    return out;
  }

  async recentRepositories(since: number): Promise<{ repository: string; credential: string | null }[]> {
    return this.sql(
      `SELECT repository,
           (SELECT credential FROM vms c WHERE c.repository = v.repository AND c.credential IS NOT NULL
              ORDER BY c.id DESC LIMIT 1) AS credential
         FROM vms v WHERE updated_at >= ? AND repository <> '' GROUP BY repository ORDER BY repository`,
    ).all(since) as { repository: string; credential: string | null }[];
  }

  async getVmById(id: number): Promise<VmRecord | null> {
    const r = this.sql('SELECT * FROM vms WHERE id = ?').get(id) as Row | undefined;
    return r ? toVm(r) : null;
  }

  async activeByPool(states: readonly VmState[]): Promise<Record<string, number>> {
    const rows = this.sql(
      `SELECT pool, COUNT(*) AS n FROM vms WHERE state IN (${states.map(() => '?').join(', ')}) GROUP BY pool`,
    ).all(...states) as { pool: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.pool, r.n]));
  }

  async pendingHeads(perPool: Record<string, number>): Promise<{ id: number; name: string; pool: string }[]> {
    const out: { id: number; name: string; pool: string }[] = [];
    const st = this.sql(
      `SELECT id, name, pool FROM vms WHERE state = '${INITIAL_STATE}' AND pool = ? ORDER BY id ${LIMIT_BOUND}`,
    );
    for (const [pool, n] of Object.entries(perPool)) {
      if (n > 0) out.push(...(st.all(pool, n) as { id: number; name: string; pool: string }[]));
    }
    return out.sort((a, b) => a.id - b.id);
  }

  async activeUse(
    states: readonly VmState[],
  ): Promise<{ pool: string; repository: string; state: VmState; n: number }[]> {
    const unique = [...new Set(states)];
    return this.sql(
      `SELECT pool, repository, state, COUNT(*) AS n FROM vms
         WHERE state IN (${unique.map(() => '?').join(', ')}) GROUP BY pool, repository, state`,
    ).all(...unique) as { pool: string; repository: string; state: VmState; n: number }[];
  }

  async pendingHeadsByTenant(
    perPool: Record<string, number>,
    by: 'owner' | 'repository',
  ): Promise<{ id: number; name: string; pool: string; repository: string }[]> {
    // The tenant as SQL: the repository, or its owner (before the "/"), case-insensitively.
    const tenant =
      by === 'repository' ? 'lower(repository)' : "lower(substr(repository, 1, instr(repository, '/') - 1))";
    const st = this.sql(
      `SELECT id, name, pool, repository FROM (
         SELECT id, name, pool, repository,
                row_number() OVER (PARTITION BY ${tenant} ORDER BY id) AS rank
           FROM vms WHERE state = '${INITIAL_STATE}' AND pool = ?)
       WHERE rank <= ? ORDER BY id`,
    );
    const out: { id: number; name: string; pool: string; repository: string }[] = [];
    for (const [pool, n] of Object.entries(perPool)) {
      if (n > 0) out.push(...(st.all(pool, n) as typeof out));
    }
    return out.sort((a, b) => a.id - b.id);
  }

  async listEvents(vmId: number): Promise<VmEventRecord[]> {
    return (this.sql('SELECT * FROM vm_events WHERE vm_id = ? ORDER BY id').all(vmId) as Row[]).map((r) => ({
      id: r.id as number,
      vmId: r.vm_id as number,
      at: r.at as number,
      event: r.event as string,
      fromState: r.from_state as VmState,
      toState: r.to_state as VmState,
      note: r.note as string,
    }));
  }

  async transition(
    name: string,
    decide: Decide,
    now: number,
    lease?: Lease,
    guestSeq?: number,
  ): Promise<TransitionResult> {
    return this.grouped((): TransitionResult => {
      const row = this.sql('SELECT * FROM vms WHERE name = ?').get(name) as Row | undefined;
      if (!row) return { vm: null, applied: false, leaseLost: false };
      const vm = toVm(row);
      if (lease && (vm.leaseOwner !== lease.owner || vm.leaseExpiresAt !== lease.expiresAt)) {
        return { vm, applied: false, leaseLost: true };
      }
      // A guest message is taken exactly once and in order: an old seq is a replay, a seq past
      // the next one means something in between was lost (the guest is asked to replay).
      const guest = guestSeq === undefined ? undefined : guestOrder(guestSeq, vm.guestSeq);
      if (guest === 'duplicate' || guest === 'gap') return { vm, applied: false, leaseLost: false, guest };
      // Unchanged fields are rewritten as they were: one statement whatever happened.
      const after: VmRecord = { ...vm, updatedAt: now };
      if (lease) {
        after.leaseOwner = null;
        after.leaseExpiresAt = null;
      }
      if (guest === 'next') after.guestSeq = guestSeq!;
      const t = decide(vm);
      if (!t && !lease && after.guestSeq === vm.guestSeq) {
        return { vm, applied: false, leaseLost: false, guest }; // nothing to write
      }
      return { vm: this.write(vm, after, t, now), applied: t !== null, leaseLost: false, guest };
    });
  }

  /**
   * Writes `after` (the row with its lease and guest seq already settled) with the transition
   * `t` applied, re-checked against the transition table, and its audit event. Inside a transaction.
   */
  private write(vm: VmRecord, after: VmRecord, t: Transition | null, now: number): VmRecord {
    if (t) {
      const d = t.decision;
      if (d.state !== vm.state && !TRANSITIONS[vm.state].includes(d.state)) {
        throw new InvalidTransitionError(`${vm.name}: ${vm.state} → ${d.state} is not an allowed transition`);
      }
      Object.assign(after, {
        state: d.state,
        destroyRequested: d.destroyRequested,
        failure: d.failure,
        attempts: d.attempts,
        destroyAttempts: d.destroyAttempts,
        action: d.action,
        notBefore: now + d.delayMs,
        deadlineAt:
          d.deadline === 'keep' ? vm.deadlineAt : d.deadline === null ? null : now + d.deadline * 1000,
      });
      this.sql(
        'INSERT INTO vm_events (vm_id, at, event, from_state, to_state, note) VALUES (?, ?, ?, ?, ?, ?)',
      ).run(vm.id, now, t.event.type, vm.state, d.state, d.note);
    }
    if (isTerminal(after.state) && after.credential !== null && !this.hasLiveRegistration(vm.id)) {
      after.credential = null;
      this.erased = true;
    }
    // Only the columns that changed: SQLite rewrites every index on a column named in SET, even
    // to the same value, and each page it touches is a WAL frame at the commit (a guest message
    // that only advances guest_seq wrote 5 frames with every column named, 1 now: store test).
    // A statement per set of columns: a few dozen in practice, each prepared once.
    const set: string[] = [];
    const values: unknown[] = [];
    for (const [column, field] of WRITABLE) {
      if (after[field] === vm[field]) continue;
      set.push(`${column} = ?`);
      const v = after[field];
      values.push(typeof v === 'boolean' ? (v ? 1 : 0) : v);
    }
    this.sql(`UPDATE vms SET ${set.join(', ')}${set.length ? ', ' : ''}updated_at = ? WHERE id = ?`).run(
      ...values,
      now,
      vm.id,
    );
    return after;
  }

  private hasLiveRegistration(vmId: number): boolean {
    return (
      this.sql('SELECT 1 FROM runner_registrations WHERE vm_id = ? AND removed_at IS NULL LIMIT 1').get(
        vmId,
      ) !== undefined
    );
  }

  async setChannelToken(name: string, hash: string | null, now: number): Promise<void> {
    await this.grouped(() =>
      this.sql('UPDATE vms SET channel_token_hash = ?, updated_at = ? WHERE name = ?').run(hash, now, name),
    );
  }

  async setProviderData(name: string, data: Record<string, unknown>, now: number): Promise<void> {
    await this.grouped(() =>
      this.sql(
        'UPDATE vms SET provider_data = json_patch(provider_data, ?), updated_at = ? WHERE name = ?',
      ).run(JSON.stringify(data), now, name),
    );
  }

  async claim(owner: string, now: number, leaseMs: number, limit: number): Promise<VmRecord[]> {
    const rows = await this.grouped(
      () =>
        this.sql(
          `UPDATE vms SET lease_owner = ?, lease_expires_at = ?
             WHERE id IN (
               SELECT id FROM vms
               WHERE action IS NOT NULL AND not_before <= ? AND (lease_owner IS NULL OR lease_expires_at <= ?)
               ORDER BY not_before, id ${LIMIT_BOUND})
             RETURNING *`,
        ).all(owner, now + leaseMs, now, now, limit) as Row[],
    );
    return rows.map(toVm).sort((a, b) => a.id - b.id);
  }

  async renew(name: string, lease: Lease, leaseMs: number, now: number): Promise<Lease | null> {
    const expiresAt = now + leaseMs;
    const r = await this.grouped(() =>
      this.sql(
        'UPDATE vms SET lease_expires_at = ? WHERE name = ? AND lease_owner = ? AND lease_expires_at = ?',
      ).run(expiresAt, name, lease.owner, lease.expiresAt),
    );
    return r.changes === 1 ? { owner: lease.owner, expiresAt } : null;
  }

  async leasesHeldBy(prefix: string): Promise<{ name: string; owner: string }[]> {
    // substr, not LIKE: the prefix is data and may hold LIKE's wildcards.
    return this.sql(
      'SELECT name, lease_owner AS owner FROM vms WHERE lease_owner IS NOT NULL AND substr(lease_owner, 1, ?) = ?',
    ).all(prefix.length, prefix) as { name: string; owner: string }[];
  }

  async releaseLease(name: string, owner: string): Promise<boolean> {
    const r = await this.grouped(() =>
      this.sql(
        'UPDATE vms SET lease_owner = NULL, lease_expires_at = NULL WHERE name = ? AND lease_owner = ?',
      ).run(name, owner),
    );
    return r.changes === 1;
  }

  async due(now: number): Promise<VmRecord[]> {
    return (
      this.sql(
        `SELECT * FROM vms WHERE deadline_at IS NOT NULL AND deadline_at <= ? AND state NOT IN (${TERMINAL}) ORDER BY deadline_at`,
      ).all(now) as Row[]
    ).map(toVm);
  }

  async recordRegistration(reg: Omit<RunnerRegistration, 'removedAt'>): Promise<void> {
    await this.grouped(() =>
      this.sql(
        `INSERT INTO runner_registrations (vm_id, repository, runner_id, runner_name, created_at)
           VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ).run(reg.vmId, reg.repository, reg.runnerId, reg.runnerName, reg.createdAt),
    );
  }

  async markRegistrationRemoved(vmId: number, runnerId: number, now: number): Promise<void> {
    await this.grouped(() => {
      this.sql(
        'UPDATE runner_registrations SET removed_at = ? WHERE vm_id = ? AND runner_id = ? AND removed_at IS NULL',
      ).run(now, vmId, runnerId);
      if (this.eraseSpent('AND id = ?', vmId) > 0) this.erased = true;
    });
  }

  async listRegistrations(filter: {
    vmId?: number;
    live?: boolean;
    ofEndedVms?: boolean;
  }): Promise<RunnerRegistration[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.vmId !== undefined) {
      where.push('r.vm_id = ?');
      args.push(filter.vmId);
    }
    if (filter.live) where.push('r.removed_at IS NULL');
    if (filter.ofEndedVms) where.push(`r.vm_id IN (SELECT id FROM vms WHERE state IN (${TERMINAL}))`);
    const rows = this.sql(
      `SELECT r.* FROM runner_registrations r ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY r.created_at`,
    ).all(...args) as Row[];
    return rows.map((r) => ({
      vmId: r.vm_id as number,
      repository: r.repository as string,
      runnerId: r.runner_id as number,
      runnerName: r.runner_name as string,
      createdAt: r.created_at as number,
      removedAt: (r.removed_at as number | null) ?? null,
    }));
  }

  async eraseSpentCredentials(): Promise<number> {
    const n = this.eraseSpent('', undefined);
    if (n > 0) this.erased = true;
    return n;
  }

  /** Nulls the credential of ended VMs (all, or `AND id = ?`) that have no live registration. */
  private eraseSpent(extra: string, id: number | undefined): number {
    return this.sql(
      `UPDATE vms SET credential = NULL
         WHERE credential IS NOT NULL AND state IN (${TERMINAL}) ${extra}
           AND NOT EXISTS (SELECT 1 FROM runner_registrations r WHERE r.vm_id = vms.id AND r.removed_at IS NULL)`,
    ).run(...(id === undefined ? [] : [id])).changes;
  }

  async scrub(): Promise<void> {
    if (!this.erased) return;
    this.erased = false;
    // Page images holding an erased value may sit in the WAL until it is reset: truncate it.
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }
}

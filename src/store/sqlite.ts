// SQLite store (better-sqlite3, WAL). Statements are synchronous; the async interface is for
// the PostgreSQL store to come. Several processes may open the same file (WAL + busy timeout):
// claims are single conditional UPDATEs, so two workers never lease the same VM.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { INITIAL_STATE, sqlList, TERMINAL_STATES, TRANSITIONS, type VmState } from '../model/states.ts';
import { migrations } from './migrations/sqlite.ts';
import type {
  Decide,
  Lease,
  NewVm,
  RunnerRegistration,
  Store,
  VmEventRecord,
  VmFilter,
  VmRecord,
} from './store.ts';

type Row = Record<string, unknown>;

const TERMINAL = sqlList(TERMINAL_STATES);

function toVm(r: Row): VmRecord {
  return {
    id: r.id as number,
    name: r.name as string,
    identity: r.identity as string,
    pool: r.pool as string,
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
    providerData: JSON.parse(r.provider_data as string) as Record<string, unknown>,
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

  constructor(readonly file: string) {
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = ON');
    this.migrate();
  }

  private sql(text: string): Database.Statement {
    let st = this.statements.get(text);
    if (!st) {
      st = this.db.prepare(text);
      this.statements.set(text, st);
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
      this.db
        .transaction(() => {
          this.db.exec(m.sql);
          this.db
            .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
            .run(m.version, m.name, Date.now());
        })
        .immediate();
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
    if (this.db.open) this.db.close();
  }

  async ping(): Promise<void> {
    this.sql('SELECT 1').get();
  }

  async recordDelivery(source: string, id: string, now: number): Promise<boolean> {
    const r = this.sql(
      'INSERT INTO deliveries (source, id, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    ).run(source, id, now);
    return r.changes === 1;
  }

  async insertVm(vm: NewVm, now: number): Promise<{ vm: VmRecord; created: boolean }> {
    return this.db
      .transaction(() => {
        const live = this.sql(`SELECT * FROM vms WHERE identity = ? AND state NOT IN (${TERMINAL})`).get(
          vm.identity,
        ) as Row | undefined;
        if (live) return { vm: toVm(live), created: false };
        const info = this.sql(
          `INSERT INTO vms (name, identity, pool, source, repository, run_id, run_attempt, label, runner_labels,
               state, credential, deadline_at, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '${INITIAL_STATE}', ?, ?, ?, ?)`,
        ).run(
          vm.name,
          vm.identity,
          vm.pool,
          vm.source,
          vm.repository,
          vm.runId,
          vm.runAttempt,
          vm.label,
          JSON.stringify(vm.runnerLabels),
          vm.credential,
          vm.initialDeadline === null ? null : now + vm.initialDeadline * 1000,
          now,
          now,
        );
        this.sql(
          `INSERT INTO vm_events (vm_id, at, event, from_state, to_state, note)
             VALUES (?, ?, 'requested', '${INITIAL_STATE}', '${INITIAL_STATE}', ?)`,
        ).run(info.lastInsertRowid, now, `requested via ${vm.source}`);
        const row = this.sql('SELECT * FROM vms WHERE id = ?').get(info.lastInsertRowid) as Row;
        return { vm: toVm(row), created: true };
      })
      .immediate();
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
    const sql = `SELECT * FROM vms ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    return (this.sql(sql).all(...args, filter.limit ?? 1000) as Row[]).map(toVm);
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
      `SELECT id, name, pool FROM vms WHERE state = '${INITIAL_STATE}' AND pool = ? ORDER BY id LIMIT ?`,
    );
    for (const [pool, n] of Object.entries(perPool)) {
      if (n > 0) out.push(...(st.all(pool, n) as { id: number; name: string; pool: string }[]));
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
  ): Promise<{ vm: VmRecord | null; applied: boolean; leaseLost: boolean }> {
    return this.db
      .transaction(() => {
        const row = this.sql('SELECT * FROM vms WHERE name = ?').get(name) as Row | undefined;
        if (!row) return { vm: null, applied: false, leaseLost: false };
        const vm = toVm(row);
        if (lease && (vm.leaseOwner !== lease.owner || vm.leaseExpiresAt !== lease.expiresAt)) {
          return { vm, applied: false, leaseLost: true };
        }
        const releaseSql = lease ? ', lease_owner = NULL, lease_expires_at = NULL' : '';
        const t = decide(vm);
        if (!t) {
          if (lease) this.sql(`UPDATE vms SET updated_at = ?${releaseSql} WHERE id = ?`).run(now, vm.id);
          return {
            vm: toVm(this.sql('SELECT * FROM vms WHERE id = ?').get(vm.id) as Row),
            applied: false,
            leaseLost: false,
          };
        }
        const d = t.decision;
        if (d.state !== vm.state && !TRANSITIONS[vm.state].includes(d.state)) {
          throw new InvalidTransitionError(
            `${vm.name}: ${vm.state} → ${d.state} is not an allowed transition`,
          );
        }
        const deadlineAt =
          d.deadline === 'keep' ? vm.deadlineAt : d.deadline === null ? null : now + d.deadline * 1000;
        this.sql(
          `UPDATE vms SET state = ?, destroy_requested = ?, failure = ?, attempts = ?, destroy_attempts = ?,
               action = ?, not_before = ?, deadline_at = ?, updated_at = ?${releaseSql}
             WHERE id = ?`,
        ).run(
          d.state,
          d.destroyRequested ? 1 : 0,
          d.failure,
          d.attempts,
          d.destroyAttempts,
          d.action,
          now + d.delayMs,
          deadlineAt,
          now,
          vm.id,
        );
        this.sql(
          'INSERT INTO vm_events (vm_id, at, event, from_state, to_state, note) VALUES (?, ?, ?, ?, ?, ?)',
        ).run(vm.id, now, t.event.type, vm.state, d.state, d.note);
        const after = toVm(this.sql('SELECT * FROM vms WHERE id = ?').get(vm.id) as Row);
        return { vm: after, applied: true, leaseLost: false };
      })
      .immediate();
  }

  async setProviderData(name: string, data: Record<string, unknown>, now: number): Promise<void> {
    this.sql(
      'UPDATE vms SET provider_data = json_patch(provider_data, ?), updated_at = ? WHERE name = ?',
    ).run(JSON.stringify(data), now, name);
  }

  async setGuestSeq(name: string, seq: number, now: number): Promise<void> {
    this.sql('UPDATE vms SET guest_seq = ?, updated_at = ? WHERE name = ? AND guest_seq < ?').run(
      seq,
      now,
      name,
      seq,
    );
  }

  async claim(owner: string, now: number, leaseMs: number, limit: number): Promise<VmRecord[]> {
    const rows = this.sql(
      `UPDATE vms SET lease_owner = ?, lease_expires_at = ?
         WHERE id IN (
           SELECT id FROM vms
           WHERE action IS NOT NULL AND not_before <= ? AND (lease_owner IS NULL OR lease_expires_at <= ?)
           ORDER BY not_before, id LIMIT ?)
         RETURNING *`,
    ).all(owner, now + leaseMs, now, now, limit) as Row[];
    return rows.map(toVm).sort((a, b) => a.id - b.id);
  }

  async renew(name: string, lease: Lease, leaseMs: number, now: number): Promise<Lease | null> {
    const expiresAt = now + leaseMs;
    const r = this.sql(
      'UPDATE vms SET lease_expires_at = ? WHERE name = ? AND lease_owner = ? AND lease_expires_at = ?',
    ).run(expiresAt, name, lease.owner, lease.expiresAt);
    return r.changes === 1 ? { owner: lease.owner, expiresAt } : null;
  }

  async releaseLease(name: string, owner: string): Promise<boolean> {
    const r = this.sql(
      'UPDATE vms SET lease_owner = NULL, lease_expires_at = NULL WHERE name = ? AND lease_owner = ?',
    ).run(name, owner);
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
    this.sql(
      `INSERT INTO runner_registrations (vm_id, repository, runner_id, runner_name, created_at)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    ).run(reg.vmId, reg.repository, reg.runnerId, reg.runnerName, reg.createdAt);
  }

  async markRegistrationRemoved(vmId: number, runnerId: number, now: number): Promise<void> {
    this.sql(
      'UPDATE runner_registrations SET removed_at = ? WHERE vm_id = ? AND runner_id = ? AND removed_at IS NULL',
    ).run(now, vmId, runnerId);
  }

  async listRegistrations(filter: { vmId?: number; live?: boolean }): Promise<RunnerRegistration[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.vmId !== undefined) {
      where.push('vm_id = ?');
      args.push(filter.vmId);
    }
    if (filter.live) where.push('removed_at IS NULL');
    const rows = this.sql(
      `SELECT * FROM runner_registrations ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at`,
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
}

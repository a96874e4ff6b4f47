// Versioned schema migrations, applied in order inside one transaction each. Never edit a
// released migration: add the next one. The terminal states are interpolated from the
// vocabulary so that the partial index and the queries cannot disagree; changing that group
// therefore needs a migration that rebuilds the index.
import { sqlList, TERMINAL_STATES } from '../../model/states.ts';
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const migrations: Migration[] = [
  {
    version: 1,
    name: 'vms, events, deliveries, runner registrations',
    sql: `
      CREATE TABLE vms (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        identity TEXT NOT NULL,
        pool TEXT NOT NULL,
        source TEXT NOT NULL,
        repository TEXT NOT NULL,
        run_id TEXT,
        run_attempt INTEGER,
        label TEXT NOT NULL,
        runner_labels TEXT NOT NULL,
        state TEXT NOT NULL,
        destroy_requested INTEGER NOT NULL DEFAULT 0,
        failure TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        destroy_attempts INTEGER NOT NULL DEFAULT 0,
        action TEXT,
        not_before INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_expires_at INTEGER,
        deadline_at INTEGER,
        credential TEXT,
        guest_seq INTEGER NOT NULL DEFAULT 0,
        provider_data TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      -- One live VM per identity: a repeated create finds the existing one.
      CREATE UNIQUE INDEX vms_live_identity ON vms(identity) WHERE state NOT IN (${sqlList(TERMINAL_STATES)});
      CREATE INDEX vms_identity ON vms(identity);
      CREATE INDEX vms_action ON vms(action, not_before) WHERE action IS NOT NULL;
      CREATE INDEX vms_deadline ON vms(deadline_at) WHERE deadline_at IS NOT NULL;
      CREATE INDEX vms_state ON vms(state);

      CREATE TABLE vm_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        vm_id INTEGER NOT NULL REFERENCES vms(id),
        at INTEGER NOT NULL,
        event TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        note TEXT NOT NULL
      );
      CREATE INDEX vm_events_vm ON vm_events(vm_id, id);

      CREATE TABLE deliveries (
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (source, id)
      );

      CREATE TABLE runner_registrations (
        vm_id INTEGER NOT NULL REFERENCES vms(id),
        repository TEXT NOT NULL,
        runner_id INTEGER NOT NULL,
        runner_name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        removed_at INTEGER,
        PRIMARY KEY (vm_id, runner_id)
      );
    `,
  },
  {
    version: 2,
    name: 'the provider instance of each VM',
    // Pools name a provider instance (providers.<name>); a VM keeps the one that created it, so
    // it can be destroyed after its pool is renamed or removed. Rows from before: NULL (the
    // pool's provider is used).
    sql: `ALTER TABLE vms ADD COLUMN provider TEXT;`,
  },
  {
    version: 3,
    name: 'HTTP guest channel token',
    // Only the token's hash is kept: the token itself exists in the VM's config alone.
    sql: `ALTER TABLE vms ADD COLUMN channel_token_hash TEXT;`,
  },
  {
    version: 4,
    name: 'workflow jobs (GitHub App autoscaling)',
    // One row per GitHub job seen in a workflow_job webhook: how far it got (statuses only move
    // forward, so duplicates and reordered events converge), the pool that serves it, and the VM
    // bound to it (created for it, or the one whose runner took it: docs/adr). Deliveries are
    // deduplicated in \`deliveries\` (source 'github'); received_at is indexed to prune old ones.
    sql: `
      CREATE TABLE workflow_jobs (
        job_id INTEGER PRIMARY KEY,
        repository TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        run_attempt INTEGER NOT NULL,
        installation_id INTEGER,
        labels TEXT NOT NULL,
        pool TEXT,
        status TEXT NOT NULL,
        vm TEXT,
        runner_name TEXT,
        vms_created INTEGER NOT NULL DEFAULT 0,
        note TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE INDEX workflow_jobs_vm ON workflow_jobs(vm) WHERE vm IS NOT NULL;
      CREATE INDEX workflow_jobs_status ON workflow_jobs(status, repository);
      CREATE INDEX deliveries_received ON deliveries(received_at);
    `,
  },
];

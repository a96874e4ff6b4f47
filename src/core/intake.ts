// Intake turns a verified, parsed request into rows: one VM per requested label, named from its
// identity so that a repeated request finds the same VM. Nothing slow happens here: the worker
// picks the rows up. Callers (http routes) have already validated every identifier.
import type { DeliveryRef, NewVm, VmRecord, VmSource } from '../store/store.ts';
import { applyEvent } from './apply.ts';
import { poolForLabel, PoolRefusedError, timeoutsFor, type CoreContext } from './context.ts';
import { repositoryRefusal } from './trust.ts';
import { deadlineFor, INITIAL_STATE, isTerminal } from './lifecycle.ts';
import { vmName } from './naming.ts';
import { insertVmsTakingWarm } from './warm-pools.ts';

export interface CreateRequest {
  source: VmSource;
  repository: string;
  labels: string[];
  /** Explicit requests: run id and attempt make the identity (a re-run gets new VMs). */
  runId?: string;
  runAttempt?: number;
  /** Legacy requests: SpinW's ID (no attempt: a re-run reuses it, see docs/adr). */
  legacyId?: string;
  /** Legacy: the encrypted PAT as received, decrypted only when a worker needs it. */
  credential?: string | null;
}

export type DestroyRequest = Omit<CreateRequest, 'credential'> & { by: string };

export interface IntakeResult {
  vm: VmRecord;
  /** False when the request matched an existing VM (a duplicate). */
  created: boolean;
}

export interface CreateOutcome {
  results: IntakeResult[];
  /** The request's delivery id was seen before. */
  duplicate: boolean;
}

interface Identity {
  identity: string;
  label: string;
  key: string;
  extraLabels: string[];
}

function identities(req: CreateRequest): Identity[] {
  // Labels are matched case-insensitively, as GitHub matches them: "Linux" and "linux" are one VM.
  const labels = [...new Set(req.labels.map((l) => l.toLowerCase()))];
  return labels.map((label) => {
    if (req.source === 'legacy') {
      if (!req.legacyId) throw new Error('legacy request without ID');
      // SpinW workflows run their job on `<server>_<ID>`: keep that label.
      return {
        identity: `legacy:${req.repository}:${req.legacyId}:${label}`,
        label,
        key: req.legacyId,
        extraLabels: [`${label}_${req.legacyId}`],
      };
    }
    if (!req.runId || !req.runAttempt) throw new Error('request without run id/attempt');
    return {
      identity: `${req.source}:${req.repository}:${req.runId}:${req.runAttempt}:${label}`,
      label,
      key: `${req.runId}-${req.runAttempt}`,
      extraLabels: [],
    };
  });
}

export class Intake {
  constructor(private readonly ctx: CoreContext) {}

  /**
   * Validates labels against the pools first, so a bad label creates nothing at all; then
   * records the request's VMs and its delivery id in one transaction.
   */
  async create(req: CreateRequest, delivery?: DeliveryRef): Promise<CreateOutcome> {
    const ids = identities(req);
    const pools = ids.map((id) => poolForLabel(this.ctx, id.label));
    // Trust rules: a pool limited to some repositories refuses the others' explicit requests
    // too (events and forks concern GitHub App jobs only: docs/adr/2026-12-02-trust-rules.md).
    for (const pool of pools) {
      const refused = repositoryRefusal(pool.name, pool.trust, req.repository);
      if (refused) throw new PoolRefusedError(refused);
    }
    const existing: (IntakeResult | null)[] = [];
    const wanted: NewVm[] = [];
    for (const [i, id] of ids.entries()) {
      const pool = pools[i]!;
      const newest = await this.ctx.store.findByIdentity(id.identity);
      if (newest && (!isTerminal(newest.state) || req.source !== 'legacy')) {
        // Explicit requests: the identity includes the attempt, so a create after the VM is gone
        // is a late duplicate, not new work. Legacy IDs repeat on re-runs: those start a new VM.
        existing.push({ vm: newest, created: false });
        continue;
      }
      existing.push(null);
      const generation = newest ? (await this.ctx.store.countByIdentity(id.identity)) + 1 : 1;
      const name = vmName({ repository: req.repository, label: id.label, key: id.key, generation });
      wanted.push({
        name,
        identity: id.identity,
        pool: pool.name,
        provider: pool.provider,
        source: req.source,
        repository: req.repository,
        runId: req.runId ?? (req.legacyId ? req.legacyId.split('_')[0]! : null),
        runAttempt: req.runAttempt ?? null,
        label: id.label,
        runnerLabels: [id.label, ...id.extraLabels, name],
        credential: req.credential ?? null,
        initialDeadline: deadlineFor(INITIAL_STATE, timeoutsFor(this.ctx, pool.name)),
      });
    }
    // A pool's warm VM, when one is ready, serves a new VM of it instead (warm-pools.ts).
    const { results: inserted, duplicate } = await insertVmsTakingWarm(this.ctx, wanted, delivery);
    const results = existing.map((e) => e ?? inserted.shift()!);
    const created = results.filter((r) => r.created).map((r) => r.vm.name);
    if (created.length)
      this.ctx.log.info({ vms: created, repository: req.repository, source: req.source }, 'VMs requested');
    this.ctx.notifier.queued();
    return { results, duplicate };
  }

  /** Destroys the live VMs a request identifies; identities with no live VM are simply absent. */
  async destroy(req: DestroyRequest): Promise<VmRecord[]> {
    const out: VmRecord[] = [];
    for (const id of identities(req)) {
      const vm = await this.ctx.store.findByIdentity(id.identity);
      if (!vm) continue;
      out.push((await this.destroyByName(vm.name, req.by)) ?? vm);
    }
    return out;
  }

  async destroyByName(name: string, by: string): Promise<VmRecord | null> {
    const r = await applyEvent(this.ctx, name, { type: 'destroy_requested', by });
    this.ctx.notifier.wake();
    return r.vm;
  }
}

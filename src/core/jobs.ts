// workflow_job webhooks → VMs (GitHub App autoscaling). One row per GitHub job (store
// `workflow_jobs`) records how far it got and the VM bound to it; its status only moves forward
// (waiting < queued < in_progress < completed), so duplicates and reordered events converge:
// an event behind the row's status changes nothing (completed before queued → no VM).
//
// A job is not bound to a runner: any idle runner whose labels cover the job's may take it. So
// the VM created for job A may run job B. The binding follows GitHub's word (the runner named in
// in_progress/completed): when B runs on A's VM, B takes that VM and A takes B's VM if it has not
// started (a swap), or gets a new VM if it still waits; a job that ran on a runner that is not
// ours frees its own unstarted VM. Live unstarted VMs and waiting jobs stay one to one. Why:
// docs/adr/2026-12-02-webhook-jobs.md.
//
// Events are applied one at a time (a promise chain): each reads and writes several rows, and
// the store is this process's SQLite.
import type { JobStatus, NewVm, VmRecord, WorkflowJob } from '../store/store.ts';
import { applyEvent } from './apply.ts';
import { timeoutsFor, type CoreContext } from './context.ts';
import type { PoolConfig } from '../config/schema.ts';
import { poolForJob, SELF_HOSTED } from './job-match.ts';
import { needsOrigin, originRefusal, repositoryRefusal, type RunOrigin } from './trust.ts';
import { deadlineFor, INITIAL_STATE, isTerminal } from './lifecycle.ts';
import { vmName } from './naming.ts';
import { insertVmsTakingWarm } from './warm-pools.ts';

export type JobAction = 'queued' | 'waiting' | 'in_progress' | 'completed';

/** A workflow_job webhook, validated (see http/routes/github.ts). */
export interface JobEvent {
  action: JobAction;
  jobId: number;
  runId: number;
  runAttempt: number;
  repository: string;
  labels: string[];
  /** The runner GitHub gave the job (in_progress, completed); null when none. */
  runnerName: string | null;
  installationId: number | null;
}

export type JobResult =
  'vm_requested' | 'recorded' | 'not_served' | 'stale' | 'duplicate' | 'bound' | 'vm_destroyed';

export interface JobOutcome {
  result: JobResult;
  /** VMs this event created or destroyed. */
  created: string[];
  destroyed: string[];
  note: string;
}

const RANK: Record<JobStatus, number> = { waiting: 0, queued: 1, in_progress: 2, completed: 3 };
/** States in which a VM's runner has not taken a job yet: such a VM can serve another job. */
const UNSTARTED = new Set(['pending', 'provisioning', 'booting', 'configuring', 'idle']);

export class JobIntake {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly ctx: CoreContext) {}

  /**
   * Applies one event after those before it have been applied. A queued job for a pool with
   * event or fork rules needs its run's origin first: asked before taking its turn, so that
   * other events do not wait for GitHub; if GitHub cannot be asked, this rejects and nothing is
   * recorded (the webhook's delivery fails and is redelivered: core/redeliver.ts).
   */
  async handle(e: JobEvent): Promise<JobOutcome> {
    const origin = await this.originFor(e);
    const run = this.chain.then(() => this.apply(e, origin));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async originFor(e: JobEvent): Promise<RunOrigin | undefined> {
    if (e.action !== 'queued' || !this.ctx.runOrigin) return undefined;
    const pool = poolForJob(this.ctx.pools, e.labels).pool;
    if (!pool || !needsOrigin(pool.trust) || repositoryRefusal(pool.name, pool.trust, e.repository))
      return undefined;
    return this.ctx.runOrigin(e.repository, e.runId, e.installationId);
  }

  /** Why the pool must not serve the job (trust rules), or null. */
  private refusal(pool: PoolConfig, e: JobEvent, origin: RunOrigin | undefined): string | null {
    const byRepository = repositoryRefusal(pool.name, pool.trust, e.repository);
    if (byRepository || !needsOrigin(pool.trust)) return byRepository;
    if (!origin)
      return `pool ${pool.name} has event or fork rules: the run's origin could not be read (github.app is needed)`;
    return originRefusal(pool.name, pool.trust, e.repository, origin);
  }

  private async apply(e: JobEvent, origin: RunOrigin | undefined): Promise<JobOutcome> {
    const now = this.ctx.clock();
    const out: JobOutcome = { result: 'recorded', created: [], destroyed: [], note: '' };
    const existing = await this.ctx.store.getJob(e.jobId);
    if (existing && RANK[e.action] < RANK[existing.status]) {
      return { ...out, result: 'stale', note: `the job is already ${existing.status}` };
    }
    // The same news again (a redelivery, or the same event under another delivery id). A repeated
    // `queued` is looked at again: its VM may have ended (failed) while the job still waits.
    if (
      existing &&
      e.action !== 'queued' &&
      existing.status === e.action &&
      (e.runnerName === null || e.runnerName === existing.runnerName)
    ) {
      return { ...out, result: 'duplicate', note: `the job is already ${existing.status}` };
    }
    const match = poolForJob(this.ctx.pools, e.labels);
    const job: WorkflowJob = existing ?? {
      jobId: e.jobId,
      repository: e.repository,
      runId: e.runId,
      runAttempt: e.runAttempt,
      installationId: e.installationId,
      labels: e.labels,
      pool: match.pool?.name ?? null,
      status: e.action,
      vm: null,
      runnerName: null,
      vmsCreated: 0,
      note: match.pool ? '' : match.why,
      createdAt: now,
      updatedAt: now,
    };
    job.status = e.action;
    job.installationId ??= e.installationId;
    job.updatedAt = now;
    const changed: WorkflowJob[] = [job];

    if (e.action === 'waiting') {
      // Waiting for an environment's approval: it may wait for hours; a VM now would idle out.
      out.note = 'waiting for approval: a VM is requested once it is queued';
    } else if (e.action === 'queued') {
      const refused = match.pool ? this.refusal(match.pool, e, origin) : null;
      if (!match.pool) {
        out.result = 'not_served';
        out.note = match.why;
      } else if (refused) {
        // The pool its labels name may not serve it: no pool serves it (labels are unique).
        out.result = 'not_served';
        out.note = refused;
        job.pool = null;
        job.note = refused;
      } else if (await this.liveVm(job.vm)) {
        out.result = 'duplicate';
        out.note = `VM ${job.vm} is already requested for it`;
      } else if (job.vm && (await this.ranAJob(job.vm))) {
        // A late `queued` (the poller's snapshot, a redelivery) after its VM ran a job whose
        // in_progress has not arrived: most likely this job. If it was another one, that job's
        // in_progress names this VM and the binding gives this job a VM then (bind).
        out.result = 'duplicate';
        out.note = `its VM ${job.vm} has run a job already; GitHub's in_progress says which`;
      } else {
        job.vm = await this.createVm(job, match.runnerLabels, out);
        out.result = 'vm_requested';
      }
    } else {
      if (e.runnerName) {
        await this.bind(job, e.runnerName, changed, out);
        job.runnerName = e.runnerName;
      }
      if (e.action === 'completed') {
        const vm = await this.liveVm(job.vm);
        // Its runner ran this job (it is ephemeral: done) or it never started one (the job was
        // cancelled while queued). A VM busy with another job whose in_progress is still on its way
        // is left alone.
        if (vm && (job.runnerName === vm.name || UNSTARTED.has(vm.state))) {
          await this.destroy(vm.name, `job ${job.jobId} completed`, out);
          out.result = 'vm_destroyed';
        }
      }
    }
    await this.ctx.store.saveJobs(changed);
    if (out.created.length) this.ctx.notifier.queued();
    this.ctx.log.info(
      {
        job: e.jobId,
        repository: e.repository,
        action: e.action,
        result: out.result,
        vm: job.vm ?? undefined,
        ...(out.note ? { note: out.note } : {}),
      },
      'workflow_job',
    );
    return out;
  }

  /**
   * GitHub says `runnerName` took the job. If that is one of our VMs bound to another job, the
   * two jobs trade VMs (or the other gets a new one); if it is not ours, this job's own VM is free.
   */
  private async bind(
    job: WorkflowJob,
    runnerName: string,
    changed: WorkflowJob[],
    out: JobOutcome,
  ): Promise<void> {
    if (job.runnerName === runnerName) return;
    const own = await this.liveVm(job.vm);
    const ownName = job.vm; // before it is rebound below
    const taker = await this.ctx.store.getVm(runnerName);
    if (taker && taker.name === own?.name) {
      out.result = 'bound';
      return;
    }
    if (taker && taker.source === 'github') {
      const other = await this.ctx.store.jobOfVm(taker.name);
      if (job.pool === null)
        // A runner takes any queued job of its repository whose labels it carries: trust rules
        // decide which jobs get a VM, not which job a VM's runner takes (docs/adr trust rules).
        this.ctx.log.warn(
          { job: job.jobId, vm: taker.name, note: job.note },
          'a job no pool serves ran on a VM created for another job of its repository',
        );
      job.vm = taker.name;
      out.result = 'bound';
      if (other && other.jobId !== job.jobId) {
        changed.push(other);
        other.updatedAt = job.updatedAt;
        // This job's own VM goes to the other job: if it has not started, it will serve it; if it
        // has started (or ran) a job, that was most likely the other job (the two runners crossed,
        // and that in_progress is still on its way); were it a third job, that job's in_progress
        // rebinds and the other job gets a new VM then. A new VM only when this job had none.
        const mine = own ? own.name : ownName && (await this.ranAJob(ownName)) ? ownName : null;
        if (mine) {
          other.vm = mine;
          other.note = `its VM ${taker.name} ran job ${job.jobId}; it takes ${mine}, created for that job`;
        } else if (RANK[other.status] <= RANK.queued && other.pool) {
          const labels = poolForJob(this.ctx.pools, other.labels);
          other.vm = labels.pool ? await this.createVm(other, labels.runnerLabels, out) : null;
          other.note = `its VM ${taker.name} ran job ${job.jobId}; a new VM serves it`;
        } else {
          other.vm = null;
        }
      } else if (own && UNSTARTED.has(own.state)) {
        await this.destroy(own.name, `job ${job.jobId} ran on ${taker.name}`, out);
      }
      return;
    }
    // A runner that is not ours (or no longer exists): the job is served; its VM is not needed.
    if (own && UNSTARTED.has(own.state)) {
      await this.destroy(own.name, `job ${job.jobId} ran on runner ${runnerName}, not on this VM`, out);
    }
    job.vm = null;
  }

  private async ranAJob(name: string): Promise<boolean> {
    const vm = await this.ctx.store.getVm(name);
    return vm !== null && (await this.ctx.store.listEvents(vm.id)).some((e) => e.toState === 'busy');
  }

  private async liveVm(name: string | null): Promise<VmRecord | null> {
    if (!name) return null;
    const vm = await this.ctx.store.getVm(name);
    return vm && !isTerminal(vm.state) ? vm : null;
  }

  private async destroy(name: string, why: string, out: JobOutcome): Promise<void> {
    await applyEvent(this.ctx, name, { type: 'destroy_requested', by: why });
    this.ctx.notifier.wake();
    out.destroyed.push(name);
  }

  /** A new VM for the job; its runner carries the job's labels and the VM's unique name. */
  private async createVm(job: WorkflowJob, labels: string[], out: JobOutcome): Promise<string> {
    const pool = this.ctx.pools.find((p) => p.name === job.pool)!;
    const generation = job.vmsCreated + 1;
    const label = labels.find((l) => l !== SELF_HOSTED) ?? pool.labels[0]!.toLowerCase();
    const name = vmName({ repository: job.repository, label, key: String(job.jobId), generation });
    const vm: NewVm = {
      name,
      identity: `github:${job.repository}:${job.jobId}:${generation}`,
      pool: pool.name,
      provider: pool.provider,
      source: 'github',
      repository: job.repository,
      runId: String(job.runId),
      runAttempt: job.runAttempt,
      label,
      runnerLabels: [...labels, name],
      credential: null,
      initialDeadline: deadlineFor(INITIAL_STATE, timeoutsFor(this.ctx, pool.name)),
    };
    // A warm VM of the pool, if one is ready, serves the job instead (its name is then the VM's).
    const { results } = await insertVmsTakingWarm(this.ctx, [vm]);
    const taken = results[0]!.vm.name;
    job.vmsCreated = generation;
    out.created.push(taken);
    if (taken !== name) out.note = `took warm VM ${taken}`;
    return taken;
  }
}

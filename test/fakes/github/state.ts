// The stand-in GitHub's state: runner registrations, jobs, registration tokens, and the
// dispatch of queued jobs to idle runners that long-poll for them. No HTTP in here.
import { randomBytes } from 'node:crypto';

export const RUNNER_VERSION = '2.999.0';
/** Labels GitHub gives every self-hosted Linux x64 runner. */
export const DEFAULT_LABELS = ['self-hosted', 'Linux', 'X64'];
/** The most output a job keeps (bytes). */
export const OUTPUT_LIMIT = 64 * 1024;

export type JobStatus = 'queued' | 'in_progress' | 'completed';
export type JobConclusion = 'success' | 'failure';
export type JobEventAction = 'queued' | 'in_progress' | 'completed';

/** A snapshot of a job (never changes after it is returned). */
export interface FakeJob {
  readonly id: number;
  readonly name: string;
  /** `owner/repo`, as given to queueJob. */
  readonly repository: string;
  /** The job's `runs-on` labels. */
  readonly labels: readonly string[];
  readonly script: string;
  /** Its run's triggering event (default `push`). */
  readonly event: string;
  /** Its run's head repository, `owner/repo` (a fork's for a pull request from a fork). */
  readonly headRepository: string;
  readonly status: JobStatus;
  readonly conclusion: JobConclusion | null;
  readonly runnerId: number | null;
  readonly runnerName: string | null;
  /** stdout and stderr of the script, interleaved, truncated to 64 KiB. */
  readonly output: string;
  readonly exitCode: number | null;
  /** ISO 8601 timestamps. */
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly completedAt: string | null;
}

export interface QueueJobInput {
  repository: string;
  labels: string[];
  name?: string;
  script?: string;
  /** Its run's triggering event (default `push`). */
  event?: string;
  /** Its run's head repository (default `repository`; another one: a pull request from a fork). */
  headRepository?: string;
}

/** A snapshot of a runner registration. */
export interface FakeRunner {
  readonly id: number;
  readonly name: string;
  /** `owner/repo` for a repository's runner, null for an organization's. */
  readonly repository: string | null;
  /** The organization for an organization's runner, null for a repository's. */
  readonly organization: string | null;
  readonly labels: readonly string[];
  readonly status: 'online' | 'offline';
  readonly busy: boolean;
  readonly ephemeral: boolean;
  readonly runnerGroupId: number;
  /** Set once the runner has connected. */
  readonly version: string | null;
  /** The job it runs, if busy. */
  readonly jobId: number | null;
  readonly createdAt: string;
}

export interface Label {
  id: number;
  name: string;
  type: 'read-only' | 'custom';
}

/** Where a runner is registered: a repository (`owner/repo`) or an organization. */
export type Scope = { kind: 'repo'; owner: string; repo: string } | { kind: 'org'; org: string };

/** True when s holds a control character (C0 or DEL). */
export function hasControlChars(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** s with every run of control characters replaced by one space. */
export function withoutControlChars(s: string): string {
  let out = '';
  let inRun = false;
  for (const ch of s) {
    const bad = hasControlChars(ch);
    if (bad && !inRun) out += ' ';
    if (!bad) out += ch;
    inRun = bad;
  }
  return out;
}

export function scopeKey(s: Scope): string {
  return s.kind === 'repo' ? `repo:${s.owner}/${s.repo}`.toLowerCase() : `org:${s.org}`.toLowerCase();
}

export interface PendingPoll {
  /** Answers the long poll; false when its connection is already gone. */
  answer(body: string): boolean;
}

export interface RunnerRecord {
  id: number;
  name: string;
  scope: Scope;
  labels: Label[];
  runnerGroupId: number;
  ephemeral: boolean;
  secret: string;
  workFolder: string;
  status: 'online' | 'offline';
  busy: boolean;
  version: string | null;
  jobId: number | null;
  createdAt: Date;
  lastContact: number;
  poll: PendingPoll | null;
}

interface JobRecord {
  id: number;
  name: string;
  repository: string;
  labels: string[];
  script: string;
  event: string;
  headRepository: string;
  status: JobStatus;
  conclusion: JobConclusion | null;
  runnerId: number | null;
  runnerName: string | null;
  output: string;
  exitCode: number | null;
  createdAt: Date;
  startedAt: Date | null;
  completedAt: Date | null;
}

export interface TokenRecord {
  kind: 'registration' | 'remove';
  scope: Scope;
  expiresAt: Date;
}

interface Waiter {
  check(): boolean;
  fail(e: Error): void;
}

export class FakeState {
  readonly runnersById = new Map<number, RunnerRecord>();
  private readonly jobsById = new Map<number, JobRecord>();
  readonly tokens = new Map<string, TokenRecord>();
  /** Every encoded JIT config handed out (secrets: tests check that none is kept anywhere). */
  readonly issuedJitConfigs: string[] = [];
  private readonly waiters = new Set<Waiter>();
  private readonly jobListeners = new Set<(action: JobEventAction, job: FakeJob) => void>();
  private nextRunnerId = 1001;
  private nextJobId = 70001;
  private nextLabelId = 1;
  private readonly labelIds = new Map<string, number>();

  constructor(private readonly formatJob: (job: FakeJob, runner: RunnerRecord) => string) {}

  // --- runners ---

  findRunnerByName(scope: Scope, name: string): RunnerRecord | undefined {
    const key = scopeKey(scope);
    for (const r of this.runnersById.values()) {
      if (scopeKey(r.scope) === key && r.name.toLowerCase() === name.toLowerCase()) return r;
    }
    return undefined;
  }

  runnersIn(scope: Scope): RunnerRecord[] {
    const key = scopeKey(scope);
    return [...this.runnersById.values()].filter((r) => scopeKey(r.scope) === key);
  }

  private label(name: string, type: Label['type']): Label {
    let id = this.labelIds.get(name.toLowerCase());
    if (id === undefined) {
      id = this.nextLabelId++;
      this.labelIds.set(name.toLowerCase(), id);
    }
    return { id, name, type };
  }

  addRunner(input: {
    scope: Scope;
    name: string;
    labels: string[];
    runnerGroupId: number;
    ephemeral: boolean;
    workFolder: string;
    noDefaultLabels?: boolean;
  }): RunnerRecord {
    const labels: Label[] = input.noDefaultLabels
      ? []
      : DEFAULT_LABELS.map((l) => this.label(l, 'read-only'));
    for (const l of input.labels) {
      if (!labels.some((x) => x.name.toLowerCase() === l.toLowerCase())) labels.push(this.label(l, 'custom'));
    }
    const r: RunnerRecord = {
      id: this.nextRunnerId++,
      name: input.name,
      scope: input.scope,
      labels,
      runnerGroupId: input.runnerGroupId,
      ephemeral: input.ephemeral,
      secret: randomBytes(24).toString('hex'),
      workFolder: input.workFolder,
      status: 'offline',
      busy: false,
      version: null,
      jobId: null,
      createdAt: new Date(),
      lastContact: Date.now(),
      poll: null,
    };
    this.runnersById.set(r.id, r);
    this.changed();
    return r;
  }

  /** Removes a registration; a job it was running fails. */
  removeRunner(r: RunnerRecord, why: string): void {
    if (!this.runnersById.delete(r.id)) return;
    if (r.busy && r.jobId !== null)
      this.finishJob(r, r.jobId, 'failure', null, `\n[stand-in GitHub] ${why}\n`);
    const poll = r.poll;
    r.poll = null;
    poll?.answer('gone\n');
    this.changed();
  }

  /** The runner went away without removal (non-ephemeral, or lost): offline, its job fails. */
  runnerGone(r: RunnerRecord, why: string): void {
    if (r.ephemeral) {
      this.removeRunner(r, why);
      return;
    }
    if (r.busy && r.jobId !== null)
      this.finishJob(r, r.jobId, 'failure', null, `\n[stand-in GitHub] ${why}\n`);
    r.status = 'offline';
    const poll = r.poll;
    r.poll = null;
    poll?.answer('none\n');
    this.changed();
  }

  connect(r: RunnerRecord, version: string): void {
    r.status = 'online';
    r.version = version;
    r.lastContact = Date.now();
    this.changed();
  }

  /** A runner waits for a job; answered at once when one is queued for it. */
  startPoll(r: RunnerRecord, poll: PendingPoll): void {
    r.poll?.answer('none\n');
    r.poll = poll;
    r.status = 'online';
    r.lastContact = Date.now();
    this.changed();
    this.dispatch();
  }

  endPoll(r: RunnerRecord, poll: PendingPoll): void {
    if (r.poll !== poll) return;
    r.poll = null;
    r.lastContact = Date.now();
  }

  // --- jobs ---

  queueJob(input: QueueJobInput): FakeJob {
    if (!/^[^/\s]+\/[^/\s]+$/.test(input.repository)) {
      throw new Error(`queueJob: repository must be owner/repo, got ${JSON.stringify(input.repository)}`);
    }
    const id = this.nextJobId++;
    const job: JobRecord = {
      id,
      name: withoutControlChars(input.name ?? `job-${id}`),
      repository: input.repository,
      labels: [...input.labels],
      script: input.script ?? 'echo "Hello from the stand-in runner"',
      event: input.event ?? 'push',
      headRepository: input.headRepository ?? input.repository,
      status: 'queued',
      conclusion: null,
      runnerId: null,
      runnerName: null,
      output: '',
      exitCode: null,
      createdAt: new Date(),
      startedAt: null,
      completedAt: null,
    };
    this.jobsById.set(id, job);
    this.emitJob('queued', job);
    this.changed();
    this.dispatch();
    return this.snapshotJob(job);
  }

  job(id: number): FakeJob | undefined {
    const j = this.jobsById.get(id);
    return j && this.snapshotJob(j);
  }

  jobs(): FakeJob[] {
    return [...this.jobsById.values()].map((j) => this.snapshotJob(j));
  }

  private eligible(r: RunnerRecord, job: JobRecord): boolean {
    if (r.status !== 'online' || r.busy || !r.poll) return false;
    const [owner, repo] = job.repository.toLowerCase().split('/');
    const inScope =
      r.scope.kind === 'repo'
        ? r.scope.owner.toLowerCase() === owner && r.scope.repo.toLowerCase() === repo
        : r.scope.org.toLowerCase() === owner;
    if (!inScope) return false;
    const have = new Set(r.labels.map((l) => l.name.toLowerCase()));
    return job.labels.every((l) => have.has(l.toLowerCase()));
  }

  /** Hands queued jobs (oldest first) to idle runners that are waiting for one. */
  dispatch(): void {
    for (const job of this.jobsById.values()) {
      while (job.status === 'queued') {
        const runner = [...this.runnersById.values()].find((r) => this.eligible(r, job));
        if (!runner) break;
        const poll = runner.poll!;
        runner.poll = null;
        if (!poll.answer(this.formatJob(this.snapshotJob(job), runner))) continue; // gone meanwhile
        runner.busy = true;
        runner.jobId = job.id;
        runner.lastContact = Date.now();
        job.status = 'in_progress';
        job.runnerId = runner.id;
        job.runnerName = runner.name;
        job.startedAt = new Date();
        this.emitJob('in_progress', job);
        this.changed();
      }
    }
  }

  /** A runner reports its job's end. Idempotent; an ephemeral runner is removed afterwards. */
  finishJob(
    r: RunnerRecord,
    jobId: number,
    conclusion: JobConclusion,
    exitCode: number | null,
    output: string,
  ): void {
    const job = this.jobsById.get(jobId);
    if (!job || job.runnerId !== r.id || job.status === 'completed') return;
    job.status = 'completed';
    job.conclusion = conclusion;
    job.exitCode = exitCode;
    const buf = Buffer.from(job.output + output, 'utf8');
    job.output =
      buf.length > OUTPUT_LIMIT ? buf.subarray(0, OUTPUT_LIMIT).toString('utf8') : buf.toString('utf8');
    job.completedAt = new Date();
    if (r.jobId === jobId) {
      r.busy = false;
      r.jobId = null;
    }
    r.lastContact = Date.now();
    this.emitJob('completed', job);
    // GitHub unregisters an ephemeral runner once its job is done.
    if (r.ephemeral) this.removeRunner(r, 'ephemeral runner finished its job');
    this.changed();
    this.dispatch();
  }

  // --- snapshots, waiting, events ---

  snapshotJob(j: JobRecord): FakeJob {
    return Object.freeze({
      id: j.id,
      name: j.name,
      repository: j.repository,
      labels: Object.freeze([...j.labels]),
      script: j.script,
      event: j.event,
      headRepository: j.headRepository,
      status: j.status,
      conclusion: j.conclusion,
      runnerId: j.runnerId,
      runnerName: j.runnerName,
      output: j.output,
      exitCode: j.exitCode,
      createdAt: j.createdAt.toISOString(),
      startedAt: j.startedAt?.toISOString() ?? null,
      completedAt: j.completedAt?.toISOString() ?? null,
    });
  }

  snapshotRunner(r: RunnerRecord): FakeRunner {
    return Object.freeze({
      id: r.id,
      name: r.name,
      repository: r.scope.kind === 'repo' ? `${r.scope.owner}/${r.scope.repo}` : null,
      organization: r.scope.kind === 'org' ? r.scope.org : null,
      labels: Object.freeze(r.labels.map((l) => l.name)),
      status: r.status,
      busy: r.busy,
      ephemeral: r.ephemeral,
      runnerGroupId: r.runnerGroupId,
      version: r.version,
      jobId: r.jobId,
      createdAt: r.createdAt.toISOString(),
    });
  }

  onJob(listener: (action: JobEventAction, job: FakeJob) => void): () => void {
    this.jobListeners.add(listener);
    return () => this.jobListeners.delete(listener);
  }

  private emitJob(action: JobEventAction, j: JobRecord): void {
    const snap = this.snapshotJob(j);
    for (const l of this.jobListeners) {
      try {
        l(action, snap);
      } catch {
        /* a listener's failure is the listener's business */
      }
    }
  }

  /** Resolves when check() holds (checked now and after every change), rejects after timeoutMs. */
  waitUntil<T>(check: () => T | undefined, timeoutMs: number, what: () => string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const first = check();
      if (first !== undefined) {
        resolve(first);
        return;
      }
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`));
      }, timeoutMs);
      const waiter: Waiter = {
        check: () => {
          const v = check();
          if (v === undefined) return false;
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(v);
          return true;
        },
        fail: (e) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          reject(e);
        },
      };
      this.waiters.add(waiter);
    });
  }

  /** Rejects every pending wait (the fake is closing). */
  failWaiters(e: Error): void {
    for (const w of [...this.waiters]) w.fail(e);
  }

  changed(): void {
    for (const w of [...this.waiters]) w.check();
  }
}

// Missed webhooks, part two: a job whose queued webhook never arrived (and was never
// redelivered) is found by asking GitHub. Every interval, for each repository of each of the
// App's installations, the jobs of queued runs are fed to the job intake as `queued` events:
// a job already known is a duplicate there (no second VM), an unknown one gets its VM. The pass
// stops early when the rate limit left drops under a reserve, so that minting runners (the
// service's real work) never runs out of requests.
import type { QueuedJobsApi } from '../github/queued-jobs.ts';
import type { Logger } from '../log.ts';
import type { JobIntake, JobOutcome } from './jobs.ts';

/** Stop a pass when fewer requests than this fraction of the limit are left. */
export const RESERVE = 0.2;

export interface PollResult {
  repositories: number;
  /** Repositories whose queued runs had not changed (304). */
  unchanged: number;
  queued: number;
  vmsRequested: number;
  /** The pass stopped to keep the rate-limit reserve. */
  stoppedForRateLimit: boolean;
}

export class QueuedJobPoller {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deps: {
      jobs: JobIntake;
      log: Logger;
      remember?: (repository: string, installationId: number) => void;
    },
    private readonly api: QueuedJobsApi,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    const tick = () => {
      void this.pass()
        .catch((e: Error) =>
          this.deps.log.warn({ err: e.message }, 'queued-job poll failed; next pass retries'),
        )
        .finally(() => {
          if (this.timer !== undefined) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.intervalMs);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One pass (after any pass in progress). */
  pass(): Promise<PollResult> {
    const run = this.running.then(() => this.onePass());
    this.running = run.catch(() => undefined);
    return run;
  }

  private lowOnRequests(): boolean {
    const r = this.api.rateLimit;
    return r !== undefined && r.remaining < r.limit * RESERVE;
  }

  private async onePass(): Promise<PollResult> {
    const out: PollResult = {
      repositories: 0,
      unchanged: 0,
      queued: 0,
      vmsRequested: 0,
      stoppedForRateLimit: false,
    };
    for (const installationId of await this.api.installations()) {
      for (const repository of await this.api.repositories(installationId)) {
        if (this.lowOnRequests()) {
          out.stoppedForRateLimit = true;
          this.deps.log.warn(
            { rate_limit: this.api.rateLimit },
            'queued-job poll stopped: rate limit reserve reached',
          );
          return out;
        }
        out.repositories++;
        this.deps.remember?.(repository, installationId);
        const jobs = await this.api.queuedJobs(installationId, repository);
        if (jobs === null) {
          out.unchanged++;
          continue;
        }
        for (const j of jobs) {
          out.queued++;
          let r: JobOutcome;
          try {
            r = await this.deps.jobs.handle({ action: 'queued', runnerName: null, ...j });
          } catch (e) {
            // E.g. its run's origin could not be read (trust rules): ask for this repository's
            // list again next pass, as if it had changed, rather than skip the job until it does.
            this.api.forget?.(repository);
            this.deps.log.warn(
              { job: j.jobId, repository, err: (e as Error).message },
              'queued job not handled',
            );
            continue;
          }
          if (r.result === 'vm_requested') {
            out.vmsRequested++;
            this.deps.log.info(
              { job: j.jobId, repository },
              'a queued job no webhook announced: VM requested',
            );
          }
        }
      }
    }
    return out;
  }
}

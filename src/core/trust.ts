// Trust rules of a pool (`[pools.trust]`, seed 004): which repositories it serves, and for GitHub
// App jobs which triggering events and whether runs from forks. Pure: the run's origin is
// read from GitHub by the caller (a workflow_job webhook does not carry it). Each check answers
// null (allowed) or why not, in words an operator can act on. Why: docs/adr/2026-12-02-trust-rules.md.
import { z } from 'zod';

const GLOB = /^[A-Za-z0-9*._-]+\/[A-Za-z0-9*._-]+$/;

export const trustSchema = z
  .object({
    repositories: z
      .array(z.string().regex(GLOB, 'owner/repo, "*" matching within a part (e.g. "octo-org/*")'))
      .min(1)
      .optional()
      .describe('only these repositories (globs); default: every repository'),
    events: z
      .array(z.string().regex(/^[a-z_]+$/, 'a GitHub event name, e.g. push, pull_request, workflow_dispatch'))
      .min(1)
      .optional()
      .describe('GitHub App jobs: only runs triggered by these events; default: any'),
    forks: z
      .boolean()
      .default(true)
      .describe(
        'GitHub App jobs: false refuses runs whose head repository is not the repository (pull requests from forks)',
      ),
  })
  .strict();

export type TrustRules = z.output<typeof trustSchema>;

/** Where a workflow run came from: GET /repos/{owner}/{repo}/actions/runs/{run_id}. */
export interface RunOrigin {
  /** The event that triggered the run (push, pull_request, …). */
  event: string;
  /** `owner/repo` of the run's head; null when GitHub gives none (e.g. a deleted fork). */
  headRepository: string | null;
}

function globMatches(glob: string, repository: string): boolean {
  const re = glob
    .toLowerCase()
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('[^/]*');
  return new RegExp(`^${re}$`).test(repository.toLowerCase());
}

/** The repository rule: applies to every request, explicit or GitHub App. */
export function repositoryRefusal(
  pool: string,
  rules: TrustRules | undefined,
  repository: string,
): string | null {
  if (!rules?.repositories || rules.repositories.some((g) => globMatches(g, repository))) return null;
  return `pool ${pool} serves only ${rules.repositories.join(', ')}: not ${repository}`;
}

/** Whether the run's origin must be read to decide (event or fork rules). */
export function needsOrigin(rules: TrustRules | undefined): boolean {
  return Boolean(rules && (rules.events || !rules.forks));
}

/** The event and fork rules, given the run's origin. */
export function originRefusal(
  pool: string,
  rules: TrustRules | undefined,
  repository: string,
  origin: RunOrigin,
): string | null {
  if (!rules) return null;
  if (rules.events && !rules.events.includes(origin.event))
    return `pool ${pool} serves only runs triggered by ${rules.events.join(', ')}: this run was triggered by ${origin.event}`;
  // A run with no head repository is refused too: where its code comes from is unknown.
  if (!rules.forks && origin.headRepository?.toLowerCase() !== repository.toLowerCase())
    return `pool ${pool} serves no runs from forks: this run's code comes from ${origin.headRepository ?? 'an unknown repository'}`;
  return null;
}

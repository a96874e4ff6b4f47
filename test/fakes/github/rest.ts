// The GitHub REST endpoints the stand-in implements, keyed by `METHOD /path/template` as in
// GitHub's OpenAPI description. Requests reach these handlers already authenticated and
// validated; their answers are validated by the server before they are sent.
import { randomBytes } from 'node:crypto';
import { encodeJitConfig } from './runner-protocol.ts';
import { type FakeState, type RunnerRecord, type Scope, hasControlChars, scopeKey } from './state.ts';

export interface RestRequest {
  state: FakeState;
  params: Record<string, string>;
  query: Record<string, string | string[] | undefined>;
  body: unknown;
  /** API base URL, e.g. http://127.0.0.1:1234 (for Link headers). */
  apiUrl: string;
  /** The request's path without query. */
  path: string;
  /** The SERVER_URL written into JIT configs. */
  guestBaseUrl: string;
  /** Who the request authenticated as. */
  principal?: import('./app.ts').Principal;
  /** A copy of one of GitHub's examples (templates for large objects); undefined unchecked. */
  example?: (name: string) => unknown;
}

export interface RestReply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type RestHandler = (req: RestRequest) => RestReply;

export const DOCS = 'https://docs.github.com/rest';
const RUNNERS_DOCS = 'https://docs.github.com/rest/actions/self-hosted-runners';

export function notFound(): RestReply {
  return { status: 404, body: { message: 'Not Found', documentation_url: DOCS, status: '404' } };
}

export function validationFailed(errors: string[], documentationUrl = DOCS): RestReply {
  return { status: 422, body: { message: 'Validation Failed', errors, documentation_url: documentationUrl } };
}

export function scopeOf(params: Record<string, string>): Scope {
  return params.org !== undefined
    ? { kind: 'org', org: params.org }
    : { kind: 'repo', owner: params.owner ?? '', repo: params.repo ?? '' };
}

function runnerJson(r: RunnerRecord): Record<string, unknown> {
  return {
    id: r.id,
    name: r.name,
    os: 'Linux',
    status: r.status,
    busy: r.busy,
    ephemeral: r.ephemeral,
    labels: r.labels.map((l) => ({ id: l.id, name: l.name, type: l.type })),
    runner_group_id: r.runnerGroupId,
    version: r.version,
  };
}

function findRunner(req: RestRequest): RunnerRecord | undefined {
  const r = req.state.runnersById.get(Number(req.params.runner_id));
  if (!r) return undefined;
  return scopeKey(r.scope) === scopeKey(scopeOf(req.params)) ? r : undefined;
}

function generateJitConfig(req: RestRequest): RestReply {
  const body = req.body as { name: string; runner_group_id: number; labels: string[]; work_folder?: string };
  const scope = scopeOf(req.params);
  const problems: string[] = [];
  if (!body.name.trim()) problems.push('name must not be blank');
  if (hasControlChars(body.name)) problems.push('name must not contain control characters');
  if (body.labels.some((l) => !l.trim() || l.includes(',') || hasControlChars(l))) {
    problems.push('labels must be non-blank and contain no commas or control characters');
  }
  const workFolder = body.work_folder ?? '_work';
  if (!workFolder || hasControlChars(workFolder)) problems.push('work_folder is invalid');
  if (problems.length)
    return validationFailed(problems, `${RUNNERS_DOCS}#create-configuration-for-a-just-in-time-runner`);
  if (req.state.findRunnerByName(scope, body.name)) {
    return {
      status: 409,
      body: {
        message: `Already exists - A runner with the name ${body.name} already exists.`,
        documentation_url: `${RUNNERS_DOCS}#create-configuration-for-a-just-in-time-runner`,
        status: '409',
      },
    };
  }
  const r = req.state.addRunner({
    scope,
    name: body.name,
    labels: body.labels,
    runnerGroupId: body.runner_group_id,
    ephemeral: true,
    workFolder,
  });
  const encoded = encodeJitConfig(r, req.guestBaseUrl);
  req.state.issuedJitConfigs.push(encoded);
  return {
    status: 201,
    body: { runner: runnerJson(r), encoded_jit_config: encoded },
  };
}

function int(v: string | string[] | undefined, dflt: number): number {
  const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : NaN;
  return Number.isSafeInteger(n) ? n : dflt;
}

function listRunners(req: RestRequest): RestReply {
  // GitHub caps per_page at 100 and treats nonsense as the default.
  let perPage = int(req.query.per_page, 30);
  if (perPage < 1) perPage = 30;
  perPage = Math.min(perPage, 100);
  const page = Math.max(1, int(req.query.page, 1));
  const name = typeof req.query.name === 'string' ? req.query.name.toLowerCase() : undefined;
  const all = req.state
    .runnersIn(scopeOf(req.params))
    .filter((r) => name === undefined || r.name.toLowerCase() === name)
    .sort((a, b) => a.id - b.id);
  const runners = all.slice((page - 1) * perPage, page * perPage).map(runnerJson);
  const headers: Record<string, string> = {};
  const last = Math.max(1, Math.ceil(all.length / perPage));
  const link = (p: number, rel: string): string => {
    const q = new URLSearchParams();
    if (typeof req.query.name === 'string') q.set('name', req.query.name);
    q.set('per_page', String(perPage));
    q.set('page', String(p));
    return `<${req.apiUrl}${req.path}?${q.toString()}>; rel="${rel}"`;
  };
  // GitHub's order: prev, next, last, first; each only where it applies.
  const links: string[] = [];
  if (page > 1) links.push(link(Math.min(page - 1, last), 'prev'));
  if (page < last) links.push(link(page + 1, 'next'), link(last, 'last'));
  if (page > 1) links.push(link(1, 'first'));
  if (links.length) headers.Link = links.join(', ');
  return { status: 200, body: { total_count: all.length, runners }, headers };
}

function getRunner(req: RestRequest): RestReply {
  const r = findRunner(req);
  return r ? { status: 200, body: runnerJson(r) } : notFound();
}

function deleteRunner(req: RestRequest): RestReply {
  const r = findRunner(req);
  if (!r) return notFound();
  if (r.busy) {
    return {
      status: 422,
      body: {
        message: `Bad request - Runner "${r.name}" is still running a job`,
        documentation_url: `${RUNNERS_DOCS}#delete-a-self-hosted-runner-from-a-repository`,
      },
    };
  }
  req.state.removeRunner(r, 'deleted through the API');
  return { status: 204 };
}

function token(kind: 'registration' | 'remove'): RestHandler {
  return (req) => {
    // Registration tokens look like this: 29 upper-case letters and digits.
    const value = randomBytes(32)
      .toString('base64')
      .replace(/[^A-Za-z0-9]/g, '')
      .toUpperCase()
      .slice(0, 29);
    const expiresAt = new Date(Date.now() + 3600_000);
    req.state.tokens.set(value, { kind, scope: scopeOf(req.params), expiresAt });
    return { status: 201, body: { token: value, expires_at: expiresAt.toISOString() } };
  };
}

export const restHandlers: Record<string, RestHandler> = {};
for (const base of ['/repos/{owner}/{repo}/actions/runners', '/orgs/{org}/actions/runners']) {
  restHandlers[`POST ${base}/generate-jitconfig`] = generateJitConfig;
  restHandlers[`GET ${base}`] = listRunners;
  restHandlers[`GET ${base}/{runner_id}`] = getRunner;
  restHandlers[`DELETE ${base}/{runner_id}`] = deleteRunner;
  restHandlers[`POST ${base}/registration-token`] = token('registration');
  restHandlers[`POST ${base}/remove-token`] = token('remove');
}

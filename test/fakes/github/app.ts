// The stand-in's GitHub App: JWT verification (RS256 with the App's public key, as GitHub
// checks it: `iss` is the App, `exp` at most 10 minutes after `iat`, not expired, `iat` not in
// the future), installations (an account, all or some of its repositories) and installation
// tokens (an hour by default), and the REST endpoints for them. No HTTP in here.
import { createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import { DOCS, notFound, type RestHandler, type RestReply } from './rest.ts';
import type { Scope } from './state.ts';
import type { WebhookSender } from './webhooks.ts';

export interface FakeInstallationSpec {
  id: number;
  /** The user or organization it is installed on. */
  account: string;
  /** Only these repositories (`owner/repo`); default all of the account's. */
  repositories?: string[];
}

export interface FakeAppOptions {
  id: number;
  /** PEM (or a KeyObject) of the App's public key: JWTs are verified with it. */
  publicKey: string | KeyObject;
  installations: FakeInstallationSpec[];
  /** How long installation tokens last (default an hour, as on GitHub). */
  tokenTtlMs?: number;
}

export interface InstallationToken {
  installationId: number;
  expiresAt: number;
}

/** Who a request authenticated as. */
export type Principal =
  | { kind: 'token'; token: string }
  | { kind: 'app'; appId: number }
  | { kind: 'installation'; installationId: number; token: string };

function b64urlJson(part: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

export class FakeApp {
  readonly id: number;
  readonly slug: string;
  private readonly publicKey: KeyObject;
  private readonly installations: FakeInstallationSpec[];
  private readonly tokens = new Map<string, InstallationToken>();
  private readonly ttlMs: number;
  /** Installation tokens minted, per installation (tests: caching, refresh). */
  readonly minted = new Map<number, number>();
  /** Where the App's webhooks go (FakeGitHub.sendWebhooks): its deliveries are listed and redelivered. */
  sender: WebhookSender | undefined;

  constructor(opts: FakeAppOptions) {
    this.id = opts.id;
    this.slug = `hatchery-test-${opts.id}`;
    this.publicKey = typeof opts.publicKey === 'string' ? createPublicKey(opts.publicKey) : opts.publicKey;
    this.installations = opts.installations.map((i) => ({ ...i }));
    this.ttlMs = opts.tokenTtlMs ?? 3600_000;
  }

  /** Why GitHub would refuse this JWT, or undefined when it is valid (now: epoch ms). */
  jwtProblem(jwt: string, now = Date.now()): string | undefined {
    const parts = jwt.split('.');
    if (parts.length !== 3) return 'A JSON web token could not be decoded';
    const header = b64urlJson(parts[0]!);
    const claims = b64urlJson(parts[1]!);
    if (!header || !claims) return 'A JSON web token could not be decoded';
    if (header.alg !== 'RS256') return `'alg' must be RS256, got ${JSON.stringify(header.alg)}`;
    const signed = verify(
      'RSA-SHA256',
      Buffer.from(`${parts[0]}.${parts[1]}`),
      this.publicKey,
      Buffer.from(parts[2]!, 'base64url'),
    );
    if (!signed)
      return "A JSON web token could not be decoded (signature does not match the App's public key)";
    if (String(claims.iss) !== String(this.id))
      return `'Issuer' claim ('iss') must be the App's id ${this.id}`;
    const iat = claims.iat;
    const exp = claims.exp;
    if (typeof iat !== 'number' || typeof exp !== 'number') return "'iat' and 'exp' claims are required";
    const s = Math.floor(now / 1000);
    if (exp - iat > 600) return "'Expiration time' claim ('exp') is too far in the future";
    if (exp <= s)
      return "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
    if (iat > s + 60)
      return "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
    return undefined;
  }

  /** The installation token's record, if it exists and has not expired. */
  token(token: string, now = Date.now()): InstallationToken | undefined {
    const t = this.tokens.get(token);
    if (!t) return undefined;
    if (t.expiresAt <= now) {
      this.tokens.delete(token);
      return undefined;
    }
    return t;
  }

  all(): FakeInstallationSpec[] {
    return [...this.installations];
  }

  installation(id: number): FakeInstallationSpec | undefined {
    return this.installations.find((i) => i.id === id);
  }

  /** The installation covering a repository or organization, if any. */
  installationFor(scope: Scope): FakeInstallationSpec | undefined {
    const account = (scope.kind === 'repo' ? scope.owner : scope.org).toLowerCase();
    return this.installations.find((i) => {
      if (i.account.toLowerCase() !== account) return false;
      if (scope.kind === 'org' || !i.repositories) return true;
      const full = `${scope.owner}/${scope.repo}`.toLowerCase();
      return i.repositories.some((r) => r.toLowerCase() === full);
    });
  }

  /** Whether an installation's token may act on this repository or organization. */
  covers(installationId: number, scope: Scope): boolean {
    return this.installationFor(scope)?.id === installationId;
  }

  /** Removes an installation (uninstalled): its tokens stop working. */
  uninstall(id: number): void {
    const at = this.installations.findIndex((i) => i.id === id);
    if (at >= 0) this.installations.splice(at, 1);
    for (const [t, rec] of this.tokens) if (rec.installationId === id) this.tokens.delete(t);
  }

  /** Revokes every installation token (tests: a token GitHub refuses). */
  revokeTokens(): void {
    this.tokens.clear();
  }

  mint(installationId: number, now = Date.now()): { token: string; expiresAt: number } {
    const token = `ghs_${randomBytes(27)
      .toString('base64url')
      .replace(/[^A-Za-z0-9]/g, 'x')
      .slice(0, 36)}`;
    const expiresAt = now + this.ttlMs;
    this.tokens.set(token, { installationId, expiresAt });
    this.minted.set(installationId, (this.minted.get(installationId) ?? 0) + 1);
    return { token, expiresAt };
  }

  installationJson(i: FakeInstallationSpec, apiUrl: string): Record<string, unknown> {
    const org = !i.repositories && /org/i.test(i.account);
    const accountId = 5000 + i.id;
    const at = new Date(0).toISOString();
    return {
      id: i.id,
      account: simpleUser(i.account, accountId, apiUrl, org ? 'Organization' : 'User'),
      repository_selection: i.repositories ? 'selected' : 'all',
      access_tokens_url: `${apiUrl}/app/installations/${i.id}/access_tokens`,
      repositories_url: `${apiUrl}/installation/repositories`,
      html_url: `https://github.com/settings/installations/${i.id}`,
      app_id: this.id,
      target_id: accountId,
      target_type: org ? 'Organization' : 'User',
      permissions: { administration: 'write', actions: 'read', metadata: 'read' },
      events: ['workflow_job'],
      created_at: at,
      updated_at: at,
      single_file_name: null,
      app_slug: this.slug,
      suspended_by: null,
      suspended_at: null,
    };
  }
}

export function simpleUser(
  login: string,
  id: number,
  apiUrl: string,
  type: 'User' | 'Organization' | 'Bot' = 'User',
): Record<string, unknown> {
  const u = `${apiUrl}/users/${login}`;
  return {
    login,
    id,
    node_id: Buffer.from(`04:User${id}`).toString('base64'),
    avatar_url: `https://avatars.githubusercontent.com/u/${id}?v=4`,
    gravatar_id: '',
    url: u,
    html_url: `https://github.com/${login}`,
    followers_url: `${u}/followers`,
    following_url: `${u}/following{/other_user}`,
    gists_url: `${u}/gists{/gist_id}`,
    starred_url: `${u}/starred{/owner}{/repo}`,
    subscriptions_url: `${u}/subscriptions`,
    organizations_url: `${u}/orgs`,
    repos_url: `${u}/repos`,
    events_url: `${u}/events{/privacy}`,
    received_events_url: `${u}/received_events`,
    type,
    site_admin: false,
  };
}

/** Endpoints that only accept the App's JWT (GitHub answers 401 to any other credential). */
export const JWT_ROUTES = new Set([
  'GET /repos/{owner}/{repo}/installation',
  'GET /orgs/{org}/installation',
  'GET /app/installations/{installation_id}',
  'POST /app/installations/{installation_id}/access_tokens',
  'GET /app/hook/deliveries',
  'POST /app/hook/deliveries/{delivery_id}/attempts',
  'GET /app/installations',
]);

type AppHandler = (app: FakeApp, ...args: Parameters<RestHandler>) => RestReply;

const byScope: AppHandler = (app, req) => {
  const scope: Scope =
    req.params.org !== undefined
      ? { kind: 'org', org: req.params.org }
      : { kind: 'repo', owner: req.params.owner ?? '', repo: req.params.repo ?? '' };
  const i = app.installationFor(scope);
  return i ? { status: 200, body: app.installationJson(i, req.apiUrl) } : notFound();
};

const getInstallation: AppHandler = (app, req) => {
  const i = app.installation(Number(req.params.installation_id));
  return i ? { status: 200, body: app.installationJson(i, req.apiUrl) } : notFound();
};

const accessToken: AppHandler = (app, req) => {
  const i = app.installation(Number(req.params.installation_id));
  if (!i) return notFound();
  const { token, expiresAt } = app.mint(i.id);
  return {
    status: 201,
    body: {
      token,
      // GitHub gives whole seconds.
      expires_at: new Date(Math.floor(expiresAt / 1000) * 1000).toISOString().replace('.000Z', 'Z'),
      permissions: { administration: 'write', actions: 'read', metadata: 'read' },
      repository_selection: i.repositories ? 'selected' : 'all',
    },
  };
};

/** Newest first; `status` success|failure; `cursor`: the id after which the page starts (Link rel="next"). */
const listDeliveries: AppHandler = (app, req) => {
  const q = req.query;
  let perPage = typeof q.per_page === 'string' && /^\d+$/.test(q.per_page) ? Number(q.per_page) : 30;
  perPage = Math.min(Math.max(perPage, 1), 100);
  const ok = (code: number) => code >= 200 && code < 300;
  let all = [...(app.sender?.deliveries ?? [])].reverse();
  if (q.status === 'success') all = all.filter((d) => ok(d.statusCode));
  if (q.status === 'failure') all = all.filter((d) => !ok(d.statusCode));
  const cursor = typeof q.cursor === 'string' && /^\d+$/.test(q.cursor) ? Number(q.cursor) : undefined;
  const start = cursor === undefined ? 0 : all.findIndex((d) => d.id < cursor);
  const page = start < 0 ? [] : all.slice(start, start + perPage);
  const headers: Record<string, string> = {};
  const more = start >= 0 && start + perPage < all.length;
  if (more) {
    const next = new URLSearchParams({ per_page: String(perPage), cursor: String(page.at(-1)!.id) });
    if (typeof q.status === 'string') next.set('status', q.status);
    headers.Link = `<${req.apiUrl}${req.path}?${next.toString()}>; rel="next"`;
  }
  return {
    status: 200,
    headers,
    body: page.map((d) => ({
      id: d.id,
      guid: d.guid,
      delivered_at: d.deliveredAt.replace(/\.\d{3}Z$/, 'Z'),
      redelivery: d.redelivery,
      duration: d.durationS,
      status: d.status,
      status_code: d.statusCode,
      event: d.event,
      action: d.action,
      installation_id: d.installationId,
      repository_id: null,
      throttled_at: null,
    })),
  };
};

const redeliver: AppHandler = (app, req) => {
  const d = app.sender?.find(Number(req.params.delivery_id));
  if (!d) return notFound();
  void app.sender!.redeliver(d);
  return { status: 202, body: {} };
};

// GitHub's description of this operation combines the account's two shapes with allOf (user AND
// enterprise) where its other operations say anyOf: the enterprise fields are added so that the
// reply satisfies it (GitHub's own example for it does not).
const listInstallations: AppHandler = (app, req) => ({
  status: 200,
  body: app.all().map((i) => {
    const json = app.installationJson(i, req.apiUrl);
    const at = new Date(0).toISOString();
    Object.assign(json.account as Record<string, unknown>, {
      name: i.account,
      slug: i.account.toLowerCase(),
      created_at: at,
      updated_at: at,
    });
    return json;
  }),
});

/** The repositories an installation token reaches: those chosen, or every one of the account's that has jobs. */
const installationRepositories: AppHandler = (app, req) => {
  if (req.principal?.kind !== 'installation')
    return jwtRefusal('This endpoint requires an installation token');
  const i = app.installation(req.principal.installationId);
  if (!i) return notFound();
  const names =
    i.repositories ??
    [...new Set(req.state.jobs().map((j) => j.repository))].filter(
      (r) => r.split('/')[0]!.toLowerCase() === i.account.toLowerCase(),
    );
  const template = (
    req.example?.('repository-paginated-2') as { repositories?: Record<string, unknown>[] } | undefined
  )?.repositories?.[0];
  const repositories = template
    ? names.map((full, n) => {
        const [owner, name] = full.split('/') as [string, string];
        const r = structuredClone(template);
        Object.assign(r, { id: 9000 + n, name, full_name: full });
        Object.assign(r.owner as Record<string, unknown>, { login: owner });
        return r;
      })
    : [];
  return { status: 200, body: { total_count: repositories.length, repositories } };
};

export const appHandlers: Record<string, AppHandler> = {
  'GET /app/installations': listInstallations,
  'GET /installation/repositories': installationRepositories,
  'GET /app/hook/deliveries': listDeliveries,
  'POST /app/hook/deliveries/{delivery_id}/attempts': redeliver,
  'GET /repos/{owner}/{repo}/installation': byScope,
  'GET /orgs/{org}/installation': byScope,
  'GET /app/installations/{installation_id}': getInstallation,
  'POST /app/installations/{installation_id}/access_tokens': accessToken,
};

/** GitHub's answer to a JWT it refuses, or to another credential on a JWT-only endpoint. */
export function jwtRefusal(message: string): RestReply {
  return { status: 401, body: { message, documentation_url: DOCS, status: '401' } };
}

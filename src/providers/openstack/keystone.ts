// Keystone v3: a project-scoped token from a password or an application credential, cached and
// renewed before it expires (and once when a service answers 401: revoked, or the clock lied),
// and the service catalog, from which each service's URL is taken for the configured
// interface and region. The credentials live only in this object: never in a message.
import { errorMessage, OpenStackError } from './errors.ts';
import type { OpenStackHttp, Request, Response } from './http.ts';

export type Credentials =
  | {
      method: 'password';
      username: string;
      userDomain: string;
      password: string;
      project: string;
      projectDomain: string;
    }
  /** Scoped to the project it was created in; by id, or by name with its user. */
  | { method: 'application_credential'; id: string; secret: string }
  | { method: 'application_credential'; name: string; username: string; userDomain: string; secret: string };

export interface KeystoneOptions {
  /** The identity endpoint, `…/v3`. */
  authUrl: string;
  credentials: Credentials;
  /** Catalog endpoints of this interface (default `public`)… */
  interface?: 'public' | 'internal' | 'admin';
  /** …and this region (default: the first endpoint of the interface). */
  region?: string;
  /** Renew a token this long before it expires (ms; default 5 min). */
  renewBeforeMs?: number;
  now?: () => number;
}

interface CatalogEntry {
  type: string;
  endpoints: { interface: string; region_id?: string; region?: string; url: string }[];
}

export interface Token {
  value: string;
  expiresAt: number;
  projectId: string;
  catalog: CatalogEntry[];
}

/** Request to a service, authenticated; `path` is relative to the service's catalog URL. */
export interface ServiceRequest extends Omit<Request, 'url' | 'service'> {
  path: string;
}

export class Keystone {
  private cached: Promise<Token> | null = null;
  /** What `cached` resolved to. */
  private current: Token | null = null;

  constructor(
    private readonly http: OpenStackHttp,
    private readonly opts: KeystoneOptions,
  ) {}

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** A valid token: the cached one unless it expires soon. */
  async token(signal?: AbortSignal): Promise<Token> {
    const pending = this.cached;
    if (pending) {
      const t = await pending.catch(() => null);
      if (t && this.cached === pending && t.expiresAt - this.now() > (this.opts.renewBeforeMs ?? 300_000))
        return t;
      if (this.cached === pending) this.cached = null;
    }
    // One login at a time, shared by every caller waiting for it.
    this.cached ??= this.login(signal).then(
      (t) => {
        this.current = t;
        return t;
      },
      (e: unknown) => {
        this.cached = null;
        throw e;
      },
    );
    return this.cached;
  }

  /** Forgets `token` (a service refused it), so that the next call logs in again. */
  invalidate(token: Token): void {
    if (this.current !== token) return; // a newer one is in use (or coming) already
    this.current = null;
    this.cached = null;
  }

  private async login(signal?: AbortSignal): Promise<Token> {
    const base = this.opts.authUrl.replace(/\/+$/, '');
    const res = await this.http.send({
      service: 'identity',
      method: 'POST',
      url: `${base}/auth/tokens`,
      body: JSON.stringify(authBody(this.opts.credentials)),
      // A login has no effect but a token: asking again is harmless.
      idempotent: true,
      signal,
    });
    const what = 'POST /v3/auth/tokens';
    if (res.status !== 201)
      throw new OpenStackError('identity', what, 'http', res.status, errorMessage(res.text), false);
    const value = res.headers.get('x-subject-token');
    const body = parseJson(res.text) as {
      token?: { expires_at?: unknown; project?: { id?: unknown }; catalog?: unknown };
    } | null;
    const expiresAt = Date.parse(String(body?.token?.expires_at));
    const projectId = body?.token?.project?.id;
    if (
      !value ||
      Number.isNaN(expiresAt) ||
      typeof projectId !== 'string' ||
      !Array.isArray(body?.token?.catalog)
    )
      throw new OpenStackError(
        'identity',
        what,
        'invalid-answer',
        res.status,
        'no project-scoped token with a catalog (is the user a member of the project?)',
        false,
      );
    return { value, expiresAt, projectId, catalog: body.token.catalog as CatalogEntry[] };
  }

  /** The URL of a service (`compute`, `image`, `network`) in the token's catalog. */
  endpoint(token: Token, type: string): string {
    const iface = this.opts.interface ?? 'public';
    const entry = token.catalog.find((e) => e.type === type);
    const ep = entry?.endpoints.find(
      (e) =>
        e.interface === iface &&
        (this.opts.region === undefined || (e.region_id ?? e.region) === this.opts.region),
    );
    if (!ep)
      throw new OpenStackError(
        'identity',
        'catalog',
        'invalid-answer',
        null,
        `no ${iface} ${type} endpoint${this.opts.region ? ` in region ${this.opts.region}` : ''} in the catalog`,
        false,
      );
    return ep.url.replace(/\/+$/, '');
  }

  /**
   * A request to a service with the token; a 401 (token revoked or expired early) logs in
   * again and repeats the request once.
   */
  async call(service: string, baseOf: (token: Token) => string, req: ServiceRequest): Promise<Response> {
    for (let attempt = 1; ; attempt++) {
      const token = await this.token(req.signal);
      const res = await this.http.send({
        ...req,
        service,
        url: `${baseOf(token)}${req.path}`,
        headers: { ...req.headers, 'X-Auth-Token': token.value },
      });
      if (res.status !== 401 || attempt > 1) return res;
      this.invalidate(token);
    }
  }
}

function authBody(c: Credentials): unknown {
  if (c.method === 'password') {
    return {
      auth: {
        identity: {
          methods: ['password'],
          password: { user: { name: c.username, domain: { name: c.userDomain }, password: c.password } },
        },
        scope: { project: { name: c.project, domain: { name: c.projectDomain } } },
      },
    };
  }
  const credential =
    'id' in c
      ? { id: c.id, secret: c.secret }
      : { name: c.name, secret: c.secret, user: { name: c.username, domain: { name: c.userDomain } } };
  // No scope: an application credential's token is scoped to the project it was made in.
  return { auth: { identity: { methods: ['application_credential'], application_credential: credential } } };
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

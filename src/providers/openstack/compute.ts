// Nova: servers (create, show, list by tag and name, delete) and flavors, at microversion 2.52
// (the first with tags at create; tag filters need 2.26, below which Nova silently ignores them
// and lists everything).
import { OpenStackError } from './errors.ts';
import type { Keystone } from './keystone.ts';
import { ServiceClient, UUID } from './service.ts';

export const COMPUTE_MICROVERSION = '2.52';

export interface Server {
  id: string;
  name: string;
  /** BUILD, ACTIVE, ERROR, SHUTOFF, DELETED, … */
  status: string;
  created: string;
  metadata: Record<string, string>;
  tags: string[];
  fault?: { message?: string; code?: number };
  'OS-EXT-STS:task_state'?: string | null;
}

export interface CreateServer {
  name: string;
  imageRef: string;
  flavorRef: string;
  /** Network ids, or Nova's `none` / `auto`. */
  networks: string[] | 'none' | 'auto';
  /** The script cloud-init runs at first boot (plain text: encoded here). */
  userData: string;
  metadata: Record<string, string>;
  tags: string[];
  securityGroups?: string[];
}

/** Nova's answer to a create over quota: 403 (or 413 from older releases) "Quota exceeded …". */
export function isQuotaError(e: unknown): e is OpenStackError {
  return (
    e instanceof OpenStackError &&
    e.service === 'compute' &&
    (e.status === 403 || e.status === 413) &&
    /quota|limit exceeded/i.test(e.detail)
  );
}

/** Nova's limit on user_data: 65535 bytes once base64-encoded. */
export const USER_DATA_MAX = 65_535;

export class Compute {
  private readonly nova: ServiceClient;

  constructor(keystone: Keystone) {
    this.nova = new ServiceClient(keystone, 'compute', '', {
      'OpenStack-API-Version': `compute ${COMPUTE_MICROVERSION}`,
    });
  }

  /** A flavor's id by id or name; null if there is none. */
  async flavorId(ref: string, signal?: AbortSignal): Promise<string | null> {
    const byId = await this.nova.json<{ flavor: { id: string } }>(
      { method: 'GET', path: `/flavors/${encodeURIComponent(ref)}`, idempotent: true, signal },
      [200],
      [404],
    );
    if (byId) return byId.flavor.id;
    const all = await this.nova.json<{ flavors: { id: string; name: string }[] }>(
      { method: 'GET', path: '/flavors?is_public=None', idempotent: true, signal },
      [200],
    );
    return all?.flavors.find((f) => f.name === ref)?.id ?? null;
  }

  /** POST /servers → the new server's id. Not retried once it may have reached Nova (the caller looks first). */
  async create(s: CreateServer, signal?: AbortSignal): Promise<string> {
    const userData = Buffer.from(s.userData).toString('base64');
    if (userData.length > USER_DATA_MAX)
      throw new OpenStackError(
        'compute',
        'POST /servers',
        'invalid-answer',
        null,
        `user_data is ${userData.length} bytes base64-encoded; Nova takes at most ${USER_DATA_MAX}`,
        false,
      );
    const body = {
      server: {
        name: s.name,
        imageRef: s.imageRef,
        flavorRef: s.flavorRef,
        networks: Array.isArray(s.networks) ? s.networks.map((uuid) => ({ uuid })) : s.networks,
        user_data: userData,
        metadata: s.metadata,
        tags: s.tags,
        ...(s.securityGroups?.length ? { security_groups: s.securityGroups.map((name) => ({ name })) } : {}),
      },
    };
    const res = await this.nova.json<{ server: { id: string } }>(
      { method: 'POST', path: '/servers', body: JSON.stringify(body), idempotent: false, signal },
      [202],
    );
    if (typeof res?.server?.id !== 'string')
      throw new OpenStackError(
        'compute',
        'POST /servers',
        'invalid-answer',
        202,
        'no server id in the answer',
        false,
      );
    return res.server.id;
  }

  /** One server by id; null once it is gone (404, or DELETED for the moment before). */
  async server(id: string, signal?: AbortSignal): Promise<Server | null> {
    if (!UUID.test(id)) return null;
    const res = await this.nova.json<{ server: Server }>(
      { method: 'GET', path: `/servers/${id}`, idempotent: true, signal },
      [200],
      [404],
    );
    return res && res.server.status !== 'DELETED' ? res.server : null;
  }

  /**
   * Servers carrying every tag in `tags` (and named exactly `name`, if given), every page;
   * deleted ones are left out.
   */
  async servers(
    filter: { tags?: string[]; name?: string; allTenants?: boolean },
    signal?: AbortSignal,
  ): Promise<Server[]> {
    const out: Server[] = [];
    let marker: string | undefined;
    for (;;) {
      const q = new URLSearchParams({ limit: '200' });
      if (filter.tags?.length) q.set('tags', filter.tags.join(','));
      // Nova matches `name` as a regular expression: anchor it (VM names hold no metacharacter
      // but `-` and `.`, and `.` is escaped).
      if (filter.name !== undefined) q.set('name', `^${filter.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
      if (filter.allTenants) q.set('all_tenants', '1');
      if (marker) q.set('marker', marker);
      const res = await this.nova.json<{ servers: Server[] }>(
        { method: 'GET', path: `/servers/detail?${q}`, idempotent: true, signal },
        [200],
      );
      const page = res?.servers ?? [];
      for (const s of page)
        if (s.status !== 'DELETED' && (filter.name === undefined || s.name === filter.name)) out.push(s);
      if (page.length < 200) return out;
      marker = page.at(-1)!.id;
    }
  }

  /** DELETE; a server already gone is success. */
  async delete(id: string, signal?: AbortSignal): Promise<void> {
    await this.nova.json(
      { method: 'DELETE', path: `/servers/${id}`, idempotent: true, signal },
      [204],
      [404],
    );
  }

  /** The user_data a server was created with (admin only, microversion ≥ 2.3), decoded. */
  async userData(id: string, signal?: AbortSignal): Promise<string | null> {
    const res = await this.nova.json<{ server: { 'OS-EXT-SRV-ATTR:user_data'?: string | null } }>(
      { method: 'GET', path: `/servers/${id}`, idempotent: true, signal },
      [200],
      [404],
    );
    const data = res?.server['OS-EXT-SRV-ATTR:user_data'];
    return typeof data === 'string' ? Buffer.from(data, 'base64').toString() : null;
  }
}

// SpinW's request body, in every variant its workflows sent (notes/spinw-compat.md):
//   {"data": {"ghcontrol": "create", "servers": "linux, windows", "PAT": "…", "ID": "123_4"},
//    "repository": "owner/repo", "ref": …, "commit": …, "trigger": …, "workflow": …}
// `servers` may carry brackets/quotes/spaces ("[linux, windows]"), `linux-2` means kind `linux`,
// older workflows sent `"server": "linux"` and no ID. `data` may arrive as a JSON string.
import { parseLabel, parseLegacyId, parseRepository } from '../core/naming.ts';
import { badRequest } from './errors.ts';

export interface LegacyRequest {
  action: 'create' | 'destroy';
  repository: string;
  servers: string[];
  /** SpinW's ID; absent in the oldest variant (see key). */
  id: string | null;
  /** The identity key: ID, else `run<delivery>` (the action's delivery id is the run number). */
  key: string;
  /** Encrypted PAT as sent (`_` for newlines), or null. */
  pat: string | null;
}

export function parseServers(value: unknown, field: string): string[] {
  let items: unknown[];
  if (Array.isArray(value)) items = value;
  else if (typeof value === 'string') items = value.replace(/[[\]"'\s]/g, '').split(',');
  else throw badRequest(field, 'expected a comma-separated list such as "linux, windows"');
  const kinds = items
    .map((s) => (typeof s === 'string' ? s.trim() : s))
    .filter((s) => s !== '')
    .map((s, i) => {
      if (typeof s !== 'string') throw badRequest(`${field}.${i}`, 'expected a string');
      return parseLabel(s.split('-')[0], field).toLowerCase();
    });
  if (kinds.length === 0) throw badRequest(field, 'no server kind given');
  return [...new Set(kinds)];
}

export function parseLegacyBody(json: unknown, deliveryId: string | undefined): LegacyRequest {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw badRequest('body', 'expected a JSON object');
  const body = json as Record<string, unknown>;
  let data = body.data;
  if (typeof data === 'string') {
    try {
      data = JSON.parse(data);
    } catch {
      throw badRequest('data', 'not a JSON object');
    }
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    throw badRequest('data', 'required: an object with ghcontrol, servers, ID');
  const d = data as Record<string, unknown>;
  const action = d.ghcontrol;
  if (action === undefined) throw badRequest('data.ghcontrol', 'required: "create" or "destroy"');
  if (action !== 'create' && action !== 'destroy') {
    throw badRequest(
      'data.ghcontrol',
      `unknown action ${JSON.stringify(action)}: expected "create" or "destroy"`,
    );
  }
  const repository = parseRepository(body.repository).full;
  const servers =
    d.servers !== undefined
      ? parseServers(d.servers, 'data.servers')
      : d.server !== undefined
        ? parseServers(d.server, 'data.server')
        : null;
  if (!servers) throw badRequest('data.servers', 'required, e.g. "linux"');
  const id = d.ID === undefined || d.ID === null || d.ID === '' ? null : parseLegacyId(d.ID, 'data.ID');
  let key = id;
  if (!key) {
    if (!deliveryId || !/^[0-9]{1,20}$/.test(deliveryId)) {
      throw badRequest(
        'data.ID',
        'required (e.g. "${GITHUB_RUN_ID}_${GITHUB_RUN_NUMBER}") when X-GitHub-Delivery is not a run number',
      );
    }
    key = `run${deliveryId}`;
  }
  const pat = d.PAT === undefined || d.PAT === null || d.PAT === '' ? null : d.PAT;
  if (pat !== null && (typeof pat !== 'string' || pat.length > 4096))
    throw badRequest('data.PAT', 'expected the openssl-encrypted token text');
  return { action, repository, servers, id, key, pat };
}

// Identifiers that reach file paths, VM names, runner names and shell command lines are
// validated here, once, with allow-lists: nothing else gets through to the providers.
import { createHash } from 'node:crypto';

const OWNER = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/;
const REPO = /^[A-Za-z0-9._-]{1,100}$/;

export class InvalidIdentifier extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'InvalidIdentifier';
  }
}

/** `owner/repo` as GitHub allows it; `.`/`..` (path traversal) and anything else are refused. */
export function parseRepository(
  value: unknown,
  field = 'repository',
): { owner: string; repo: string; full: string } {
  if (typeof value !== 'string') throw new InvalidIdentifier(field, 'must be a string "owner/repo"');
  const parts = value.split('/');
  const [owner, repo] = parts;
  if (parts.length !== 2 || !owner || !repo || !OWNER.test(owner) || !REPO.test(repo) || /^\.+$/.test(repo)) {
    throw new InvalidIdentifier(
      field,
      `must be "owner/repo" with letters, digits, "-", "_", "." (got ${quote(value)})`,
    );
  }
  return { owner, repo, full: `${owner}/${repo}` };
}

/** A positive integer given as a number or a string of digits (GitHub run ids exceed 2^31). */
export function parsePositiveInt(value: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string' || !/^[0-9]{1,16}$/.test(text)) {
    throw new InvalidIdentifier(field, `must be a positive integer (got ${quote(value)})`);
  }
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1 || n > max)
    throw new InvalidIdentifier(field, `out of range (got ${text})`);
  return n;
}

export const LABEL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A runner/pool label: letters, digits, `.`, `_`, `-`; at most 64 characters. */
export function parseLabel(value: unknown, field = 'label'): string {
  if (typeof value !== 'string' || !LABEL.test(value) || value.includes('..')) {
    throw new InvalidIdentifier(field, `must match ${LABEL.source} (got ${quote(value)})`);
  }
  return value;
}

/** SpinW's `ID` (`<run id>_<run number>`), which also ends up in a runner label. */
export function parseLegacyId(value: unknown, field = 'ID'): string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(value)) {
    throw new InvalidIdentifier(field, `must be letters, digits, "_" or "-" (got ${quote(value)})`);
  }
  return value;
}

export const VM_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const VM_PREFIX = 'hatchery-';

export function isVmName(value: string): boolean {
  return VM_NAME.test(value) && value.startsWith(VM_PREFIX);
}

function slug(text: string, max: number): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, max)
    .replace(/-+$/, '');
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 6);
}

/**
 * The VM name is derived from its identity, so a repeated create maps to the same VM:
 * `hatchery-<label>-<key>-<hash of repository and identity>`; at most 63 characters,
 * `[a-z0-9-]` only (a valid hostname, file name and runner name).
 */
export function vmName(parts: {
  repository: string;
  label: string;
  key: string;
  generation?: number;
}): string {
  const gen = parts.generation && parts.generation > 1 ? `-g${parts.generation}` : '';
  const hash = shortHash(`${parts.repository}\n${parts.label}\n${parts.key}`);
  const head = `${VM_PREFIX}${slug(parts.label, 20)}-${slug(parts.key, 20)}`;
  const name = `${head}-${hash}${gen}`;
  if (!isVmName(name)) throw new InvalidIdentifier('name', `derived an invalid VM name ${name}`);
  return name;
}

function quote(value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

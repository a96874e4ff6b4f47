// Loading: defaults ← hatchery.toml ← .env ← HATCHERY_* environment variables, validated once.
// Errors name the key and where its value came from (the file, or the env variable).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { parse as parseToml } from 'smol-toml';
import { AppKeyError, readAppPrivateKey } from '../github/app-key.ts';
import { PROVIDER_KINDS } from '../providers/registry.ts';
import { configSchema, type Config } from './schema.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface LoadOptions {
  /** Explicit config file; else $HATCHERY_CONFIG; else ./hatchery.toml when present. */
  file?: string;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Read `.env` in cwd (default true). Variables already set in env win over `.env`. */
  dotenv?: boolean;
}

export interface LoadedConfig {
  config: Config;
  /** The config file read, if any. */
  file: string | null;
  /** Env variables that set a value (name → dotted key). */
  fromEnv: Record<string, string>;
  /** Things that work but should change (e.g. a deprecated section): shown by serve and config check. */
  warnings: string[];
}

/**
 * Sections whose scalar keys can be set as HATCHERY_<SECTION>_<KEY>; a nested section's name
 * is its dotted path (HATCHERY_GITHUB_APP_ID → github.app.id), listed before its parent.
 */
const ENV_SECTIONS = [
  'github.app',
  'server',
  'api',
  'control',
  'legacy',
  'github',
  'runner',
  'store',
  'workers',
  'reconcile',
  'limits',
  'ssh',
  'log',
];

function envValue(raw: string): unknown {
  if (/^(true|false)$/.test(raw)) return raw === 'true';
  if (/^-?\d+(\.\d+)?$/.test(raw) && raw.length < 16) return Number(raw);
  return raw;
}

export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const cwd = opts.cwd ?? process.cwd();
  let env = { ...(opts.env ?? process.env) };
  if (opts.dotenv !== false) {
    const dotenvPath = path.join(cwd, '.env');
    if (existsSync(dotenvPath)) env = { ...parseDotenv(readFileSync(dotenvPath)), ...env };
  }

  const explicit = opts.file ?? env.HATCHERY_CONFIG;
  const file = explicit
    ? path.resolve(cwd, explicit)
    : existsSync(path.join(cwd, 'hatchery.toml'))
      ? path.join(cwd, 'hatchery.toml')
      : null;
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(
        `${file}: cannot read the config file (${(e as NodeJS.ErrnoException).code ?? e})`,
      );
    }
    try {
      raw = parseToml(text) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`${file}: invalid TOML: ${(e as Error).message.split('\n')[0]}`);
    }
  }

  const warnings: string[] = [];
  const where = file ?? 'defaults';
  moveLegacyQemuSection(raw, where, warnings);

  const fromEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('HATCHERY_') || value === undefined || name === 'HATCHERY_CONFIG') continue;
    const rest = name.slice('HATCHERY_'.length).toLowerCase();
    if (rest === 'instance_id') {
      raw.instance_id = value;
      fromEnv[name] = 'instance_id';
      continue;
    }
    const providerKey = providerEnvKey(rest);
    if (providerKey) {
      const [instance, key] = providerKey;
      const providers = (raw.providers ??= instance === 'qemu' ? { qemu: { kind: 'qemu' } } : {}) as Record<
        string,
        Record<string, unknown>
      >;
      if (!providers[instance]) {
        throw new ConfigError(`env ${name}: there is no [providers.${instance}] section to set ${key} in`);
      }
      providers[instance][key] = envValue(value);
      fromEnv[name] = `providers.${instance}.${key}`;
      continue;
    }
    const section = ENV_SECTIONS.find((s) => rest.startsWith(`${s.replace('.', '_')}_`));
    if (!section) continue; // not ours (e.g. HATCHERY_TEST_*): ignore rather than fail
    const key = rest.slice(section.length + 1);
    let target: unknown = raw;
    for (const part of section.split('.')) {
      const parent = target as Record<string, unknown>;
      target = parent[part] ??= {};
      if (typeof target !== 'object' || target === null || Array.isArray(target)) break;
    }
    if (typeof target !== 'object' || target === null || Array.isArray(target)) continue;
    (target as Record<string, unknown>)[key] = envValue(value);
    fromEnv[name] = `${section}.${key}`;
  }

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const envByKey = Object.fromEntries(Object.entries(fromEnv).map(([n, k]) => [k, n]));
    const lines = parsed.error.issues.map((issue) => {
      const key = issue.path.map(String).join('.') || '(top level)';
      const source = envByKey[key] ? `env ${envByKey[key]}` : where;
      const message =
        issue.code === 'unrecognized_keys'
          ? `unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`
          : issue.message;
      return `${source}: ${key}: ${message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const config = parsed.data;
  // Relative paths are relative to the config file's directory (or cwd without a file).
  const base = file ? path.dirname(file) : cwd;
  config.store.path = path.resolve(base, config.store.path);
  config.ssh.state_dir = path.resolve(base, config.ssh.state_dir);
  for (const pool of config.pools) if (pool.prepare) pool.prepare.key = path.resolve(base, pool.prepare.key);
  const app = config.github.app;
  if (app) {
    app.private_key_file = path.resolve(base, app.private_key_file);
    // Checked now, so that `config check` and `serve` refuse a key GitHub would refuse later.
    try {
      readAppPrivateKey(app.private_key_file);
    } catch (e) {
      if (!(e instanceof AppKeyError)) throw e;
      const source = Object.entries(fromEnv).find(([, k]) => k === 'github.app.private_key_file')?.[0];
      throw new ConfigError(
        `invalid configuration:\n  ${source ? `env ${source}` : where}: github.app.private_key_file: ${e.message}`,
      );
    }
    if (!app.webhook_secret)
      warnings.push(
        `${where}: github.app.webhook_secret is not set: POST /hooks/github answers 503 (no autoscaling; the App still mints runners)`,
      );
    if (config.github.token)
      warnings.push(`${where}: github.app and github.token are both set: runners are minted through the App`);
  }
  for (const p of Object.values(config.providers)) {
    const settings = p.settings as Record<string, unknown>;
    for (const key of PROVIDER_KINDS[p.kind].pathKeys ?? []) {
      if (typeof settings[key] === 'string') settings[key] = path.resolve(base, settings[key]);
    }
  }
  return { config, file, fromEnv, warnings };
}

/**
 * `HATCHERY_PROVIDERS_<NAME>_<KEY>` → [name, key] (names with "-" cannot be spelt in an env
 * variable name); `HATCHERY_QEMU_<KEY>`, the spelling before providers had names, is
 * `providers.qemu.<key>`.
 */
function providerEnvKey(rest: string): [string, string] | null {
  if (rest.startsWith('qemu_')) return ['qemu', rest.slice('qemu_'.length)];
  const m = /^providers_([a-z0-9]+)_(.+)$/.exec(rest);
  return m ? [m[1]!, m[2]!] : null;
}

/**
 * Before providers had names, QEMU's settings were a top-level `[qemu]` section. It keeps
 * working as `[providers.qemu]` (kind = "qemu"), with a warning; next to a `[providers]` table
 * it is an error, since which instance it meant is a guess.
 */
function moveLegacyQemuSection(raw: Record<string, unknown>, where: string, warnings: string[]): void {
  if (raw.qemu === undefined) return;
  if (raw.providers !== undefined) {
    throw new ConfigError(
      `invalid configuration:\n  ${where}: qemu: the [qemu] section is now [providers.<name>] with kind = "qemu"; ` +
        'move its keys into your [providers.…] section',
    );
  }
  if (typeof raw.qemu !== 'object' || raw.qemu === null || Array.isArray(raw.qemu)) {
    throw new ConfigError(`invalid configuration:\n  ${where}: qemu: expected a table`);
  }
  raw.providers = { qemu: { kind: 'qemu', ...(raw.qemu as Record<string, unknown>) } };
  delete raw.qemu;
  warnings.push(
    `${where}: [qemu] is deprecated: rename it to [providers.qemu] and add kind = "qemu" (read as that)`,
  );
}

/** The effective config with secret values replaced by a marker (for `config check`, logs). */
export function maskSecrets(value: unknown, key = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => maskSecrets(v));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskSecrets(v, k)]));
  }
  // Case-insensitive: also an executable's env = { LAB_API_TOKEN = … } (command provider).
  if (typeof value === 'string' && /(token|secret|password)$/i.test(key)) return '********';
  return value;
}

export function publicUrl(config: Config, boundPort?: number): string {
  if (config.server.public_url) return config.server.public_url.replace(/\/+$/, '');
  return `http://${config.server.host}:${boundPort ?? config.server.port}`;
}

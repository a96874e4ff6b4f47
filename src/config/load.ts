// Loading: defaults ← hatchery.toml ← .env ← HATCHERY_* environment variables, validated once.
// Errors name the key and where its value came from (the file, or the env variable).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { parse as parseToml } from 'smol-toml';
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
}

/** Sections whose scalar keys can be set as HATCHERY_<SECTION>_<KEY>. */
const ENV_SECTIONS = [
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
  'qemu',
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

  const fromEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('HATCHERY_') || value === undefined || name === 'HATCHERY_CONFIG') continue;
    const rest = name.slice('HATCHERY_'.length).toLowerCase();
    if (rest === 'instance_id') {
      raw.instance_id = value;
      fromEnv[name] = 'instance_id';
      continue;
    }
    const section = ENV_SECTIONS.find((s) => rest.startsWith(`${s}_`));
    if (!section) continue; // not ours (e.g. HATCHERY_TEST_*): ignore rather than fail
    const key = rest.slice(section.length + 1);
    const target = (raw[section] ??= {}) as Record<string, unknown>;
    if (typeof target !== 'object' || Array.isArray(target)) continue;
    target[key] = envValue(value);
    fromEnv[name] = `${section}.${key}`;
  }

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const envByKey = Object.fromEntries(Object.entries(fromEnv).map(([n, k]) => [k, n]));
    const lines = parsed.error.issues.map((issue) => {
      const key = issue.path.map(String).join('.') || '(top level)';
      const where = envByKey[key] ? `env ${envByKey[key]}` : (file ?? 'defaults');
      const message =
        issue.code === 'unrecognized_keys'
          ? `unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`
          : issue.message;
      return `${where}: ${key}: ${message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const config = parsed.data;
  // Relative paths are relative to the config file's directory (or cwd without a file).
  const base = file ? path.dirname(file) : cwd;
  config.store.path = path.resolve(base, config.store.path);
  config.qemu.state_dir = path.resolve(base, config.qemu.state_dir);
  config.qemu.images_dir = path.resolve(base, config.qemu.images_dir);
  return { config, file, fromEnv };
}

/** The effective config with secret values replaced by a marker (for `config check`, logs). */
export function maskSecrets(value: unknown, key = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => maskSecrets(v));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskSecrets(v, k)]));
  }
  if (typeof value === 'string' && /(token|secret|password)$/.test(key)) return '********';
  return value;
}

export function publicUrl(config: Config, boundPort?: number): string {
  if (config.server.public_url) return config.server.public_url.replace(/\/+$/, '');
  return `http://${config.server.host}:${boundPort ?? config.server.port}`;
}

// The configuration's shape, defaults and validation (zod). Keys are the TOML file's keys
// (snake_case) so that docs, file, env variables and error messages all use one spelling.
import { z } from 'zod';
import { LABEL } from '../core/naming.ts';
import { trustSchema } from '../core/trust.ts';
import { guestOsSchema, NO_WINDOWS_GUESTS, poolRunnerSchema, SHA256_HEX } from '../guest/os.ts';
import { PROVIDER_KIND_NAMES, PROVIDER_KINDS, type ProviderKindName } from '../providers/registry.ts';
import { bootstrapMode, prepareSchema, sshPoolSchema, sshServiceSchema } from '../remote/config.ts';

const NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;
import { parseByteSize } from './bytes.ts';
import { checkTenantQuotas, limitsSchema } from './limits.ts';

const seconds = (def: number) => z.number().int().positive().default(def);
const timeouts = z
  .object({
    queue: seconds(3600).describe('max wait for capacity before the request fails'),
    provision: seconds(300).describe('max time provider.create may take'),
    boot: seconds(300).describe('VM created → runner registered'),
    idle: seconds(900).describe('runner registered → job started'),
    job: seconds(6 * 3600).describe('job started → job finished'),
    drain: seconds(60).describe('job finished → VM powered off by itself'),
  })
  .strict()
  .prefault({});

export const poolSchema = z
  .object({
    name: z.string().regex(NAME, 'lowercase letters, digits and "-", at most 32'),
    labels: z.array(z.string().regex(LABEL, 'letters, digits, ".", "_", "-"')).min(1),
    provider: z
      .string()
      .regex(NAME, 'the name of a [providers.<name>] section')
      .optional()
      .describe('default: the only provider, if there is one'),
    image: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'an image name')
      .default('tiny'),
    cpus: z.number().int().min(1).max(64).default(1),
    memory: z
      .number()
      .int()
      .min(64)
      .max(1024 * 1024)
      .default(256)
      .describe('MiB'),
    max_vms: z.number().int().min(1).default(4),
    channel: z
      .enum(['native', 'http'])
      .default('native')
      .describe("native: the provider's own guest channel (QEMU: virtio-serial), HTTP where it has none"),
    channel_url: z
      .string()
      .url()
      .optional()
      .describe("the service's base URL as this pool's guests reach it (default server.public_url)"),
    // The guests' OS and their runner download: src/guest/os.ts.
    os: guestOsSchema,
    runner: poolRunnerSchema,
    // SSH bootstrap and the prepare command: src/remote/config.ts.
    bootstrap: bootstrapMode,
    ssh: sshPoolSchema,
    prepare: prepareSchema.optional(),
    timeouts,
    // Which repositories, events and forks it serves: src/core/trust.ts.
    trust: trustSchema.optional(),
    // Warm pools (docs/adr/2026-12-02-warm-pools.md): VMs booted ahead, without a JIT config.
    min_idle: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe('VMs kept booted ahead, waiting for a job (within max_vms and limits.max_vms)'),
    warm_max_age: seconds(3600).describe('a warm VM no job took within this many seconds is replaced'),
  })
  // Other keys belong to the pool's provider kind (e.g. QEMU's network, forwards): checked below.
  .catchall(z.unknown());

const providerSchema = z
  .object({ kind: z.enum(PROVIDER_KIND_NAMES, { error: `one of ${PROVIDER_KIND_NAMES.join(', ')}` }) })
  .catchall(z.unknown());

export const configSchema = z
  .object({
    instance_id: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, 'lowercase letters, digits and "-"')
      .default('hatchery')
      .describe('ownership tag: this installation only ever lists and destroys VMs carrying it'),
    server: z
      .object({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8080),
        public_url: z.string().url().optional().describe('base of status URLs; default http://host:port'),
        body_limit: z
          .preprocess(
            (v) => (typeof v === 'number' ? String(v) : v),
            z.string().refine((s) => parseByteSize(s) !== null, 'a size such as "256kb", "1mb" or 65536'),
          )
          .default('256kb')
          .describe('larger request bodies answer 413 (refused from Content-Length, unread)'),
        // Only the time to *receive* a request is bounded: answers (long-polls) may take longer.
        // Node counts both from a connection's accept, and a burst's connections are all accepted
        // at once but read one after another: 2,000 concurrent creates on 2 loaded cores had
        // their last requests cut at 10 s though their clients had sent everything (ADR
        // request-limits).
        request_timeout: z
          .number()
          .positive()
          .default(60)
          .describe('seconds to receive a whole request, headers and body; else 408'),
        headers_timeout: z
          .number()
          .positive()
          .default(30)
          .describe('seconds to receive the request headers (slowloris); else 408'),
      })
      .strict()
      .refine((s) => s.headers_timeout <= s.request_timeout, {
        path: ['headers_timeout'],
        message: 'must not exceed server.request_timeout (the headers are part of the request)',
      })
      .prefault({}),
    api: z
      .object({ token: z.string().min(16, 'at least 16 characters').optional() })
      .strict()
      .prefault({}),
    control: z
      .object({ secret: z.string().min(16, 'at least 16 characters').optional() })
      .strict()
      .prefault({}),
    legacy: z
      .object({
        enabled: z.boolean().default(false),
        secret: z
          .string()
          .min(8)
          .optional()
          .describe("the webhook action's webhook_secret: X-Hub-Signature(-256) is required"),
        allow_unsigned: z
          .boolean()
          .default(false)
          .describe('accept unsigned legacy requests (SpinW receiver behaviour); only with no secret'),
        openssl_password: z.string().min(1).optional(),
        wait_for_ready: z.boolean().default(true),
        wait_timeout: seconds(1200),
      })
      .strict()
      .prefault({}),
    github: z
      .object({
        api_url: z.string().url().default('https://api.github.com'),
        token: z.string().min(1).optional().describe('PAT minting JIT runner configs for explicit requests'),
        runner_group_id: z.number().int().min(1).default(1),
        app: z
          .object({
            id: z.number().int().positive().describe("the App's numeric id (its settings page: App ID)"),
            private_key_file: z
              .string()
              .min(1)
              .describe('the .pem GitHub generated for the App; checked when the config is loaded'),
            webhook_secret: z
              .string()
              .min(16, 'at least 16 characters')
              .optional()
              .describe("the App's webhook secret: POST /hooks/github verifies X-Hub-Signature-256 with it"),
            redeliver_seconds: z
              .number()
              .int()
              .min(0)
              .default(60)
              .describe(
                'list failed webhook deliveries this often and redeliver those never received (0: off)',
              ),
            poll_seconds: z
              .number()
              .int()
              .min(0)
              .default(60)
              .describe("ask GitHub for queued jobs of the App's repositories this often (0: off)"),
          })
          .strict()
          .optional()
          .describe('a GitHub App: mints runners through installation tokens (preferred over token)'),
      })
      .strict()
      .prefault({}),
    runner: z
      .object({
        url: z.string().url().optional().describe('runner tarball URL, as the guest reaches it'),
        sha256: z.string().regex(SHA256_HEX, '64 lowercase hex digits').optional(),
      })
      .strict()
      .prefault({}),
    store: z
      .object({ path: z.string().default('var/hatchery.db') })
      .strict()
      .prefault({}),
    workers: z
      .object({
        concurrency: z.number().int().min(1).max(64).default(4),
        lease_seconds: seconds(600),
        poll_ms: z.number().int().min(10).default(250),
      })
      .strict()
      .prefault({}),
    reconcile: z
      .object({
        interval_seconds: seconds(15),
        ghost_sweep_every: z
          .number()
          .int()
          .min(1)
          .default(20)
          .describe(
            'look for ghost runner registrations on GitHub every Nth pass (one list call per repository)',
          ),
      })
      .strict()
      .prefault({}),
    // Capacity and fair share (core/quota.ts): src/config/limits.ts.
    limits: limitsSchema,
    ssh: sshServiceSchema,
    providers: z
      .record(z.string().regex(NAME, 'provider names: lowercase letters, digits and "-"'), providerSchema)
      .default({ qemu: { kind: 'qemu' } })
      .describe('[providers.<name>] sections: one provider instance each, of a kind'),
    log: z
      .object({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      })
      .strict()
      .prefault({}),
    pools: z.array(poolSchema).prefault([{ name: 'linux', labels: ['linux'] }]),
  })
  .strict()
  .superRefine((c, ctx) => {
    const names = new Set<string>();
    const labels = new Map<string, string>();
    c.pools.forEach((p, i) => {
      if (names.has(p.name))
        ctx.addIssue({ code: 'custom', path: ['pools', i, 'name'], message: `duplicate pool ${p.name}` });
      names.add(p.name);
      for (const l of p.labels) {
        const other = labels.get(l.toLowerCase());
        if (other) {
          ctx.addIssue({
            code: 'custom',
            path: ['pools', i, 'labels'],
            message: `label ${l} is also in pool ${other}`,
          });
        }
        labels.set(l.toLowerCase(), p.name);
      }
      if (p.min_idle > p.max_vms)
        ctx.addIssue({
          code: 'custom',
          path: ['pools', i, 'min_idle'],
          message: `must not exceed the pool's max_vms (${p.max_vms})`,
        });
      if (p.min_idle > 0 && p.bootstrap === 'ssh')
        ctx.addIssue({
          code: 'custom',
          path: ['pools', i, 'min_idle'],
          message:
            'warm VMs need the bootstrap from the provider (bootstrap = "ssh" starts it with a JIT config)',
        });
      if (p.os === 'windows') {
        // The SSH bootstrap starts `sh` in the guest; a Windows image runs windows.ps1 at boot.
        if (p.bootstrap === 'ssh')
          ctx.addIssue({
            code: 'custom',
            path: ['pools', i, 'bootstrap'],
            message:
              'os = "windows" pools take the bootstrap from their provider ("ssh" starts a POSIX shell)',
          });
        if (p.image === 'tiny' || p.image === 'tiny-ssh')
          ctx.addIssue({
            code: 'custom',
            path: ['pools', i, 'image'],
            message: `os = "windows" needs a Windows image (packer/windows-runner), not the Linux test guest ${p.image}`,
          });
      }
    });
    if (c.legacy.enabled && !c.legacy.secret && !c.legacy.allow_unsigned) {
      ctx.addIssue({
        code: 'custom',
        path: ['legacy', 'secret'],
        message:
          'required when legacy.enabled = true (the webhook action signs with its webhook_secret); ' +
          "legacy.allow_unsigned = true accepts unsigned requests instead, as SpinW's receiver did",
      });
    }
    checkTenantQuotas(c.limits, c.pools, ctx);
    if (c.legacy.enabled && !c.legacy.openssl_password) {
      ctx.addIssue({
        code: 'custom',
        path: ['legacy', 'openssl_password'],
        message: 'required when legacy.enabled = true (decrypts the PAT SpinW workflows send)',
      });
    }
  })
  .transform((c, ctx) => ({ ...c, ...resolveProviders(c, ctx) }));

/** One `[providers.<name>]` section, its settings validated by its kind. */
export interface ProviderInstanceConfig {
  name: string;
  kind: ProviderKindName;
  settings: unknown;
}

/**
 * Validates each provider section with its kind's settings and each pool's remaining keys with
 * its provider's pool settings; every problem is reported with its full key path.
 */
function resolveProviders(
  c: { providers: Record<string, z.output<typeof providerSchema>>; pools: z.output<typeof poolSchema>[] },
  ctx: z.RefinementCtx,
) {
  const report = (path: PropertyKey[], issues: z.core.$ZodIssue[]): void => {
    for (const issue of issues)
      ctx.issues.push({ ...issue, path: [...path, ...issue.path], input: undefined });
  };
  const providers: Record<string, ProviderInstanceConfig> = {};
  for (const [name, { kind, ...rest }] of Object.entries(c.providers)) {
    const r = PROVIDER_KINDS[kind].settings.safeParse(rest);
    if (r.success) providers[name] = { name, kind, settings: r.data };
    else report(['providers', name], r.error.issues);
  }
  const names = Object.keys(c.providers);
  const pools = c.pools.map((p, i) => {
    const { bootstrap, ssh, prepare, trust, ...rest } = p; // generic keys of src/remote/ (SSH), trust
    const {
      name,
      labels,
      provider,
      image,
      cpus,
      memory,
      max_vms,
      channel,
      channel_url,
      os,
      runner,
      timeouts,
      min_idle,
      warm_max_age,
      ...extra
    } = rest;
    const providerName = provider ?? (names.length === 1 ? names[0]! : '');
    let settings: unknown = {};
    const section = c.providers[providerName];
    if (!section) {
      ctx.issues.push({
        code: 'custom',
        path: ['pools', i, 'provider'],
        input: provider,
        message: provider
          ? `no [providers.${provider}] section (configured: ${names.join(', ') || 'none'})`
          : `required when several providers are configured (${names.join(', ')})`,
      });
    } else {
      const noWindows = os === 'windows' ? NO_WINDOWS_GUESTS[section.kind] : undefined;
      if (noWindows)
        ctx.issues.push({
          code: 'custom',
          path: ['pools', i, 'os'],
          input: os,
          message: `the ${section.kind} provider cannot serve os = "windows": ${noWindows} (docs/guest-protocol.md, "Windows guests")`,
        });
      const r = PROVIDER_KINDS[section.kind].poolSettings.safeParse(extra);
      if (r.success) settings = r.data;
      else report(['pools', i], r.error.issues);
    }
    return {
      name,
      labels,
      provider: providerName,
      image,
      cpus,
      memory,
      max_vms,
      channel,
      channel_url,
      os,
      runner,
      bootstrap,
      ssh,
      prepare,
      timeouts,
      trust,
      min_idle,
      warm_max_age,
      settings,
    };
  });
  return { providers, pools };
}

export type Config = z.infer<typeof configSchema>;
export type PoolConfig = Config['pools'][number];

/** Keys whose values are secrets: masked by `config check` and the logger. */
export const SECRET_KEYS = ['token', 'secret', 'openssl_password'] as const;

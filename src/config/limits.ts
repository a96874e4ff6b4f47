// `[limits]`: capacity and fair share across tenants (core/quota.ts applies them). Its own file
// so that the schema's other sections stay as they were. Why these rules:
// docs/adr/2026-12-02-fair-admission.md.
import { z } from 'zod';
import { vmWeight } from '../core/quota.ts';

const OWNER = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/;
const REPOSITORY = /^[A-Za-z0-9][A-Za-z0-9-]{0,38}\/[A-Za-z0-9._-]{1,100}$/;

const tenantsSchema = z
  .object({
    by: z
      .enum(['owner', 'repository'], { error: 'one of owner, repository' })
      .default('owner')
      .describe('what a tenant is: the owner (organization or user) of the repository, or the repository'),
    weight_exponent: z
      .number()
      .positive()
      .max(4)
      .default(1.25)
      .describe("a VM weighs (its pool's memory in GiB) ^ weight_exponent"),
    quota: z
      .number()
      .positive()
      .optional()
      .describe("each tenant's quota: the total weight of its VMs at once (default: none, fair share only)"),
    quotas: z
      .record(z.string(), z.number().positive())
      .default({})
      .describe('quotas of named tenants, instead of quota'),
  })
  .strict();

export const limitsSchema = z
  .object({
    max_vms: z.number().int().min(1).default(8).describe('VMs at once, across all pools'),
    max_provisioning: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        'VMs starting at once (being created or booting, until their runner is online); default: no cap',
      ),
    tenants: tenantsSchema
      .optional()
      .describe('fair share across tenants when capacity frees, and quotas; absent: oldest first'),
  })
  .strict()
  .prefault({});

export type LimitsConfig = z.output<typeof limitsSchema>;
export type TenantsConfig = NonNullable<LimitsConfig['tenants']>;

/** A tenant's quota (Infinity: none), names compared case-insensitively as GitHub does. */
export function quotaOf(t: TenantsConfig, tenant: string): number {
  const key = tenant.toLowerCase();
  for (const [name, q] of Object.entries(t.quotas)) if (name.toLowerCase() === key) return q;
  return t.quota ?? Infinity;
}

/**
 * Tenant names must be of their kind, and every quota must hold at least one VM of every pool:
 * a VM heavier than its tenant's quota would wait until its queue timeout, never to start.
 */
export function checkTenantQuotas(
  limits: LimitsConfig,
  pools: readonly { name: string; memory: number }[],
  ctx: z.RefinementCtx,
): void {
  const t = limits.tenants;
  if (!t) return;
  const shape = t.by === 'owner' ? OWNER : REPOSITORY;
  const example = t.by === 'owner' ? '"octo-org"' : '"octo-org/app"';
  const quotas: [PropertyKey[], number][] = t.quota === undefined ? [] : [[['quota'], t.quota]];
  for (const [name, q] of Object.entries(t.quotas)) {
    if (!shape.test(name))
      ctx.addIssue({
        code: 'custom',
        path: ['limits', 'tenants', 'quotas', name],
        message: `not a tenant name with by = "${t.by}" (e.g. ${example})`,
      });
    quotas.push([['quotas', name], q]);
  }
  for (const pool of pools) {
    const w = vmWeight(pool.memory, t.weight_exponent);
    for (const [path, q] of quotas) {
      if (w <= q + 1e-9) continue;
      ctx.addIssue({
        code: 'custom',
        path: ['limits', 'tenants', ...path],
        message: `${q} is less than one VM of pool ${pool.name} (weight ${round(w)} = (${pool.memory} MiB / 1024) ^ ${t.weight_exponent}): such a VM would never start`,
      });
    }
  }
}

const round = (x: number): string => String(Math.round(x * 1000) / 1000);

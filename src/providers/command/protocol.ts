// The external-command protocol, version 1 (docs/providers/command.md): the requests Hatchery
// writes to the executable's stdin and the zod schemas its stdout answers must match. Field
// names are snake_case, like the rest of Hatchery's external surfaces (config, HTTP API).
import path from 'node:path';
import { z } from 'zod';
import { isVmName } from '../../core/naming.ts';
import type { VmInfo, VmSpec } from '../provider.ts';

export const PROTOCOL_VERSION = 1;

export type Operation = 'create' | 'destroy' | 'get' | 'list' | 'console' | 'prepare';

/** What every request carries; `name` for the operations on one VM. */
export interface Request {
  version: typeof PROTOCOL_VERSION;
  operation: Operation;
  /** Ownership: the executable records it with each VM and only ever shows or touches VMs carrying it. */
  instance_id: string;
  /** The `[providers.<name>]` instance (one executable may serve several). */
  provider: string;
  name?: string;
  vm?: CreateSpec;
  image?: string;
}

/** The VM to create: the VmSpec, plus the pool's free-form `options`. */
export interface CreateSpec {
  name: string;
  pool: string;
  image: string;
  cpus: number;
  memory_mib: number;
  /** The script the guest runs at boot (POSIX sh). */
  bootstrap: string;
  /** NAME=VALUE pairs for the guest; may hold the one-shot JIT runner config (a secret). */
  guest_config: Record<string, string>;
  tags: Record<string, string>;
  options: Record<string, unknown>;
}

export function createSpec(spec: VmSpec, options: Record<string, unknown>): CreateSpec {
  return {
    name: spec.name,
    pool: spec.pool,
    image: spec.image,
    cpus: spec.cpus,
    memory_mib: spec.memoryMiB,
    bootstrap: spec.bootstrap,
    guest_config: spec.guestConfig,
    tags: spec.tags,
    options,
  };
}

// Unknown keys in answers are ignored (an executable may say more than Hatchery reads).
const channel = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('unix'),
    path: z.string().refine((p) => path.isAbsolute(p), 'must be an absolute path'),
  }),
  z.object({ kind: z.literal('http') }),
]);

const vm = z.object({
  name: z.string().refine(isVmName, 'not a valid VM name'),
  instance_id: z.string().min(1),
  status: z.enum(['running', 'stopped']),
  tags: z.record(z.string(), z.string()),
  created_at: z.iso.datetime({ offset: true }),
  channel: channel.optional(),
});
export type AnsweredVm = z.infer<typeof vm>;

export function toVmInfo(v: AnsweredVm): VmInfo {
  return {
    name: v.name,
    status: v.status,
    tags: v.tags,
    createdAt: v.created_at,
    ...(v.channel ? { channel: v.channel } : {}),
  };
}

/** A version the executable may state; any other than ours is refused. */
const version = z.literal(PROTOCOL_VERSION).optional();

/** Optional operations (console, prepare) the executable does not implement. */
const unsupported = z.object({ version, unsupported: z.literal(true) });

export const ANSWERS = {
  create: z.object({ version, vm }),
  get: z.object({ version, vm: vm.nullable() }),
  list: z.object({ version, vms: z.array(vm) }),
  destroy: z.object({ version }),
  console: z.union([unsupported, z.object({ version, console: z.string().nullable() })]),
  prepare: z.union([unsupported, z.object({ version })]),
} as const satisfies Record<Operation, z.ZodType>;

export type Answer<Op extends Operation> = z.infer<(typeof ANSWERS)[Op]>;

/** A failure the executable reports: `retryable` absent means it may be retried. */
export const errorAnswer = z.object({
  version,
  error: z.object({
    message: z.string().min(1),
    retryable: z.boolean().default(true),
  }),
});

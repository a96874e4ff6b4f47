// Every provider kind Hatchery can run. Adding a kind is its own folder plus one line here.
import { commandKind } from './command/kind.ts';
import type { ProviderKind } from './kind.ts';
import { memoryKind } from './memory/kind.ts';
import { openstackKind } from './openstack/kind.ts';
import { qemuKind } from './qemu/kind.ts';
import { vagrantKind } from './vagrant/kind.ts';

// Each kind is typed with its own settings; the table only needs the shape.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyProviderKind = ProviderKind<any, any>;

export const PROVIDER_KINDS = {
  qemu: qemuKind,
  memory: memoryKind,
  command: commandKind,
  vagrant: vagrantKind,
  openstack: openstackKind,
} as const satisfies Record<string, AnyProviderKind>;

export type ProviderKindName = keyof typeof PROVIDER_KINDS;
export const PROVIDER_KIND_NAMES = Object.keys(PROVIDER_KINDS) as ProviderKindName[];

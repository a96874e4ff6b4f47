// What a provider kind contributes: the settings of its `[providers.<name>]` sections, the pool
// keys it adds, and a factory. The registry (registry.ts) lists the kinds; config validation and
// the service build instances from it, so nothing outside a kind's folder knows its settings.
import type { z } from 'zod';
import type { Logger } from '../log.ts';
import type { Provider } from './provider.ts';

export interface ProviderDeps<PoolSettings> {
  /** The instance's name (the `[providers.<name>]` key). */
  name: string;
  /** Ownership tag: the instance lists and destroys only VMs carrying it. */
  instanceId: string;
  /** The pools this instance serves, with the pool keys this kind defines (validated). */
  pools: { name: string; settings: PoolSettings }[];
  log: Logger;
}

export interface ProviderKind<Settings = unknown, PoolSettings = unknown> {
  /** `[providers.<name>]` keys besides `kind`; strict (unknown keys are errors), with defaults. */
  settings: z.ZodType<Settings>;
  /** Pool keys this kind adds (e.g. QEMU's `network`, `forwards`); strict, with defaults. */
  poolSettings: z.ZodType<PoolSettings>;
  /** Settings holding file-system paths: resolved relative to the config file's directory. */
  pathKeys?: readonly string[];
  create(settings: Settings, deps: ProviderDeps<PoolSettings>): Provider;
}

/** Ties a kind's settings types to its factory (the registry holds kinds of different types). */
export function defineProviderKind<S, P>(kind: ProviderKind<S, P>): ProviderKind<S, P> {
  return kind;
}

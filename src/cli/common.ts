import type { Command } from 'commander';
import { loadConfig, type LoadedConfig } from '../config/load.ts';

/** The config named by the global --config option (or the defaults). */
export function configFrom(cmd: Command): LoadedConfig {
  const opts = cmd.optsWithGlobals<{ config?: string }>();
  return loadConfig({ file: opts.config });
}

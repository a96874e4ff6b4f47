// The `command` provider kind: an operator's executable drives the VMs (docs/providers/command.md).
import { z } from 'zod';
import { defineProviderKind } from '../kind.ts';
import { CommandProvider } from './provider.ts';

export const commandSettings = z
  .object({
    command: z
      .array(z.string().min(1))
      .min(1, 'the executable, then its arguments')
      .describe('argv of the executable (no shell); relative to working_dir, or a name looked up in PATH'),
    working_dir: z
      .string()
      .default('.')
      .describe("the executable's working directory (relative: to the config file's directory)"),
    timeout_seconds: z
      .number()
      .positive()
      .default(120)
      .describe('per call; then the executable and its process group are killed'),
    prepare_timeout_seconds: z
      .number()
      .positive()
      .default(3600)
      .describe('for `prepare` (making an image ready can take long)'),
    env: z
      .record(
        z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a variable name')
          .refine((k) => !k.startsWith('HATCHERY_'), 'HATCHERY_* variables are set by Hatchery'),
        z.string(),
      )
      .default({})
      .describe('variables for the executable, besides PATH, HOME, LANG… (shown by `config check`)'),
    guest_channel: z
      .enum(['http', 'unix'])
      .default('http')
      .describe(
        "http: guests call the service's HTTP guest channel (URL and token in their config); " +
          'unix: the executable answers each VM with a unix socket channel (as the sample does)',
      ),
  })
  .strict();

export const commandPoolSettings = z
  .object({
    options: z
      .record(z.string(), z.unknown())
      .default({})
      .describe("free-form: passed to the executable's create as vm.options"),
  })
  .strict();

export type CommandSettings = z.infer<typeof commandSettings>;
export type CommandPoolSettings = z.infer<typeof commandPoolSettings>;

export const commandKind = defineProviderKind<CommandSettings, CommandPoolSettings>({
  settings: commandSettings,
  poolSettings: commandPoolSettings,
  pathKeys: ['working_dir'],
  create(settings, deps) {
    const options = new Map(deps.pools.map((p) => [p.name, p.settings.options]));
    return new CommandProvider({
      name: deps.name,
      instanceId: deps.instanceId,
      command: settings.command,
      cwd: settings.working_dir,
      env: settings.env,
      timeoutMs: settings.timeout_seconds * 1000,
      prepareTimeoutMs: settings.prepare_timeout_seconds * 1000,
      poolOptions: (pool) => options.get(pool) ?? {},
      ...(settings.guest_channel === 'unix' ? { nativeChannel: 'unix' as const } : {}),
      log: deps.log,
    });
  },
});

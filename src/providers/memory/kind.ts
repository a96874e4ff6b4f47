// The `memory` provider kind: VMs that exist only as records (scale tests, benchmarks).
import { z } from 'zod';
import { defineProviderKind } from '../kind.ts';
import { emulatorHooks } from './emulator-client.ts';
import { MemoryProvider } from './provider.ts';

export const memorySettings = z
  .object({
    images: z.array(z.string().min(1)).min(1).default(['tiny']).describe('image names that exist'),
    create_ms: z.number().int().min(0).default(0).describe('how long a create takes'),
    guest_emulator: z
      .string()
      .url()
      .optional()
      .describe('hand each VM to this guest emulator (tests, benchmarks): its guest then reports'),
  })
  .strict();

export const memoryKind = defineProviderKind({
  settings: memorySettings,
  poolSettings: z.object({}).strict(),
  create: (settings, deps) =>
    new MemoryProvider({
      instanceId: deps.instanceId,
      images: settings.images,
      createMs: settings.create_ms,
      ...(settings.guest_emulator ? emulatorHooks(settings.guest_emulator) : {}),
    }),
});

// The `qemu` provider kind: its settings, the pool keys it adds, and how an instance is built.
import { z } from 'zod';
import { defineProviderKind } from '../kind.ts';
import type { NetworkSpec } from './command-line.ts';
import { imageResolver } from './images/resolve.ts';
import { QemuProvider } from './provider.ts';

const hostPort = z
  .string()
  .regex(/^(?:\d{1,3}\.){3}\d{1,3}:\d{1,5}$/, 'must be "a.b.c.d:port" (IPv4 address and port)');

export const qemuSettings = z
  .object({
    binary: z.string().default('qemu-system-x86_64'),
    accel: z.enum(['auto', 'kvm', 'tcg']).default('auto'),
    state_dir: z
      .string()
      .default('var/qemu')
      .describe('one directory per VM (pid, sockets, console, overlay)'),
    images_dir: z.string().default('var/images'),
    keep_console_logs: z
      .number()
      .int()
      .min(0)
      .default(200)
      .describe('console logs of destroyed VMs kept for `hatchery vm logs` (newest first)'),
  })
  .strict();

const forward = z
  .object({
    guest: hostPort.describe('address:port the guest connects to (a slirp address, e.g. 10.0.2.100:80)'),
    host: hostPort.describe('host address:port it is forwarded to (loopback)'),
  })
  .strict();

export const qemuPoolSettings = z
  .object({
    network: z
      .enum(['restricted', 'open'])
      .default('restricted')
      .describe('restricted: no network but the forwards; open: outbound access'),
    forwards: z.array(forward).default([]),
  })
  .strict();

export type QemuSettings = z.infer<typeof qemuSettings>;
export type QemuPoolSettings = z.infer<typeof qemuPoolSettings>;

export const qemuKind = defineProviderKind<QemuSettings, QemuPoolSettings>({
  settings: qemuSettings,
  poolSettings: qemuPoolSettings,
  pathKeys: ['state_dir', 'images_dir'],
  create(settings, deps) {
    const networks = new Map<string, NetworkSpec>(
      deps.pools.map((p) => [p.name, { mode: p.settings.network, forwards: p.settings.forwards }]),
    );
    return new QemuProvider({
      stateDir: settings.state_dir,
      instanceId: deps.instanceId,
      binary: settings.binary,
      accel: settings.accel,
      keepConsoleLogs: settings.keep_console_logs,
      resolveImage: imageResolver(settings.images_dir),
      onProbe: (probe) =>
        deps.log.info(
          { provider: deps.name, kvm: probe.usable, reason: probe.reason, ms: probe.ms },
          'KVM probe (accel = auto)',
        ),
      network: (pool) => networks.get(pool) ?? { mode: 'restricted', forwards: [] },
    });
  },
});

// The `vagrant` provider kind: Vagrant + vagrant-libvirt, one project dir per VM.
import { z } from 'zod';
import { packageFile } from '../../package-files.ts';
import { defineProviderKind } from '../kind.ts';
import { qemuPoolSettings } from '../qemu/kind.ts';
import { parsePortRange } from './ports.ts';
import { VagrantProvider } from './provider.ts';

/** The project's top-level Vagrantfile. */
export const PROJECT_VAGRANTFILE = packageFile('Vagrantfile');

const seconds = (def: number) => z.number().int().min(1).max(86_400).default(def);

export const vagrantSettings = z
  .object({
    vagrant: z.string().min(1).default('vagrant').describe('the vagrant executable'),
    state_dir: z
      .string()
      .default('var/vagrant')
      .describe('one Vagrant project dir per VM, and VAGRANT_HOME (vagrant.d/: the boxes)'),
    images_dir: z.string().default('var/images').describe('where the `tiny` box is built'),
    libvirt_uri: z
      .string()
      .min(1)
      .default('qemu:///system')
      .describe('scripts/libvirt.sh prints the URI of the private libvirtd it starts'),
    vagrantfile: z.string().default(PROJECT_VAGRANTFILE).describe('copied into every project dir'),
    ssh_ports: z
      .string()
      .default('2200-2999')
      .refine((v) => {
        try {
          parsePortRange(v);
          return true;
        } catch {
          return false;
        }
      }, 'must be "FROM-TO" within 1024-65535')
      .describe('host ports (127.0.0.1) forwarded to the guests’ sshd, one per VM'),
    up_timeout: seconds(600).describe('seconds for `vagrant up` (boot and provisioning)'),
    destroy_timeout: seconds(300),
    status_timeout: seconds(120),
    keep_console_logs: z.number().int().min(0).default(200),
  })
  .strict();

export type VagrantSettings = z.infer<typeof vagrantSettings>;
// The guest's slirp network is QEMU's, with the same keys and meaning (`network`, `forwards`).
export type VagrantPoolSettings = z.infer<typeof qemuPoolSettings>;

export const vagrantKind = defineProviderKind<VagrantSettings, VagrantPoolSettings>({
  settings: vagrantSettings,
  poolSettings: qemuPoolSettings,
  pathKeys: ['state_dir', 'images_dir', 'vagrantfile'],
  create(settings, deps) {
    const networks = new Map(
      deps.pools.map((p) => [p.name, { mode: p.settings.network, forwards: p.settings.forwards }]),
    );
    return new VagrantProvider({
      stateDir: settings.state_dir,
      imagesDir: settings.images_dir,
      instanceId: deps.instanceId,
      libvirtUri: settings.libvirt_uri,
      vagrantfile: settings.vagrantfile,
      vagrant: settings.vagrant,
      sshPorts: parsePortRange(settings.ssh_ports),
      network: (pool) => networks.get(pool) ?? { mode: 'restricted', forwards: [] },
      timeouts: {
        upMs: settings.up_timeout * 1000,
        destroyMs: settings.destroy_timeout * 1000,
        statusMs: settings.status_timeout * 1000,
      },
      keepConsoleLogs: settings.keep_console_logs,
      onEvent: (fields, message) => deps.log.info(fields, message), // its logger names the provider
    });
  },
});

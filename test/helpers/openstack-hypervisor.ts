// The hypervisor Nova's fake driver does not have. Nova makes servers ACTIVE without running
// anything; this stand-in watches the cloud as its admin, and for each new ACTIVE server reads
// the user_data Nova keeps and boots it in a tiny QEMU guest (the QEMU provider's, TCG), as a
// cloud image's cloud-init would run it. The guest's network plays the cloud's: slirp, forwards
// to the service's HTTP guest channel and to the GitHub stand-in on the host's loopback. When
// the server is deleted, its guest is killed, as a hypervisor would. Nothing else is stood in
// for: Keystone, Nova, Glance, Neutron are real, and so is everything the guest does.
import { mkdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NetworkSpec } from '../../src/providers/qemu/command-line.ts';
import { imageResolver } from '../../src/providers/qemu/images/resolve.ts';
import { QemuProvider } from '../../src/providers/qemu/provider.ts';
import { IMAGES_DIR } from './images.ts';
import type { TestCloud } from './openstack.ts';
import { qemuPidsUnder } from './processes.ts';

/** The guest's address on slirp: what a pool's `guest_net` gives it (the cloud's DHCP would). */
export const STAND_IN_GUEST_NET = 'static:10.0.2.15/24,10.0.2.2';

export class HypervisorStandIn {
  private readonly qemu: QemuProvider;
  /** Server id → its guest's name (the server's name). */
  private readonly guests = new Map<string, string>();
  private readonly booting = new Map<string, Promise<unknown>>();
  /** Names of the servers Nova showed at the last look. */
  private servers: string[] = [];
  /** Server name → the ids of every server of that name it ever saw (duplicates show here). */
  private readonly seen = new Map<string, Set<string>>();
  private stopped = false;
  private readonly loop: Promise<void>;
  readonly errors: string[] = [];

  constructor(
    private readonly cloud: TestCloud,
    readonly stateDir: string,
    network: NetworkSpec,
  ) {
    mkdirSync(stateDir, { recursive: true });
    this.qemu = new QemuProvider({
      stateDir,
      instanceId: 'openstack-hypervisor',
      accel: 'tcg',
      resolveImage: imageResolver(IMAGES_DIR),
      network: () => network,
    });
    this.loop = this.watch();
  }

  private async watch(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.look();
      } catch (e) {
        // Nova down (a fault test): look again later.
        this.errors.push((e as Error).message);
      }
      await sleep(300);
    }
  }

  private async look(): Promise<void> {
    const servers = await this.cloud.allServers();
    this.servers = servers.map((s) => s.name);
    const live = new Set(servers.map((s) => s.id));
    for (const s of servers) this.seen.set(s.name, (this.seen.get(s.name) ?? new Set()).add(s.id));
    for (const s of servers) {
      // Only Hatchery's servers get a guest (a benchmark's raw servers need none).
      if (s.status !== 'ACTIVE' || this.guests.has(s.id) || !s.metadata?.['hatchery.instance']) continue;
      this.guests.set(s.id, s.name);
      const userData = await this.cloud.admin.userData(s.id);
      if (userData === null) continue; // nothing to run (the guest would idle)
      const boot = this.qemu
        .create({
          name: s.name,
          pool: 'openstack',
          image: 'tiny',
          cpus: 1,
          memoryMiB: 256,
          bootstrap: userData,
          guestConfig: {},
          tags: { 'openstack.server': s.id },
        })
        .catch((e: unknown) => this.errors.push(`boot ${s.name}: ${(e as Error).message}`))
        .finally(() => this.booting.delete(s.id));
      this.booting.set(s.id, boot);
    }
    for (const [id, name] of this.guests) {
      if (live.has(id)) continue;
      await this.booting.get(id);
      await this.qemu.destroy(name);
      this.guests.delete(id);
    }
  }

  /** Ids of every server named `name` seen so far (one per create that reached Nova). */
  serversSeen(name: string): string[] {
    return [...(this.seen.get(name) ?? [])];
  }

  /** The guest of a server, its console (what the bootstrap printed). */
  console(name: string): Promise<string | null> {
    return this.qemu.console(name);
  }

  /** Stops watching and kills every guest it runs. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await Promise.all(this.booting.values());
    for (const vm of await this.qemu.list()) await this.qemu.destroy(vm.name);
  }

  /** What a VM may leave here: servers in Nova (at the last look), guests still running. */
  leftovers(): { servers: string[]; guests: number[] } {
    return { servers: this.servers, guests: qemuPidsUnder(this.stateDir) };
  }
}

// The hypervisor of the OpenStack burst bench (bench/openstack-burst.ts): at 100 servers on 2
// cores, 100 TCG guests (test/helpers/openstack-hypervisor.ts boots one per server) would leave
// no CPU for anything else, so each server's guest is an emulated one (test/fakes/guest: it
// speaks the HTTP guest channel to the service and the runner protocol to the GitHub stand-in),
// given the guest config its user_data carries. Nova, its database and its fake driver stay real.
//
// Servers are found in Nova's own database (the cell's `instances` table: what nova-compute hands
// its driver, user_data included), not through nova-api: with 100 servers, one all-tenants
// listing cost nova-api and Neutron 1.5–3.7 s, and the bench counts their CPU as OpenStack's
// work for Hatchery. A look costs MariaDB a few ms (the bench reports MariaDB apart).
import { execFile } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { GuestEmulator } from '../fakes/guest/emulator.ts';

const run = promisify(execFile);

/**
 * The guest config a server's user_data carries (src/providers/openstack/user-data.ts writes it
 * as a quoted here-document to "$d/config"): what the bootstrap would read in the guest.
 */
export function guestConfigOf(userData: string): Record<string, string> {
  const lines = userData.split('\n');
  /** The index of the line ending the here-document that `lines[at]` opens into `file`. */
  const hereDoc = (at: number, file: string): number => {
    const m = /^cat >"\$d\/([a-z.]+)" <<'(HATCHERY_EOF_[0-9a-f]+)'$/.exec(lines[at] ?? '');
    if (m?.[1] !== file) throw new Error(`user_data: no here-document of ${file} at line ${at + 1}`);
    const end = lines.indexOf(m[2]!, at + 1);
    if (end < 0) throw new Error(`user_data: ${file}'s here-document does not end`);
    return end;
  };
  // The bootstrap comes first: skipped whole (it may hold any line but its delimiter).
  const bootstrapEnd = hereDoc(
    lines.findIndex((l) => l.startsWith('cat >"$d/bootstrap.sh"')),
    'bootstrap.sh',
  );
  const configEnd = hereDoc(bootstrapEnd + 1, 'config');
  const config: Record<string, string> = {};
  for (const line of lines.slice(bootstrapEnd + 2, configEnd)) {
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`guest config: not NAME=VALUE: ${JSON.stringify(line.slice(0, 40))}`);
    config[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return config;
}

export class EmulatedHypervisor {
  /** Server uuid → its guest's name (the server's name). */
  private readonly guests = new Map<string, string>();
  private stopped = false;
  private readonly loop: Promise<void>;
  readonly errors: string[] = [];

  constructor(
    /** The cloud's directory (scripts/openstack.sh up DIR): its MariaDB socket is DIR/run/mysql.sock. */
    private readonly cloudDir: string,
    private readonly emulator: GuestEmulator,
    private readonly intervalMs = 500,
  ) {
    this.loop = this.watch();
  }

  private async watch(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.look();
      } catch (e) {
        this.errors.push((e as Error).message);
      }
      await sleep(this.intervalMs);
    }
  }

  /** Tab-separated rows of a query as MariaDB's root (socket authentication). */
  private async query(sql: string): Promise<string[][]> {
    const socket = path.join(this.cloudDir, 'run', 'mysql.sock');
    const { stdout } = await run(
      'mariadb',
      ['--no-defaults', '-S', socket, '-uroot', '-N', '-B', '-e', sql],
      {
        maxBuffer: 1 << 26,
      },
    );
    return stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t'));
  }

  private async look(): Promise<void> {
    // Only Hatchery's servers (metadata hatchery.instance) get a guest, once Nova has made them
    // ACTIVE; a deleted one (soft-deleted row) loses its guest, as a hypervisor kills the domain.
    const rows = await this.query(
      'SELECT i.uuid, i.display_name, i.user_data FROM nova.instances i JOIN nova.instance_metadata m ' +
        "ON m.instance_uuid = i.uuid AND m.deleted = 0 AND m.`key` = 'hatchery.instance' " +
        "WHERE i.deleted = 0 AND i.vm_state = 'active'",
    );
    const live = new Set(rows.map((r) => r[0]!));
    for (const [uuid, name, userData] of rows) {
      if (this.guests.has(uuid!)) continue;
      this.guests.set(uuid!, name!);
      if (!userData || userData === 'NULL') continue; // nothing to run: the guest would idle
      try {
        await this.emulator.add(name!, guestConfigOf(Buffer.from(userData, 'base64').toString('utf8')));
      } catch (e) {
        this.errors.push(`boot ${name}: ${(e as Error).message}`);
      }
    }
    for (const [uuid, name] of this.guests) {
      if (live.has(uuid)) continue;
      this.emulator.remove(name);
      this.guests.delete(uuid);
    }
  }

  /** Servers in Nova's database not deleted yet (any project, any state). */
  async serversLeft(): Promise<number> {
    const rows = await this.query('SELECT COUNT(*) FROM nova.instances WHERE deleted = 0');
    return Number(rows[0]?.[0] ?? NaN);
  }

  /** Guests of servers still in Nova. */
  running(): string[] {
    return [...this.guests.values()];
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    for (const name of this.guests.values()) this.emulator.remove(name);
    this.guests.clear();
  }
}

// A real OpenStack for a test file (scripts/openstack.sh up in a temporary directory, down at the
// end), with an admin's view of it for the assertions: every server of every project, user_data,
// quotas; and the faults the tests inject (a service held with SIGSTOP, stopped, started again).
import { execFile } from 'node:child_process';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { after, before } from 'node:test';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Compute, type Server } from '../../src/providers/openstack/compute.ts';
import { OpenStackHttp } from '../../src/providers/openstack/http.ts';
import { Keystone, type Credentials } from '../../src/providers/openstack/keystone.ts';
import { ServiceClient } from '../../src/providers/openstack/service.ts';
import type { OpenStackProviderOptions } from '../../src/providers/openstack/provider.ts';
import { pidsWithArg } from './processes.ts';

const run = promisify(execFile);
export const OPENSTACK_SCRIPT = fileURLToPath(new URL('../../scripts/openstack.sh', import.meta.url));

/** DIR/cloud.json, written by `scripts/openstack.sh up`. */
export interface CloudFile {
  auth_url: string;
  region: string;
  admin: { user: string; password: string; project: string };
  member: { user: string; user_id: string; password: string; project: string; project_id: string };
  flavor: string;
  image: string;
  image_id: string;
  network: string;
  network_id: string;
}

/** The ports the script's services listen on (all on 127.0.0.1). */
export const CLOUD_PORTS = [3306, 4369, 5000, 5672, 8774, 8778, 9292, 9696, 25672];

export const fastHttp = { timeoutMs: 15_000, retryForMs: 20_000, baseDelayMs: 100, maxDelayMs: 1000 };

export class TestCloud {
  readonly admin: Compute;
  readonly adminKeystone: Keystone;
  /** How long `up` took (s): reported by the tests as the CI time this setup adds. */
  upSeconds = 0;
  /** Not ours to stop (HATCHERY_TEST_OPENSTACK). */
  private shared = false;

  private constructor(
    readonly dir: string,
    readonly file: CloudFile,
  ) {
    this.adminKeystone = new Keystone(new OpenStackHttp(fastHttp), {
      authUrl: file.auth_url,
      // Fault tests add a region whose compute endpoint is a proxy: the admin never uses it.
      region: file.region,
      credentials: {
        method: 'password',
        username: file.admin.user,
        userDomain: 'Default',
        password: file.admin.password,
        project: file.admin.project,
        projectDomain: 'Default',
      },
    });
    this.admin = new Compute(this.adminKeystone);
  }

  /**
   * Starts a cloud in `dir`; or, with HATCHERY_TEST_OPENSTACK set to the directory of one already
   * up (`scripts/openstack.sh up DIR`, for working on the tests), uses that one and leaves it up.
   */
  static async start(dir: string): Promise<TestCloud> {
    const existing = process.env.HATCHERY_TEST_OPENSTACK;
    if (existing) return TestCloud.open(existing, { shared: true });
    const t0 = Date.now();
    try {
      await run(OPENSTACK_SCRIPT, ['up', dir], { maxBuffer: 1 << 24 });
    } catch (e) {
      // What was started goes, whatever failed.
      await run(OPENSTACK_SCRIPT, ['down', dir]).catch(() => undefined);
      throw new Error(`scripts/openstack.sh up failed: ${(e as { stderr?: string }).stderr ?? String(e)}`);
    }
    const cloud = TestCloud.open(dir, { shared: false });
    cloud.upSeconds = (Date.now() - t0) / 1000;
    return cloud;
  }

  /** The cloud up in `dir`; `shared`: another owner stops it (stop() then leaves it up). */
  static open(dir: string, opts: { shared: boolean }): TestCloud {
    const cloud = new TestCloud(
      dir,
      JSON.parse(readFileSync(path.join(dir, 'cloud.json'), 'utf8')) as CloudFile,
    );
    cloud.shared = opts.shared;
    return cloud;
  }

  /** Stops everything; returns what is left (processes of the cloud, listening ports). */
  async stop(): Promise<string[]> {
    if (this.shared) return [];
    const groups = this.groups();
    const left: string[] = [];
    await run(OPENSTACK_SCRIPT, ['down', this.dir]).catch((e: { stderr?: string }) =>
      left.push(`down failed: ${e.stderr ?? String(e)}`),
    );
    for (const [svc, pgid] of groups) if (groupAlive(pgid)) left.push(`${svc} (process group ${pgid})`);
    for (const pid of pidsWithArg(this.dir)) left.push(`process ${pid} naming ${this.dir}`);
    for (const port of CLOUD_PORTS) if (await listening(port)) left.push(`port ${port} still listening`);
    return left;
  }

  /** Service name → process group, from DIR/run/*.pid. */
  groups(): Map<string, number> {
    const run = path.join(this.dir, 'run');
    const out = new Map<string, number>();
    if (!existsSync(run)) return out;
    for (const f of readdirSync(run))
      if (f.endsWith('.pid') && f !== 'mysqld.pid')
        out.set(f.slice(0, -4), Number(readFileSync(path.join(run, f), 'utf8')));
    return out;
  }

  /** Freezes a service's processes (SIGSTOP to its group); the result lets it go on. */
  hold(service: string): () => void {
    const pgid = this.groups().get(service);
    if (!pgid) throw new Error(`${service} is not running`);
    process.kill(-pgid, 'SIGSTOP');
    return () => process.kill(-pgid, 'SIGCONT');
  }

  async stopService(service: string): Promise<void> {
    await run(OPENSTACK_SCRIPT, ['stop', this.dir, service]);
  }

  async startService(service: string): Promise<void> {
    await run(OPENSTACK_SCRIPT, ['start', this.dir, service]);
  }

  memberCredentials(): Credentials {
    return {
      method: 'password',
      username: this.file.member.user,
      userDomain: 'Default',
      password: this.file.member.password,
      project: this.file.member.project,
      projectDomain: 'Default',
    };
  }

  /** Provider options for the member user of project `hatchery`, polling fast. */
  providerOptions(
    instanceId: string,
    more: Partial<OpenStackProviderOptions> = {},
  ): OpenStackProviderOptions {
    return {
      instanceId,
      keystone: {
        authUrl: this.file.auth_url,
        credentials: this.memberCredentials(),
        region: this.file.region,
      },
      http: fastHttp,
      placement: () => ({
        flavor: this.file.flavor,
        network: this.file.network,
        guestNet: 'none',
        securityGroups: [],
      }),
      buildTimeoutMs: 120_000,
      deleteTimeoutMs: 60_000,
      pollMs: 200,
      ...more,
    };
  }

  /** Every server of every project with that name (deleting ones included), as the admin sees them. */
  serversNamed(name: string): Promise<Server[]> {
    return this.admin.servers({ name, allTenants: true });
  }

  allServers(): Promise<Server[]> {
    return this.admin.servers({ allTenants: true });
  }

  /** Ports of servers (device_owner compute:*) whose server no longer exists. */
  async orphanPorts(): Promise<string[]> {
    const neutron = new ServiceClient(this.adminKeystone, 'network', '/v2.0');
    const res = await neutron.json<{ ports: { id: string; device_id: string; device_owner: string }[] }>(
      { method: 'GET', path: '/ports', idempotent: true },
      [200],
    );
    const servers = new Set((await this.allServers()).map((s) => s.id));
    return (res?.ports ?? [])
      .filter((p) => p.device_owner.startsWith('compute:') && !servers.has(p.device_id))
      .map((p) => `port ${p.id} of gone server ${p.device_id}`);
  }

  /**
   * A region whose compute endpoint is `computeUrl` (a fault proxy in front of Nova), its image
   * and network endpoints Glance's and Neutron's.
   */
  async addRegion(region: string, computeUrl: string): Promise<void> {
    const t = await this.adminKeystone.token();
    const call = async (p: string, body: unknown) => {
      const res = await fetch(`${this.file.auth_url}${p}`, {
        method: 'POST',
        headers: { 'X-Auth-Token': t.value, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (res.status !== 201) throw new Error(`POST ${p}: ${res.status} ${await res.text()}`);
      return (await res.json()) as Record<string, { id: string }>;
    };
    await call('/regions', { region: { id: region } });
    const services = (await (
      await fetch(`${this.file.auth_url}/services`, { headers: { 'X-Auth-Token': t.value } })
    ).json()) as { services: { id: string; type: string }[] };
    const urls: Record<string, string> = {
      compute: computeUrl,
      image: 'http://127.0.0.1:9292',
      network: 'http://127.0.0.1:9696',
    };
    for (const s of services.services) {
      const url = urls[s.type];
      if (url)
        await call('/endpoints', {
          endpoint: { service_id: s.id, interface: 'public', url, region_id: region },
        });
    }
  }

  /**
   * Sets the member's password to what it is: Keystone then revokes every token the user holds
   * (what a token expiring mid-run looks like to a client).
   */
  async revokeMemberTokens(): Promise<void> {
    const t = await this.adminKeystone.token();
    const res = await fetch(`${this.file.auth_url}/users/${this.file.member.user_id}`, {
      method: 'PATCH',
      headers: { 'X-Auth-Token': t.value, 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: { password: this.file.member.password } }),
    });
    if (res.status !== 200) throw new Error(`PATCH user: ${res.status} ${await res.text()}`);
  }

  /** Sets project `hatchery`'s instance quota (-1: unlimited). */
  async setInstanceQuota(n: number): Promise<void> {
    const nova = new ServiceClient(this.adminKeystone, 'compute');
    await nova.json(
      {
        method: 'PUT',
        path: `/os-quota-sets/${this.file.member.project_id}`,
        body: JSON.stringify({ quota_set: { instances: n } }),
        idempotent: true,
      },
      [200],
    );
  }

  /** A flavor no host can take (the fake host offers 800,000 MB at a ratio of 1.5): servers of it go to ERROR. */
  async hugeFlavor(): Promise<string> {
    const nova = new ServiceClient(this.adminKeystone, 'compute');
    const existing = await this.admin.flavorId('hatchery.huge');
    if (existing) return 'hatchery.huge';
    await nova.json(
      {
        method: 'POST',
        path: '/flavors',
        body: JSON.stringify({ flavor: { name: 'hatchery.huge', ram: 4_000_000, vcpus: 1, disk: 1 } }),
        idempotent: false,
      },
      [200],
    );
    return 'hatchery.huge';
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/**
 * A test file's cloud: started before its tests (handed over through `set`), stopped after them,
 * asserting that no server is left in Nova and nothing is left by `scripts/openstack.sh down`.
 */
export function testCloudHooks(prefix: string, set: (cloud: TestCloud) => void): void {
  const root = mkdtempSync(path.join(tmpdir(), prefix));
  let cloud: TestCloud | undefined;
  before(async () => {
    cloud = await TestCloud.start(path.join(root, 'cloud'));
    set(cloud);
  });
  after(async () => {
    if (!cloud) return rmSync(root, { recursive: true, force: true });
    let servers: string[] = [];
    try {
      servers = (await cloud.allServers()).map((s) => `${s.name} ${s.status}`);
    } finally {
      const left = await cloud.stop();
      rmSync(root, { recursive: true, force: true });
      console.log(
        cloud.upSeconds > 0
          ? `# openstack: up in ${cloud.upSeconds.toFixed(1)} s`
          : `# openstack: the run's cloud (HATCHERY_TEST_OPENSTACK=${cloud.dir})`,
      );
      assert.deepEqual(servers, [], 'servers left in Nova');
      assert.deepEqual(left, [], 'left by scripts/openstack.sh down');
    }
  });
}

// A whole stack on an OpenStack pool for the e2e tests and the benchmark: the service with an
// `openstack` provider (the member of the test cloud's project `hatchery`), and the hypervisor
// stand-in that boots its servers' user_data, started once the service's port is known.
import assert from 'node:assert/strict';
import path from 'node:path';
import { HypervisorStandIn, STAND_IN_GUEST_NET } from './openstack-hypervisor.ts';
import type { TestCloud } from './openstack.ts';
import { eventually, GUEST_GITHUB, GUEST_SERVICE, Stack, type PoolSpec, type StackOptions } from './stack.ts';

/** A `[providers.<name>]` section for the member of project `hatchery`. */
export const cloudSection = (cloud: TestCloud, more: Record<string, unknown> = {}) => ({
  kind: 'openstack',
  auth_url: cloud.file.auth_url,
  username: cloud.file.member.user,
  password: cloud.file.member.password,
  project: cloud.file.member.project,
  region: cloud.file.region,
  poll_interval: 0.2,
  ...more,
});

/** A pool of the test cloud's image, flavor and network; guests report over the HTTP channel. */
export const cloudPool = (
  cloud: TestCloud,
  name: string,
  provider = 'openstack',
  flavor = cloud.file.flavor,
): PoolSpec => ({
  name,
  labels: [name],
  provider,
  image: cloud.file.image,
  channel: 'http',
  providerKeys: () => ({ flavor, network: cloud.file.network, guest_net: STAND_IN_GUEST_NET }),
});

/**
 * A stack with an `openstack` provider (the member of project `hatchery`) and the hypervisor
 * stand-in for its servers' guests, started once the service's port is known.
 */
export class OpenStackStack {
  private constructor(
    private readonly cloud: TestCloud,
    readonly stack: Stack,
    readonly hypervisor: HypervisorStandIn,
  ) {}

  static async start(
    cloud: TestCloud,
    options: (more: Partial<StackOptions>) => StackOptions,
    providers: Record<string, Record<string, unknown>> = {},
  ): Promise<OpenStackStack> {
    // Made once the stack's ports are known; its leftovers are the stack's too.
    const ref: { hypervisor?: HypervisorStandIn } = {};
    const stack = await Stack.start(
      options({
        providers: {
          openstack: cloudSection(cloud),
          ...providers,
        },
        leftovers: () => ref.hypervisor?.leftovers() ?? {},
      }),
    );
    const fakeHost = `127.0.0.1:${new URL(stack.fake.url).port}`;
    // The cloud's network as the guest sees it: the service and GitHub on the host's loopback.
    const hypervisor = new HypervisorStandIn(cloud, path.join(stack.files.dir, 'hypervisor'), {
      mode: 'restricted',
      forwards: [
        { guest: GUEST_GITHUB, host: fakeHost },
        { guest: GUEST_SERVICE, host: `127.0.0.1:${stack.files.servicePort}` },
      ],
    });
    ref.hypervisor = hypervisor;
    return new OpenStackStack(cloud, stack, hypervisor);
  }

  async stop(): Promise<void> {
    const servers: string[] = [];
    try {
      await this.stack.stop();
    } finally {
      // Servers of this stack still in Nova (a failed test's): deleted, and reported below.
      for (const server of await this.cloud.allServers()) {
        if (server.metadata['hatchery.instance'] !== this.stack.files.instanceId) continue;
        servers.push(server.name);
        await this.cloud.admin.delete(server.id);
      }
      await eventually(
        async () => ((await this.cloud.allServers()).length === 0 ? true : undefined),
        'Nova empty',
      );
      await this.hypervisor.stop();
    }
    assert.deepEqual(servers, [], 'servers left in Nova');
    assert.deepEqual(this.hypervisor.leftovers().guests, [], 'guests left running');
  }
}

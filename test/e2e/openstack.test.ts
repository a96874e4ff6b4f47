// The end-to-end tests on OpenStack pools: a real Keystone, Nova, Glance, Placement and Neutron
// (scripts/openstack.sh, once for the file), the service creating and deleting Nova servers as
// the member of a project, and a stand-in for the hypervisor only (Nova's fake driver boots
// nothing): each new server's user_data runs in a tiny QEMU guest whose bootstrap reports over
// the service's HTTP guest channel and runs the runner against the GitHub stand-in. The same
// flows and assertions as on QEMU and Vagrant (flows/): SpinW's two legacy clients and the
// three-job workflow. At the end: no server in Nova, no guest, no cloud process.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Relay } from '../helpers/legacy-clients.ts';
import { HypervisorStandIn, STAND_IN_GUEST_NET } from '../helpers/openstack-hypervisor.ts';
import { TestCloud } from '../helpers/openstack.ts';
import { GUEST_GITHUB, GUEST_SERVICE, Stack, type PoolSpec, type StackOptions } from '../helpers/stack.ts';
import {
  actionLifecycle,
  actionStackOptions,
  run,
  spinwUnsignedLifecycle,
  unsignedStackOptions,
} from './flows/legacy.ts';
import { threeJobWorkflow } from './flows/three-job.ts';

const root = mkdtempSync(path.join(tmpdir(), 'hatchery-openstack-e2e-'));
let cloud: TestCloud;

before(async () => {
  cloud = await TestCloud.start(path.join(root, 'cloud'));
});

after(async () => {
  if (!cloud) return rmSync(root, { recursive: true, force: true });
  let servers: string[] = [];
  try {
    servers = (await cloud.allServers()).map((s) => `${s.name} ${s.status}`);
  } finally {
    const left = await cloud.stop();
    rmSync(root, { recursive: true, force: true });
    console.log(`# openstack: up in ${cloud.upSeconds.toFixed(1)} s`);
    assert.deepEqual(servers, [], 'servers left in Nova');
    assert.deepEqual(left, [], 'left by scripts/openstack.sh down');
  }
});

/**
 * A stack with an `openstack` provider (the member of project `hatchery`) and the hypervisor
 * stand-in for its servers' guests, started once the service's port is known.
 */
class OpenStackStack {
  private constructor(
    readonly stack: Stack,
    readonly hypervisor: HypervisorStandIn,
  ) {}

  static async start(options: (more: Partial<StackOptions>) => StackOptions): Promise<OpenStackStack> {
    // Made once the stack's ports are known; its leftovers are the stack's too.
    const ref: { hypervisor?: HypervisorStandIn } = {};
    const stack = await Stack.start(
      options({
        providers: {
          openstack: {
            kind: 'openstack',
            auth_url: cloud.file.auth_url,
            username: cloud.file.member.user,
            password: cloud.file.member.password,
            project: cloud.file.member.project,
            region: cloud.file.region,
            poll_interval: 0.2,
          },
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
    return new OpenStackStack(stack, hypervisor);
  }

  async stop(): Promise<void> {
    try {
      await this.stack.stop();
    } finally {
      await this.hypervisor.stop();
      assert.deepEqual(this.hypervisor.leftovers().guests, [], 'guests left running');
    }
  }
}

const openstackPool = (name: string): PoolSpec => ({
  name,
  labels: [name],
  provider: 'openstack',
  image: 'hatchery-test',
  channel: 'http',
  providerKeys: () => ({
    flavor: cloud.file.flavor,
    network: cloud.file.network,
    guest_net: STAND_IN_GUEST_NET,
  }),
});

describe("SpinW's own step (unsigned curl | jq) on an OpenStack pool", () => {
  let os: OpenStackStack;
  let relay: Relay;
  before(async () => {
    os = await OpenStackStack.start((more) =>
      unsignedStackOptions({ ...more, pools: [openstackPool('linux')] }),
    );
    relay = await Relay.start(() => os.stack.service.url);
  });
  after(async () => {
    await relay?.close();
    await os?.stop();
  });

  it('passes with a runner on a Nova server (its guest booted from user_data); destroy deletes the server', async () => {
    const name = await spinwUnsignedLifecycle(os.stack, relay, run('8890101', '1'));
    assert.deepEqual(await cloud.serversNamed(name), [], 'the server is gone from Nova');
    const console_ = (await os.hypervisor.console(name)) ?? '';
    assert.match(console_, new RegExp(`hatchery: VM ${name}: bootstrap starting`));
  });
});

describe('the distributhor/workflow-webhook action (signed) on an OpenStack pool', () => {
  let os: OpenStackStack;
  let relay: Relay;
  before(async () => {
    os = await OpenStackStack.start((more) => actionStackOptions([openstackPool('linux')], more));
    relay = await Relay.start(() => os.stack.service.url);
  });
  after(async () => {
    await relay?.close();
    await os?.stop();
  });

  it('creates runners for an unchanged SpinW workflow, runs its job, destroys on the same delivery id', () =>
    actionLifecycle(os.stack, relay, run('7790101', '42')));
});

describe('three-job workflow on OpenStack pools (control route, two labels, HTTP channel)', () => {
  let os: OpenStackStack;
  before(async () => {
    os = await OpenStackStack.start((more) => ({
      ...more,
      pools: [openstackPool('linux'), openstackPool('debian')],
    }));
  });
  after(async () => {
    await os?.stop();
  });

  it('boots a server per label, runs a job on each, deletes both and leaves nothing', (t) =>
    threeJobWorkflow(os.stack, t, { runId: 9301, labels: ['linux', 'debian'] }));
});

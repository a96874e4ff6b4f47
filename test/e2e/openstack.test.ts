// The end-to-end tests on OpenStack pools: a real Keystone, Nova, Glance, Placement and Neutron
// (scripts/openstack.sh, once for the file), the service creating and deleting Nova servers as
// the member of a project, and a stand-in for the hypervisor only (Nova's fake driver boots
// nothing): each new server's user_data runs in a tiny QEMU guest whose bootstrap reports over
// the service's HTTP guest channel and runs the runner against the GitHub stand-in. The same
// flows and assertions as on QEMU and Vagrant (flows/): SpinW's two legacy clients and the
// three-job workflow. At the end: no server in Nova, no guest, no cloud process.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Relay } from '../helpers/legacy-clients.ts';
import { cloudPool, cloudSection, OpenStackStack } from '../helpers/openstack-stack.ts';
import { FaultProxy } from '../helpers/fault-proxy.ts';
import { fastHttp, TestCloud, testCloudHooks } from '../helpers/openstack.ts';
import { Keystone } from '../../src/providers/openstack/keystone.ts';
import { OpenStackHttp } from '../../src/providers/openstack/http.ts';
import { eventually, type PoolSpec } from '../helpers/stack.ts';
import {
  actionLifecycle,
  actionStackOptions,
  run,
  spinwUnsignedLifecycle,
  unsignedStackOptions,
} from './flows/legacy.ts';
import { threeJobWorkflow } from './flows/three-job.ts';

let cloud: TestCloud;
testCloudHooks('hatchery-openstack-e2e-', (c) => (cloud = c));

const openstackSection = (more: Record<string, unknown> = {}) => cloudSection(cloud, more);
const openstackPool = (name: string, provider = 'openstack', flavor = cloud.file.flavor): PoolSpec =>
  cloudPool(cloud, name, provider, flavor);

describe("SpinW's own step (unsigned curl | jq) on an OpenStack pool", () => {
  let os: OpenStackStack;
  let relay: Relay;
  before(async () => {
    os = await OpenStackStack.start(cloud, (more) =>
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
    os = await OpenStackStack.start(cloud, (more) => actionStackOptions([openstackPool('linux')], more));
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
    os = await OpenStackStack.start(cloud, (more) => ({
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

// Faults, each ending in a clear state in the API with nothing leaked: Nova's API down while a
// server builds; the service's Keystone token revoked while its VM runs; 500s (one after Nova
// acted), slow answers and a refused delete from a proxy in front of Nova (the `Proxied`
// region's compute endpoint); a server that goes to ERROR; a quota exceeded.
interface Vm {
  name: string;
  runId: number;
  label: string;
}

describe('faults on OpenStack pools', () => {
  const REPO = 'octo-org/faults';
  let os: OpenStackStack;
  let proxy: FaultProxy;
  let region: string;
  let runId = 9400;

  before(async () => {
    proxy = await FaultProxy.start('http://127.0.0.1:8774');
    // A region of its own per proxy (a cloud kept up across runs keeps the older ones).
    region = `Proxied-${new URL(proxy.url).port}`;
    await cloud.addRegion(region, `${proxy.url}/v2.1`);
    const huge = await cloud.hugeFlavor();
    os = await OpenStackStack.start(
      cloud,
      (more) => ({
        ...more,
        pools: [
          openstackPool('linux'),
          openstackPool('huge', 'openstack', huge),
          openstackPool('proxied', 'proxied'),
        ],
      }),
      // Through the proxy: 2 s per request (a slow answer times out), retried for 30 s.
      {
        // nova-api's restart (stop ~3 s, start 4–7 s, more on a loaded machine) within the retries.
        openstack: openstackSection({ retry_for: 120 }),
        proxied: openstackSection({ region, request_timeout: 2, retry_for: 30 }),
      },
    );
  });
  after(async () => {
    await os?.stop();
    await proxy?.close();
  });

  const create = async (label: string): Promise<Vm> => {
    const id = ++runId;
    const r = await os.stack.client.control({
      action: 'create',
      repository: REPO,
      run_id: id,
      run_attempt: 1,
      labels: [label],
    });
    assert.equal(r.status, 202, JSON.stringify(r.json));
    return { name: r.json.vms[0]!.name, runId: id, label };
  };
  const ready = async (name: string) => {
    const r = await os.stack.client.api('GET', `/api/v1/vms/${name}?wait=ready&timeout=240`);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(os.stack.fake.runners(REPO).find((x) => x.name === name)?.status, 'online');
  };
  /** Destroys the VM; its server is the only one of its name Nova ever had, and nothing is left. */
  const destroyed = async (vm: Vm) => {
    const r = await os.stack.client.control({
      action: 'destroy',
      repository: REPO,
      run_id: vm.runId,
      run_attempt: 1,
      labels: [vm.label],
    });
    assert.equal(r.status, 202);
    await os.stack.waitState(vm.name, ['destroyed'], 120_000);
    assert.equal(os.hypervisor.serversSeen(vm.name).length, 1, 'one server, no duplicate');
    await os.stack.files.nothingLeft();
  };

  it('nova-api stopped while the server builds, then started again: the create goes on, one server', async () => {
    const release = cloud.hold('nova-conductor'); // the server stays in BUILD meanwhile
    let vm: Vm;
    try {
      vm = await create('linux');
      await eventually(
        async () => ((await cloud.serversNamed(vm.name)).length > 0 ? true : undefined),
        'the server',
      );
      await cloud.stopService('nova-api');
    } finally {
      release();
    }
    await cloud.startService('nova-api');
    await ready(vm.name);
    await destroyed(vm);
  });

  it("the service's Keystone token revoked while its VM runs: it logs in again and destroys the VM", async () => {
    const vm = await create('linux');
    await ready(vm.name);
    const member = new Keystone(new OpenStackHttp(fastHttp), {
      authUrl: cloud.file.auth_url,
      credentials: cloud.memberCredentials(),
    });
    const before = await member.token();
    await cloud.revokeMemberTokens();
    // Tokens issued before the revocation are refused from now on (the service's among them);
    // Keystone counts in whole seconds: a login in the same second would be refused too.
    const nova = (t: string) =>
      fetch('http://127.0.0.1:8774/v2.1/servers', { headers: { 'X-Auth-Token': t } });
    assert.equal((await nova(before.value)).status, 401);
    await eventually(async () => {
      const fresh = new Keystone(new OpenStackHttp(fastHttp), {
        authUrl: cloud.file.auth_url,
        credentials: cloud.memberCredentials(),
      });
      return (await nova((await fresh.token()).value)).status === 200 ? true : undefined;
    }, 'a fresh login accepted');
    await destroyed(vm);
    const events = await os.stack.events(vm.name);
    assert.equal(events.filter((e) => e.event === 'destroy_failed').length, 0, JSON.stringify(events));
  });

  it('500s (one after Nova created the server), slow answers and a refused delete: one server, created and deleted', async () => {
    const rules = [
      proxy.inject('POST /v2.1/servers', 1, { kind: 'swallow', status: 500 }),
      proxy.inject('GET /v2.1/servers/', 2, { kind: 'refuse', status: 500 }),
      proxy.inject('GET /v2.1/servers/', 1, { kind: 'delay', ms: 5000 }),
      proxy.inject('GET /v2.1/flavors', 1, { kind: 'refuse', status: 503 }),
    ];
    const vm = await create('proxied');
    await ready(vm.name);
    assert.deepEqual(
      rules.map((r) => r.hits),
      rules.map((r) => r.times),
      'every injected fault was met',
    );
    const del = proxy.inject('DELETE /v2.1/servers/', 1, { kind: 'refuse', status: 503 });
    await destroyed(vm);
    assert.equal(del.hits, 1);
  });

  it("a server that goes to ERROR is deleted; the VM fails with Nova's fault, nothing left", async () => {
    const vm = await create('huge');
    const record = await os.stack.waitState(vm.name, ['failed'], 120_000);
    assert.match(
      record.failure ?? '',
      /^create failed: create hatchery-[a-z0-9-]+: server went to ERROR: No valid host was found/,
    );
    assert.ok(os.hypervisor.serversSeen(vm.name).length >= 1, 'Nova had the server');
    assert.deepEqual(await cloud.serversNamed(vm.name), []);
    await os.stack.files.nothingLeft();
  });

  it('a quota exceeded is "no capacity": the VM fails saying so, nothing is made; with room again, VMs come', async () => {
    await cloud.setInstanceQuota(0);
    try {
      const vm = await create('linux');
      const record = await os.stack.waitState(vm.name, ['failed'], 120_000);
      assert.match(record.failure ?? '', /no capacity: Quota exceeded for instances/);
      assert.deepEqual(os.hypervisor.serversSeen(vm.name), []);
    } finally {
      await cloud.setInstanceQuota(-1);
    }
    const vm = await create('linux');
    await ready(vm.name);
    await destroyed(vm);
  });
});

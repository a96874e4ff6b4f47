// The OpenStack provider and its client against a real OpenStack (scripts/openstack.sh: Keystone,
// Glance, Placement, Neutron, Nova with the fake virt driver, on 127.0.0.1), started for this file
// and stopped at its end: the shared provider contract; Keystone logins (password, application
// credential), the token cache and its renewal (before expiry, and once on a 401), the catalog's
// interface and region; user_data as Nova keeps it; quota → "no capacity"; a server in ERROR;
// secrets in no error. Nothing is left: no server, no port, no process, no listening port.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { OpenStackError } from '../../src/providers/openstack/errors.ts';
import { OpenStackHttp, type Request, type Response } from '../../src/providers/openstack/http.ts';
import { Keystone, type Credentials } from '../../src/providers/openstack/keystone.ts';
import { OpenStackProvider, ownerTag } from '../../src/providers/openstack/provider.ts';
import { Compute } from '../../src/providers/openstack/compute.ts';
import { ProviderError, type VmSpec } from '../../src/providers/provider.ts';
import { defineProviderContract } from '../contracts/provider.ts';
import { fastHttp, OPENSTACK_SCRIPT, TestCloud, testCloudHooks } from '../helpers/openstack.ts';

let cloud: TestCloud;
testCloudHooks('hatchery-openstack-', (c) => (cloud = c));

const spec = (name: string): VmSpec => ({
  name,
  pool: 'linux',
  image: cloud.file.image,
  cpus: 1,
  memoryMiB: 512,
  bootstrap: 'while :; do sleep 1; done',
  guestConfig: {},
  tags: { 'hatchery.pool': 'linux' },
});

/** A server of that name (any project, any state), or ports of servers gone. */
async function traces(name: string): Promise<string[]> {
  const servers = (await cloud.serversNamed(name)).map((s) => `server ${s.id} ${s.status}`);
  return [...servers, ...(await cloud.orphanPorts())];
}

defineProviderContract('openstack', async () => ({
  provider: new OpenStackProvider(cloud.providerOptions('test')),
  foreign: new OpenStackProvider(cloud.providerOptions('someone-else')),
  spec,
  badImage: 'no-such-image',
  traces,
  abortPoints: [
    {
      // nova-conductor held from before the POST: the server waits in BUILD (scheduling) with
      // its build request untouched, as on a busy cloud, and nova-api deletes it on its own.
      // Held only once Nova lists the server, conductor may have handed it to nova-compute
      // already (the list is slower on a loaded machine), and compute does every write through
      // conductor: the delete would wait for conductor to come back (or for compute's 60-s RPC
      // timeout), whatever the provider does.
      what: 'once Nova has the server, while it builds',
      reached: async (name) => (await cloud.serversNamed(name)).length > 0,
      prepare: async () => cloud.hold('nova-conductor'),
    },
  ],
  cleanup: async () => undefined,
}));

/** An OpenStackHttp that counts requests by `METHOD path`. */
class CountingHttp extends OpenStackHttp {
  readonly counts = new Map<string, number>();
  override async send(req: Request): Promise<Response> {
    const key = `${req.method} ${new URL(req.url).pathname}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    return super.send(req);
  }
  logins(): number {
    return this.counts.get('POST /v3/auth/tokens') ?? 0;
  }
}

describe('scripts/openstack.sh', () => {
  it('passes shellcheck, and status names every service it started as running', () => {
    execFileSync('shellcheck', [OPENSTACK_SCRIPT]); // throws with its findings
    const status = execFileSync(OPENSTACK_SCRIPT, ['status', cloud.dir]).toString();
    for (const svc of [
      'mariadb',
      'rabbitmq',
      'keystone',
      'placement',
      'glance',
      'neutron',
      'nova-api',
      'nova-compute',
    ])
      assert.match(status, new RegExp(`^${svc} running \\(pgid \\d+\\)$`, 'm'));
  });
});

describe('Keystone v3', () => {
  const keystone = (credentials: Credentials, more: { region?: string; now?: () => number } = {}) => {
    const http = new CountingHttp(fastHttp);
    return {
      http,
      keystone: new Keystone(http, {
        authUrl: cloud.file.auth_url,
        credentials,
        region: cloud.file.region,
        ...more,
      }),
    };
  };

  it('logs in with a password; the token is cached and shared by concurrent callers', async () => {
    const { http, keystone: ks } = keystone(cloud.memberCredentials());
    const compute = new Compute(ks);
    const [a, b] = await Promise.all([ks.token(), ks.token()]);
    assert.equal(a, b);
    assert.equal(a.projectId, cloud.file.member.project_id);
    await compute.servers({ tags: ['nothing-has-this-tag'] });
    await compute.servers({ tags: ['nothing-has-this-tag'] });
    assert.equal(http.logins(), 1);
  });

  it('renews the token before it expires', async () => {
    let now = Date.now();
    const { http, keystone: ks } = keystone(cloud.memberCredentials(), { now: () => now });
    const first = await ks.token();
    now = first.expiresAt - 60_000; // inside the 5-minute renewal margin
    const second = await ks.token();
    assert.notEqual(second.value, first.value);
    assert.equal(http.logins(), 2);
  });

  it('logs in again once when a service answers 401 (token revoked), and the call succeeds', async () => {
    const { http, keystone: ks } = keystone(cloud.memberCredentials());
    const compute = new Compute(ks);
    const token = await ks.token();
    // The admin revokes the member's token: Nova refuses it from now on.
    const admin = await cloud.adminKeystone.token();
    const res = await fetch(`${cloud.file.auth_url}/auth/tokens`, {
      method: 'DELETE',
      headers: { 'X-Auth-Token': admin.value, 'X-Subject-Token': token.value },
    });
    assert.equal(res.status, 204);
    assert.deepEqual(await compute.servers({ tags: ['nothing-has-this-tag'] }), []);
    assert.equal(http.logins(), 2);
    assert.notEqual((await ks.token()).value, token.value);
  });

  it('logs in with an application credential (by id and by name)', async () => {
    const member = keystone(cloud.memberCredentials()).keystone;
    const acName = `hatchery-test-${Date.now()}`;
    const t = await member.token();
    const res = await fetch(
      `${cloud.file.auth_url}/users/${cloud.file.member.user_id}/application_credentials`,
      {
        method: 'POST',
        headers: { 'X-Auth-Token': t.value, 'Content-Type': 'application/json' },
        body: JSON.stringify({ application_credential: { name: acName } }),
      },
    );
    assert.equal(res.status, 201);
    const { application_credential: ac } = (await res.json()) as {
      application_credential: { id: string; secret: string };
    };
    const byId = keystone({ method: 'application_credential', id: ac.id, secret: ac.secret }).keystone;
    assert.equal((await byId.token()).projectId, cloud.file.member.project_id);
    const byName = keystone({
      method: 'application_credential',
      name: acName,
      username: cloud.file.member.user,
      userDomain: 'Default',
      secret: ac.secret,
    }).keystone;
    assert.equal((await byName.token()).projectId, cloud.file.member.project_id);

    // A wrong secret: Keystone's 401 and its message, typed, without the secret.
    // (Changed at the start: bcrypt reads only the first 72 bytes of the 86-character secret.)
    const wrong = `XXXX${ac.secret.slice(4)}`;
    const failed = await keystone({ method: 'application_credential', id: ac.id, secret: wrong })
      .keystone.token()
      .then(
        () => null,
        (e: unknown) => e,
      );
    assert.ok(failed instanceof OpenStackError, String(failed));
    assert.equal(failed.status, 401);
    assert.equal(failed.retryable, false);
    assert.match(
      failed.message,
      /^identity POST \/v3\/auth\/tokens: 401 The request you have made requires authentication/,
    );
    assert.doesNotMatch(`${failed.message} ${failed.stack}`, new RegExp(`${wrong}|${ac.secret}`));
  });

  it('a wrong password fails typed with Keystone’s message, the password in no error', async () => {
    const password = 'not-the-password-4f1c9e';
    const failed = await keystone({ ...cloud.memberCredentials(), password } as Credentials)
      .keystone.token()
      .then(
        () => null,
        (e: unknown) => e,
      );
    assert.ok(failed instanceof OpenStackError, String(failed));
    assert.equal(failed.status, 401);
    assert.doesNotMatch(`${failed.message} ${failed.stack} ${JSON.stringify(failed)}`, new RegExp(password));
  });

  it('takes endpoints of the configured region and interface, and says when there is none', async () => {
    const ok = keystone(cloud.memberCredentials(), { region: cloud.file.region }).keystone;
    assert.equal(ok.endpoint(await ok.token(), 'compute'), 'http://127.0.0.1:8774/v2.1');
    const elsewhere = keystone(cloud.memberCredentials(), { region: 'Nowhere' }).keystone;
    await assert.rejects(
      new Compute(elsewhere).servers({}),
      /no public compute endpoint in region Nowhere in the catalog/,
    );
  });
});

describe('OpenStack provider on Nova', () => {
  const provider = () => new OpenStackProvider(cloud.providerOptions('test'));

  it('creates the server with its bootstrap and config in user_data, ownership in metadata and a tag', async () => {
    const name = 'hatchery-os-userdata';
    const p = provider();
    try {
      const info = await p.create({
        ...spec(name),
        bootstrap: 'echo the-bootstrap\n',
        guestConfig: {
          HATCHERY_CHANNEL: 'http://10.0.2.2:1/guest/v1/messages',
          HATCHERY_CHANNEL_TOKEN: 'tok',
        },
      });
      assert.deepEqual(info.channel, { kind: 'http' });
      const [server] = await cloud.serversNamed(name);
      assert.ok(server);
      assert.deepEqual(server.tags, [ownerTag('test')]);
      assert.equal(server.metadata['hatchery.instance'], 'test');
      assert.equal(server.metadata['hatchery.pool'], 'linux');
      const userData = (await cloud.admin.userData(server.id)) ?? '';
      assert.match(userData, /^#!\/bin\/sh\n/);
      assert.match(userData, /\necho the-bootstrap\n/);
      assert.match(
        userData,
        new RegExp(
          `\nHATCHERY_VM=${name}\nHATCHERY_NET=none\nHATCHERY_CHANNEL=http://10.0.2.2:1/guest/v1/messages\nHATCHERY_CHANNEL_TOKEN=tok\n`,
        ),
      );
    } finally {
      await p.destroy(name);
    }
    assert.deepEqual(await traces(name), []);
  });

  it('adopts a server made for the same spec, and replaces one made for an earlier config (a dead JIT config)', async () => {
    const name = 'hatchery-os-attempts';
    const p = provider();
    const withJit = (jit: string) => ({ ...spec(name), guestConfig: { HATCHERY_JITCONFIG: jit } });
    try {
      await p.create(withJit('first-attempt'));
      const [first] = await cloud.serversNamed(name);
      await p.create(withJit('first-attempt'));
      assert.deepEqual(
        (await cloud.serversNamed(name)).map((s) => s.id),
        [first!.id],
        'the same spec: the same server',
      );
      await p.create(withJit('second-attempt'));
      const now = await cloud.serversNamed(name);
      assert.equal(now.length, 1);
      assert.notEqual(now[0]!.id, first!.id, 'another config: a new server');
      assert.match((await cloud.admin.userData(now[0]!.id)) ?? '', /\nHATCHERY_JITCONFIG=second-attempt\n/);
    } finally {
      await p.destroy(name);
    }
    assert.deepEqual(await traces(name), []);
  });

  it('a quota exceeded is "no capacity", retryable, and leaves nothing', async () => {
    const p = provider();
    await cloud.setInstanceQuota(1);
    try {
      await p.create(spec('hatchery-os-quota-a'));
      const failed = await p.create(spec('hatchery-os-quota-b')).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(failed instanceof ProviderError, String(failed));
      assert.equal(failed.retryable, true);
      assert.match(failed.message, /^create hatchery-os-quota-b: no capacity: Quota exceeded for instances/);
      assert.deepEqual(await traces('hatchery-os-quota-b'), []);
    } finally {
      await cloud.setInstanceQuota(-1);
      await p.destroy('hatchery-os-quota-a');
    }
  });

  it('a server that goes to ERROR is deleted and the create fails with Nova’s fault', async () => {
    const flavor = await cloud.hugeFlavor();
    const p = new OpenStackProvider(
      cloud.providerOptions('test', {
        placement: () => ({ flavor, network: cloud.file.network, guestNet: 'none', securityGroups: [] }),
      }),
    );
    const name = 'hatchery-os-error';
    const failed = await p.create(spec(name)).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(failed instanceof ProviderError, String(failed));
    assert.match(failed.message, /^create hatchery-os-error: server went to ERROR: No valid host was found/);
    assert.equal(failed.retryable, true, 'a full cloud may have room later');
    assert.deepEqual(await traces(name), []);
  });

  it('names flavor and network that do not exist, and makes nothing', async () => {
    for (const [key, value] of [
      ['flavor', 'no-such-flavor'],
      ['network', 'no-such-network'],
    ] as const) {
      const p = new OpenStackProvider(
        cloud.providerOptions('test', {
          placement: () => ({
            flavor: cloud.file.flavor,
            network: cloud.file.network,
            guestNet: 'none',
            securityGroups: [],
            [key]: value,
          }),
        }),
      );
      await assert.rejects(p.create(spec('hatchery-os-bad-ref')), (e: unknown) => {
        assert.ok(e instanceof ProviderError);
        assert.equal(e.retryable, false);
        assert.match(e.message, new RegExp(`^${key} ${value}: no such ${key}`));
        return true;
      });
    }
    assert.deepEqual(await traces('hatchery-os-bad-ref'), []);
  });

  it('a restarted provider (a new object) lists exactly our servers, by id or by name of image and network', async () => {
    const p = new OpenStackProvider(
      cloud.providerOptions('test', {
        placement: () => ({
          flavor: cloud.file.flavor,
          network: cloud.file.network_id,
          guestNet: 'none',
          securityGroups: [],
        }),
      }),
    );
    const names = ['hatchery-os-list-a', 'hatchery-os-list-b'];
    try {
      await Promise.all(names.map((n) => p.create({ ...spec(n), image: cloud.file.image_id })));
      assert.deepEqual(
        (await provider().list()).map((v) => [v.name, v.status]).sort(),
        names.map((n) => [n, 'running']),
      );
      assert.deepEqual(await new OpenStackProvider(cloud.providerOptions('someone-else')).list(), []);
    } finally {
      for (const n of names) await p.destroy(n);
    }
    assert.deepEqual(await provider().list(), []);
  });
});

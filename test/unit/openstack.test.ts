// The openstack kind's settings as hatchery.toml gives them (validated, secrets masked), and the
// user_data script run by a real sh as cloud-init would run it (in a temporary directory).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig, maskSecrets } from '../../src/config/load.ts';
import { credentials, type OpenStackSettings } from '../../src/providers/openstack/kind.ts';
import { ownerTag } from '../../src/providers/openstack/provider.ts';
import { renderUserData } from '../../src/providers/openstack/user-data.ts';
import { guestConfigOf } from '../helpers/openstack-emulated-hypervisor.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-openstack-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const toml = (provider: string, pool = 'flavor = "m1.small"\n') =>
  `[providers.os]\nkind = "openstack"\nauth_url = "https://keystone.example.org:5000/v3"\n${provider}` +
  `[[pools]]\nname = "linux"\nlabels = ["linux"]\nimage = "debian-runner"\n${pool}`;

function load(text: string) {
  const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(file, text);
  return loadConfig({ cwd: dir, file, env: {}, dotenv: false });
}

describe('openstack settings', () => {
  it('takes a password login or an application credential; the secrets are masked', () => {
    const pw = load(
      toml('username = "ci"\npassword = "pw-1f3a"\nproject = "runners"\nregion = "RegionOne"\n'),
    );
    const s = pw.config.providers.os!.settings as OpenStackSettings;
    assert.deepEqual(credentials(s), {
      method: 'password',
      username: 'ci',
      userDomain: 'Default',
      password: 'pw-1f3a',
      project: 'runners',
      projectDomain: 'Default',
    });
    assert.deepEqual(pw.config.pools[0]!.settings, {
      flavor: 'm1.small',
      network: 'auto',
      guest_net: 'none',
      security_groups: [],
    });
    assert.doesNotMatch(JSON.stringify(maskSecrets(pw.config)), /pw-1f3a/);

    const ac = load(toml('application_credential_id = "abc"\napplication_credential_secret = "sec-9b2e"\n'));
    assert.deepEqual(credentials(ac.config.providers.os!.settings as OpenStackSettings), {
      method: 'application_credential',
      id: 'abc',
      secret: 'sec-9b2e',
    });
    assert.doesNotMatch(JSON.stringify(maskSecrets(ac.config)), /sec-9b2e/);
  });

  it('refuses incomplete or mixed credentials, unknown keys and bad pool keys, naming them', () => {
    const cases: [string, string, RegExp][] = [
      ['username = "ci"\nproject = "p"\n', '', /username, password and project are required/],
      ['application_credential_id = "a"\n', '', /application_credential_secret is required/],
      [
        'application_credential_name = "a"\napplication_credential_secret = "s"\n',
        '',
        /application_credential_name needs username/,
      ],
      [
        'application_credential_id = "a"\napplication_credential_secret = "s"\npassword = "p"\nusername = "u"\n',
        '',
        /give either a password or an application credential/,
      ],
      ['username = "u"\npassword = "p"\nproject = "x"\npasword = "typo"\n', '', /unknown key\(s\) "pasword"/],
      ['username = "u"\npassword = "p"\nproject = "x"\ninterface = "private"\n', '', /interface/],
      ['username = "u"\npassword = "p"\nproject = "x"\n', 'network = "n"\n', /flavor/],
      [
        'username = "u"\npassword = "p"\nproject = "x"\n',
        'flavor = "f"\nguest_net = "dhcp; reboot"\n',
        /guest_net/,
      ],
      [
        'username = "u"\npassword = "p"\nproject = "x"\n',
        'flavor = "f"\nforwards = []\n',
        /unknown key\(s\) "forwards"/,
      ],
    ];
    for (const [provider, pool, error] of cases) {
      assert.throws(
        () => load(toml(provider, pool || undefined)),
        (e: Error) => {
          assert.match(e.message, error);
          assert.doesNotMatch(e.message, /typo"?\s*$|= "p"/, 'no secret value in the error');
          return true;
        },
      );
    }
  });

  it('owner tags fit Nova (at most 60 characters, no "/" or ","), one per installation', () => {
    const a = ownerTag('installation/a,1');
    assert.match(a, /^hatchery-[0-9a-f]{24}$/);
    assert.notEqual(a, ownerTag('installation/a,2'));
  });
});

describe('user_data', () => {
  it('writes the bootstrap and the config (0600) and runs the bootstrap with the config, verbatim', () => {
    const boot = path.join(dir, 'boot');
    // A bootstrap full of what a shell would expand: it must arrive as written.
    const bootstrap = [
      '#!/bin/sh',
      'echo "bootstrap ran with $1: $(cat "$1" | tr \'\\n\' \' \')"',
      "echo '$HOME `id` ${x:-y}'",
      '',
    ].join('\n');
    const userData = renderUserData(bootstrap, {
      HATCHERY_VM: 'vm-1',
      HATCHERY_CHANNEL: 'http://10.0.2.2:8080/guest/v1/messages',
      HATCHERY_JITCONFIG: 'eyJhIjoxfQ==',
    });
    const out = execFileSync('sh', ['-c', userData], {
      env: { PATH: process.env.PATH, HATCHERY_BOOT_DIR: boot },
    }).toString();
    assert.equal(
      out,
      `bootstrap ran with ${boot}/config: HATCHERY_VM=vm-1 HATCHERY_CHANNEL=http://10.0.2.2:8080/guest/v1/messages HATCHERY_JITCONFIG=eyJhIjoxfQ== \n` +
        '$HOME `id` ${x:-y}\n',
    );
    assert.equal(readFileSync(path.join(boot, 'bootstrap.sh'), 'utf8'), bootstrap);
    assert.equal(statSync(path.join(boot, 'config')).mode & 0o777, 0o600);
    assert.equal(statSync(boot).mode & 0o777, 0o700);
  });

  it("gives the burst bench's emulated hypervisor the guest config back, whatever the bootstrap holds", () => {
    const config = {
      HATCHERY_VM: 'vm-1',
      HATCHERY_CHANNEL: 'http://127.0.0.1:8080/guest/v1/messages',
      HATCHERY_JITCONFIG: 'eyJhIjoxfQ==',
      HATCHERY_NET: '',
    };
    // A bootstrap with lines that look like the config's here-document and its content.
    const bootstrap = [
      '#!/bin/sh',
      `cat >"$d/config" <<'HATCHERY_EOF_00'`,
      'HATCHERY_VM=evil',
      'HATCHERY_EOF_00',
    ];
    assert.deepEqual(guestConfigOf(renderUserData(bootstrap.join('\n'), config)), config);
    assert.throws(() => guestConfigOf('#!/bin/sh\necho hi\n'), /no here-document of bootstrap.sh/);
  });

  it('refuses config values that would break the format', () => {
    assert.throws(
      () => renderUserData('true', { HATCHERY_VM: 'a\nHATCHERY_NET=dhcp' }),
      /control characters/,
    );
  });
});

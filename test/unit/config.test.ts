import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, loadConfig, maskSecrets } from '../../src/config/load.ts';
import { runnerFor } from '../../src/guest/os.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

describe('loadConfig', () => {
  it('works with no file at all: defaults (SQLite under var/, QEMU, tiny guest, loopback)', () => {
    const { config, file } = loadConfig({ cwd: dir, env: {}, dotenv: false });
    assert.equal(file, null);
    assert.equal(config.server.host, '127.0.0.1');
    assert.equal(config.store.path, path.join(dir, 'var/hatchery.db'));
    assert.deepEqual(
      config.pools.map((p) => [p.name, p.provider, p.image, p.labels]),
      [['linux', 'qemu', 'tiny', ['linux']]],
    );
    assert.equal(config.pools[0]!.timeouts.boot, 300);
  });

  it('reads TOML, then .env, then HATCHERY_* variables (later wins)', () => {
    const file = write(
      'a.toml',
      '[server]\nport = 9000\n[github]\ntoken = "from-file"\n[[pools]]\nname = "big"\nlabels = ["linux", "big"]\nmemory = 512\n[pools.timeouts]\nboot = 42\n',
    );
    write('.env', 'HATCHERY_GITHUB_TOKEN=from-dotenv\nHATCHERY_SERVER_PORT=9001\n');
    const { config, fromEnv } = loadConfig({ cwd: dir, file, env: { HATCHERY_SERVER_PORT: '9002' } });
    assert.equal(config.server.port, 9002);
    assert.equal(config.github.token, 'from-dotenv');
    assert.equal(config.pools[0]!.memory, 512);
    assert.equal(config.pools[0]!.timeouts.boot, 42);
    assert.equal(config.pools[0]!.timeouts.idle, 900, 'unset timeouts keep their defaults');
    assert.equal(fromEnv.HATCHERY_SERVER_PORT, 'server.port');
    rmSync(path.join(dir, '.env'));
  });

  it('names the file and the key of a bad value', () => {
    const file = write('b.toml', '[server]\nport = "eighty"\n');
    assert.throws(
      () => loadConfig({ cwd: dir, file, env: {} }),
      (e: Error) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, new RegExp(`${file}: server.port: `));
        return true;
      },
    );
  });

  it('names the env variable of a bad value', () => {
    assert.throws(
      () => loadConfig({ cwd: dir, env: { HATCHERY_SERVER_PORT: 'x' }, dotenv: false }),
      /env HATCHERY_SERVER_PORT: server.port/,
    );
  });

  it('refuses unknown keys (typos) and duplicate labels', () => {
    const typo = write('c.toml', '[server]\nprot = 1\n');
    assert.throws(() => loadConfig({ cwd: dir, file: typo, env: {} }), /server: unknown key\(s\) "prot"/);
    const dup = write(
      'd.toml',
      '[[pools]]\nname = "a"\nlabels = ["x"]\n[[pools]]\nname = "b"\nlabels = ["X"]\n',
    );
    assert.throws(
      () => loadConfig({ cwd: dir, file: dup, env: {} }),
      /pools.1.labels: label X is also in pool a/,
    );
  });

  it('reports invalid TOML and a missing file clearly', () => {
    assert.throws(
      () => loadConfig({ cwd: dir, file: write('e.toml', '[server\n'), env: {} }),
      /e.toml: invalid TOML/,
    );
    assert.throws(
      () => loadConfig({ cwd: dir, file: path.join(dir, 'nope.toml'), env: {} }),
      /nope.toml: cannot read the config file \(ENOENT\)/,
    );
  });

  it('requires the openssl password and a signature secret when the legacy route is on', () => {
    assert.throws(
      () =>
        loadConfig({
          cwd: dir,
          env: { HATCHERY_LEGACY_ENABLED: 'true', HATCHERY_LEGACY_SECRET: 'webhook-secret' },
          dotenv: false,
        }),
      /legacy.openssl_password: required when legacy.enabled = true/,
    );
    const pw = { HATCHERY_LEGACY_ENABLED: 'true', HATCHERY_LEGACY_OPENSSL_PASSWORD: 'pw' };
    assert.throws(
      () => loadConfig({ cwd: dir, env: pw, dotenv: false }),
      /legacy.secret: required when legacy.enabled = true/,
    );
    const unsigned = loadConfig({
      cwd: dir,
      env: { ...pw, HATCHERY_LEGACY_ALLOW_UNSIGNED: 'true' },
      dotenv: false,
    });
    assert.equal(unsigned.config.legacy.allow_unsigned, true, 'an explicit opt-out is accepted');
  });

  it('masks every secret for display', () => {
    const { config } = loadConfig({
      cwd: dir,
      env: {
        HATCHERY_GITHUB_TOKEN: 'ghp_x',
        HATCHERY_CONTROL_SECRET: 'c'.repeat(16),
        HATCHERY_LEGACY_OPENSSL_PASSWORD: 'pw',
        HATCHERY_API_TOKEN: 'a'.repeat(16),
      },
      dotenv: false,
    });
    const text = JSON.stringify(maskSecrets(config));
    for (const secret of ['ghp_x', 'c'.repeat(16), '"pw"', 'a'.repeat(16)])
      assert.ok(!text.includes(secret), secret);
    assert.match(text, /"token":"\*{8}"/);
  });

  describe('windows pools (os = "windows")', () => {
    const load = (toml: string) =>
      loadConfig({ cwd: dir, file: write('win.toml', `${PROVIDERS}${toml}`), env: {} }).config;
    const PROVIDERS = '[providers.cloud]\nkind = "command"\ncommand = ["/bin/true"]\n';
    const WIN = '[[pools]]\nname = "win"\nlabels = ["windows"]\nos = "windows"\nimage = "windows-2022"\n';

    it('declares a pool whose guests run windows.ps1 with the runner of their image, or their own', () => {
      const c = load(`${WIN}[[pools]]\nname = "linux"\nlabels = ["linux"]\n`);
      assert.deepEqual(
        c.pools.map((p) => [p.name, p.os, p.image, p.runner]),
        [
          ['win', 'windows', 'windows-2022', undefined],
          ['linux', 'linux', 'tiny', undefined],
        ],
      );
      const zip = { url: 'http://10.0.2.100/actions-runner-win-x64.zip', sha256: 'a'.repeat(64) };
      const own = load(`${WIN}runner = { url = "${zip.url}", sha256 = "${zip.sha256}" }\n`);
      assert.deepEqual(own.pools[0]!.runner, zip);
      const service = { url: 'http://10.0.2.100/linux.tar.gz', sha256: 'b'.repeat(64) };
      assert.equal(runnerFor(c.pools[0]!, service), 'image', 'never the Linux tarball');
      assert.deepEqual(runnerFor(own.pools[0]!, service), zip);
      assert.deepEqual(runnerFor(c.pools[1]!, service), service);
      assert.equal(runnerFor(c.pools[1]!, null), null, 'a Linux pool with no runner cannot provision');
    });

    it('refuses an unknown os, the SSH bootstrap, the Linux test guest and a bad runner, naming the key', () => {
      const cases: [string, RegExp][] = [
        [WIN.replace('"windows"\nimage', '"macos"\nimage'), /pools\.0\.os: one of linux, windows/],
        [
          `${WIN}bootstrap = "ssh"\n`,
          /pools\.0\.bootstrap: os = "windows" pools take the bootstrap from their provider/,
        ],
        [
          WIN.replace('image = "windows-2022"\n', ''),
          /pools\.0\.image: os = "windows" needs a Windows image/,
        ],
        [
          `${WIN}runner = { url = "http://x/r.zip", sha256 = "ABC" }\n`,
          /pools\.0\.runner\.sha256: 64 lowercase hex/,
        ],
        [`${WIN}runner = { url = "http://x/r.zip" }\n`, /pools\.0\.runner\.sha256/],
      ];
      for (const [toml, error] of cases) assert.throws(() => load(toml), error, toml);
    });

    it('refuses a Windows pool on a provider that cannot hand Windows its config (qemu, vagrant)', () => {
      for (const [kind, why] of [
        ['qemu', /fw_cfg, which Windows cannot read/],
        ['vagrant', /sh over SSH/],
      ] as const) {
        const file = write('win-kind.toml', `[providers.p]\nkind = "${kind}"\n${WIN}`);
        assert.throws(
          () => loadConfig({ cwd: dir, file, env: {} }),
          (e: Error) => {
            assert.match(
              e.message,
              new RegExp(`pools\\.0\\.os: the ${kind} provider cannot serve os = "windows"`),
            );
            assert.match(e.message, why);
            return true;
          },
        );
      }
    });
  });

  describe('providers', () => {
    const settings = (c: ReturnType<typeof loadConfig>['config'], name: string) =>
      c.providers[name]!.settings as Record<string, unknown>;

    it('gives every pool a named provider instance with its own validated settings', () => {
      const file = write(
        'providers.toml',
        [
          '[providers.fast]',
          'kind = "qemu"',
          'state_dir = "vms-fast"',
          '[providers.sim]',
          'kind = "memory"',
          'create_ms = 5',
          '[[pools]]',
          'name = "linux"',
          'labels = ["linux"]',
          'provider = "fast"',
          'network = "open"',
          '[[pools]]',
          'name = "sim"',
          'labels = ["sim"]',
          'provider = "sim"',
          '',
        ].join('\n'),
      );
      const { config, warnings } = loadConfig({ cwd: dir, file, env: {}, dotenv: false });
      assert.deepEqual(warnings, []);
      assert.deepEqual(
        Object.values(config.providers).map((p) => [p.name, p.kind]),
        [
          ['fast', 'qemu'],
          ['sim', 'memory'],
        ],
      );
      assert.equal(settings(config, 'fast').state_dir, path.join(dir, 'vms-fast'), 'relative to the file');
      assert.equal(settings(config, 'fast').accel, 'auto', 'defaults of the kind');
      assert.equal(settings(config, 'sim').create_ms, 5);
      assert.deepEqual(config.pools[0]!.settings, { network: 'open', forwards: [] });
      assert.deepEqual(config.pools[1]!.settings, {});
    });

    it("checks a pool's extra keys against its provider's kind, naming the pool key", () => {
      const file = write(
        'pool-keys.toml',
        '[providers.sim]\nkind = "memory"\n[[pools]]\nname = "a"\nlabels = ["a"]\nnetwork = "open"\n',
      );
      assert.throws(
        () => loadConfig({ cwd: dir, file, env: {}, dotenv: false }),
        (e: Error) => e instanceof ConfigError && /pools\.0: unknown key\(s\) "network"/.test(e.message),
      );
    });

    it('refuses an unknown kind, an unknown setting and a pool naming no provider', () => {
      const cases: [string, RegExp][] = [
        ['[providers.x]\nkind = "vmware"\n', /providers\.x\.kind: one of qemu, memory/],
        ['[providers.x]\nkind = "qemu"\nstate = "a"\n', /providers\.x: unknown key\(s\) "state"/],
        [
          '[providers.x]\nkind = "qemu"\n[providers.y]\nkind = "memory"\n[[pools]]\nname = "a"\nlabels = ["a"]\n',
          /pools\.0\.provider: required when several providers are configured \(x, y\)/,
        ],
        [
          '[providers.x]\nkind = "qemu"\n[[pools]]\nname = "a"\nlabels = ["a"]\nprovider = "z"\n',
          /pools\.0\.provider: no \[providers\.z\] section \(configured: x\)/,
        ],
      ];
      for (const [i, [text, error]] of cases.entries()) {
        const file = write(`bad-provider-${i}.toml`, text);
        assert.throws(() => loadConfig({ cwd: dir, file, env: {}, dotenv: false }), error);
      }
    });

    it('reads the old top-level [qemu] section as [providers.qemu], with a warning', () => {
      const file = write('old.toml', '[qemu]\naccel = "tcg"\nstate_dir = "old-vms"\n');
      const { config, warnings } = loadConfig({ cwd: dir, file, env: {}, dotenv: false });
      assert.equal(config.providers.qemu!.kind, 'qemu');
      assert.equal(settings(config, 'qemu').accel, 'tcg');
      assert.equal(settings(config, 'qemu').state_dir, path.join(dir, 'old-vms'));
      assert.equal(config.pools[0]!.provider, 'qemu');
      assert.match(warnings.join('\n'), /\[qemu\] is deprecated: rename it to \[providers\.qemu\]/);
      const both = write('both.toml', '[qemu]\naccel = "tcg"\n[providers.q]\nkind = "qemu"\n');
      assert.throws(
        () => loadConfig({ cwd: dir, file: both, env: {}, dotenv: false }),
        /qemu: the \[qemu\] section is now \[providers\.<name>\] with kind = "qemu"/,
      );
    });

    it('sets provider settings from HATCHERY_PROVIDERS_<NAME>_<KEY> (and HATCHERY_QEMU_<KEY>)', () => {
      const { config, fromEnv } = loadConfig({
        cwd: dir,
        env: { HATCHERY_QEMU_ACCEL: 'tcg', HATCHERY_PROVIDERS_QEMU_KEEP_CONSOLE_LOGS: '3' },
        dotenv: false,
      });
      assert.equal(settings(config, 'qemu').accel, 'tcg');
      assert.equal(settings(config, 'qemu').keep_console_logs, 3);
      assert.equal(fromEnv.HATCHERY_QEMU_ACCEL, 'providers.qemu.accel');
      assert.throws(
        () => loadConfig({ cwd: dir, env: { HATCHERY_PROVIDERS_QEMU_ACCEL: 'fast' }, dotenv: false }),
        /env HATCHERY_PROVIDERS_QEMU_ACCEL: providers\.qemu\.accel: /,
      );
      assert.throws(
        () => loadConfig({ cwd: dir, env: { HATCHERY_PROVIDERS_NOPE_ACCEL: 'tcg' }, dotenv: false }),
        /env HATCHERY_PROVIDERS_NOPE_ACCEL: there is no \[providers\.nope\] section/,
      );
    });
  });
});

describe('limits: provisioning cap and tenants (fair share)', () => {
  it('defaults to no tenants and no cap: oldest first, as before', () => {
    const { config } = loadConfig({ cwd: dir, env: {}, dotenv: false });
    assert.equal(config.limits.tenants, undefined);
    assert.equal(config.limits.max_provisioning, undefined);
  });

  it('reads tenants with their defaults (by owner, weight exponent 1.25)', () => {
    const file = write(
      'tenants.toml',
      '[limits]\nmax_vms = 4\nmax_provisioning = 2\n[limits.tenants]\nquota = 2\nquotas = { "Octo-Org" = 4 }\n',
    );
    const { config } = loadConfig({ cwd: dir, file, env: {}, dotenv: false });
    assert.equal(config.limits.max_provisioning, 2);
    assert.deepEqual(config.limits.tenants, {
      by: 'owner',
      weight_exponent: 1.25,
      quota: 2,
      quotas: { 'Octo-Org': 4 },
    });
  });

  for (const [what, toml, error] of [
    [
      'a tenant name of the wrong kind',
      'by = "repository"\nquotas = { "octo-org" = 4 }',
      /limits\.tenants\.quotas\.octo-org: not a tenant name with by = "repository" \(e\.g\. "octo-org\/app"\)/,
    ],
    [
      'a quota no VM of a pool fits in',
      'quota = 0.5\n[[pools]]\nname = "big"\nlabels = ["big"]\nmemory = 1024',
      /limits\.tenants\.quota: 0\.5 is less than one VM of pool big \(weight 1 = \(1024 MiB \/ 1024\) \^ 1\.25\): such a VM would never start/,
    ],
    ['an unknown way to tell tenants', 'by = "team"', /limits\.tenants\.by: one of owner, repository/],
    ['an unknown key', 'qouta = 1', /limits\.tenants: unknown key\(s\) "qouta"/],
  ] as const) {
    it(`refuses ${what}, naming the key`, () => {
      const file = write('bad-tenants.toml', `[limits.tenants]\n${toml}\n`);
      assert.throws(() => loadConfig({ cwd: dir, file, env: {}, dotenv: false }), error);
    });
  }
});

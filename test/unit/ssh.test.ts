// Pure parts of the SSH support: shell quoting (checked by a real sh), fingerprints as
// ssh-keygen prints them, the pool keys' validation, QEMU's SSH forward, the start command.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import ssh2 from 'ssh2';
import { loadConfig } from '../../src/config/load.ts';
import { qemuArgs, vmFiles } from '../../src/providers/qemu/command-line.ts';
import { startCommand } from '../../src/remote/bootstrap.ts';
import { fingerprintOf, sameFingerprint } from '../../src/remote/fingerprint.ts';
import { prepareEnv } from '../../src/remote/prepare.ts';
import { commandLine, shQuote } from '../../src/remote/shell.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-ssh-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('shell words for a remote command', () => {
  const hostile = [
    "it's",
    '$(touch /tmp/pwned)',
    '`id`',
    'a b\tc',
    '"; rm -rf / #',
    '\\',
    "''",
    '-n',
    '$HOME',
    '\n',
  ];

  it('reach the command as the very same argv, whatever they hold', () => {
    const line = commandLine(['printf', '[%s]\\n', ...hostile]);
    const out = execFileSync('sh', ['-c', line], { encoding: 'utf8' });
    assert.equal(out, hostile.map((w) => `[${w}]\n`).join(''));
  });

  it('set variables through env(1), quoted, and refuse a bad name', () => {
    const line = commandLine(['sh', '-c', 'printf "%s|%s" "$HATCHERY_VM" "$X"'], {
      HATCHERY_VM: 'vm-1',
      X: "a'b $(c)",
    });
    assert.equal(line.split(' ')[0], 'env');
    assert.equal(execFileSync('sh', ['-c', line], { encoding: 'utf8' }), "vm-1|a'b $(c)");
    assert.throws(() => commandLine(['true'], { 'A;B': 'x' }), /invalid environment variable name/);
    assert.throws(() => commandLine([]), /empty command/);
    assert.throws(() => shQuote('a\0b'), /NUL/);
  });

  it('validate the VM identifiers before they are sent anywhere', () => {
    const ok = { vm: 'hatchery-linux-1-1-abcdef', pool: 'linux', repository: 'octo/app', label: 'linux' };
    assert.deepEqual(prepareEnv(ok), {
      HATCHERY_VM: ok.vm,
      HATCHERY_POOL: 'linux',
      HATCHERY_REPOSITORY: 'octo/app',
      HATCHERY_LABEL: 'linux',
    });
    for (const bad of [
      { ...ok, vm: 'Bad;name' },
      { ...ok, pool: '$(x)' },
      { ...ok, repository: 'octo/../etc' },
      { ...ok, label: "a'b" },
    ]) {
      assert.throws(() => prepareEnv(bad), /prepare: invalid/);
    }
  });
});

describe('host key fingerprints', () => {
  it('are what ssh-keygen -l prints, compared exactly', () => {
    const key = path.join(dir, 'k');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const printed = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${key}.pub`], {
      encoding: 'utf8',
    }).split(' ')[1]!;
    const parsed = ssh2.utils.parseKey(execFileSync('cat', [`${key}.pub`]));
    assert.ok(!(parsed instanceof Error));
    const fp = fingerprintOf(parsed.getPublicSSH());
    assert.equal(fp, printed);
    assert.ok(sameFingerprint(fp, printed));
    assert.ok(
      !sameFingerprint(
        fp,
        `${printed.slice(0, -1)}A` === printed ? `${printed.slice(0, -1)}B` : `${printed.slice(0, -1)}A`,
      ),
    );
    assert.ok(!sameFingerprint(fp, 'SHA256:short'));
  });
});

describe('pool keys: bootstrap, ssh, prepare', () => {
  const load = (toml: string) => {
    const file = path.join(dir, `c-${Math.random().toString(36).slice(2)}.toml`);
    writeFileSync(file, toml);
    return loadConfig({ cwd: dir, file, env: {}, dotenv: false }).config;
  };
  const fp = `SHA256:${'A'.repeat(43)}`;

  it('default to the provider delivering the bootstrap, and no prepare', () => {
    const pool = load('[[pools]]\nname = "linux"\nlabels = ["linux"]\n').pools[0]!;
    assert.equal(pool.bootstrap, 'provider');
    assert.deepEqual(pool.ssh, { dir: '.hatchery' });
    assert.equal(pool.prepare, undefined);
  });

  it('take an SSH pool and a prepare command; the key path is relative to the config file', () => {
    const c = load(`[ssh]
state_dir = "keys-here"
[[pools]]
name = "board"
labels = ["board"]
bootstrap = "ssh"
ssh = { user = "ci", dir = "/run/hatchery" }
network = "restricted"
prepare = { host = "board-1.lab", user = "ops", key = "ops_key", host_key = "${fp}", command = ["/usr/local/bin/board-prepare", "linux"] }
`);
    const pool = c.pools[0]!;
    assert.equal(pool.bootstrap, 'ssh');
    assert.deepEqual(pool.ssh, { user: 'ci', dir: '/run/hatchery' });
    assert.deepEqual(
      pool.settings,
      { network: 'restricted', forwards: [] },
      'provider keys still go to the provider',
    );
    assert.equal(pool.prepare?.key, path.join(dir, 'ops_key'));
    assert.equal(pool.prepare?.port, 22);
    assert.equal(pool.prepare?.timeout_seconds, 300);
    assert.equal(pool.prepare?.retryable, false);
    assert.equal(c.ssh.state_dir, path.join(dir, 'keys-here'));
  });

  it('name the key at fault', () => {
    const pool = (extra: string) => `[[pools]]\nname = "p"\nlabels = ["p"]\n${extra}\n`;
    const cases: [string, RegExp][] = [
      ['bootstrap = "cloud-init"', /pools\.0\.bootstrap/],
      ['ssh = { dir = "../etc" }', /pools\.0\.ssh\.dir: no "\.\." components/],
      ['ssh = { user = "root; id" }', /pools\.0\.ssh\.user/],
      ['ssh = { port = 2 }', /pools\.0\.ssh: unknown key\(s\) "port"/],
      [`prepare = { host = "h", user = "u", key = "k", command = ["x"] }`, /pools\.0\.prepare\.host_key/],
      [
        `prepare = { host = "h", user = "u", key = "k", host_key = "abc", command = ["x"] }`,
        /pools\.0\.prepare\.host_key: an OpenSSH SHA256 fingerprint/,
      ],
      [
        `prepare = { host = "-oProxyCommand=x", user = "u", key = "k", host_key = "${fp}", command = ["x"] }`,
        /pools\.0\.prepare\.host/,
      ],
      [
        `prepare = { host = "h", user = "u", key = "k", host_key = "${fp}", command = [] }`,
        /pools\.0\.prepare\.command/,
      ],
    ];
    for (const [extra, error] of cases) assert.throws(() => load(pool(extra)), error, extra);
  });
});

describe('QEMU\'s side of bootstrap = "ssh"', () => {
  it('forwards a loopback port to the guest sshd and hands over only the login key', () => {
    const files = vmFiles('/var/h', 'hatchery-ssh-1-1-abcdef');
    const spec = {
      name: 'hatchery-ssh-1-1-abcdef',
      pool: 'p',
      image: 'tiny-ssh',
      cpus: 1,
      memoryMiB: 256,
      bootstrap: '',
      guestConfig: {},
      tags: {},
    };
    const args = qemuArgs(
      spec,
      { kernel: '/k' },
      files,
      { mode: 'restricted', forwards: [] },
      { accel: 'tcg', forwardCommand: ['nc'], sshPort: 2222 },
    );
    const joined = args.join(' ');
    assert.match(joined, /user,id=n0,restrict=on,hostfwd=tcp:127\.0\.0\.1:2222-:22/);
    assert.match(
      joined,
      /-fw_cfg name=opt\/hatchery\/authorized_keys,file=\/var\/h\/hatchery-ssh-1-1-abcdef\/authorized_keys/,
    );
    assert.doesNotMatch(
      joined,
      /opt\/hatchery\/(config|bootstrap)/,
      'no bootstrap, no config (no JIT config) through the hypervisor',
    );
  });
});

describe('the start command', () => {
  it('takes the marker atomically, starts the bootstrap detached, and says when it was there already', () => {
    const work = mkdtempSync(path.join(dir, "start it's $(x) "));
    writeFileSync(path.join(work, 'bootstrap.sh'), 'echo "$1" > ran\n');
    const run = () => {
      try {
        execFileSync('sh', ['-c', startCommand(work)]);
        return 0;
      } catch (e) {
        return (e as { status: number }).status;
      }
    };
    assert.equal(run(), 0);
    assert.equal(run(), 3, 'the second start finds the marker');
    assert.ok(existsSync(path.join(work, 'started')), 'in the (quoted) directory');
  });
});

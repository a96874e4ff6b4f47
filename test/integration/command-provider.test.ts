// The external-command provider: the shared contract against the sample script driving real QEMU
// VMs (examples/command-provider/qemu-vm.sh), the sample's own promises (guest channel, adoption,
// no secret on any command line, abort in flight), and the protocol's failure handling against
// small fixture executables (timeouts, exit codes, garbage, stderr, secrets, ownership).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig, maskSecrets } from '../../src/config/load.ts';
import { silentLogger } from '../../src/log.ts';
import { Providers } from '../../src/providers/build.ts';
import { commandKind } from '../../src/providers/command/kind.ts';
import { ProviderError, type Provider, type VmSpec } from '../../src/providers/provider.ts';
import { defineProviderContract } from '../contracts/provider.ts';
import { SAMPLE, sampleImages } from '../helpers/command-provider.ts';
import { killAll, pidsWithArg } from '../helpers/processes.ts';
import { eventually } from '../helpers/stack.ts';

const root = mkdtempSync(path.join(tmpdir(), 'hatchery-command-'));
const stateDir = path.join(root, 'vms');
let imagesDir: string | undefined;
const images = async () => (imagesDir ??= await sampleImages(root));

after(() => {
  killAll(pidsWithArg(root));
  rmSync(root, { recursive: true, force: true });
});

/** A provider instance built through the kind, as the service builds it from hatchery.toml. */
function commandProvider(settings: Record<string, unknown>, instanceId = 'test'): Provider {
  return commandKind.create(commandKind.settings.parse(settings), {
    name: 'cmd',
    instanceId,
    pools: [{ name: 'linux', settings: commandKind.poolSettings.parse({}) }],
    log: silentLogger(),
  });
}

const sample = async (instanceId = 'test', extra: string[] = [], env: Record<string, string> = {}) =>
  commandProvider(
    {
      command: [SAMPLE, '--state-dir', stateDir, '--images-dir', await images(), ...extra],
      timeout_seconds: 60,
      env,
    },
    instanceId,
  );

const JIT = `aGF0Y2hlcnktaml0LWNvbmZpZw${'x'.repeat(40)}SECRET`;

/** A guest that reports one line on its channel, then idles until destroyed. */
const spec = (name: string): VmSpec => ({
  name,
  pool: 'linux',
  image: 'tiny',
  cpus: 1,
  memoryMiB: 128,
  bootstrap: [
    '#!/bin/sh',
    'for d in /sys/class/virtio-ports/*; do [ "$(cat $d/name)" = org.hatchery.0 ] && P=/dev/${d##*/}; done',
    'echo "event 1 booted $(grep ^HATCHERY_VM= "$1")" > "$P"',
    'sleep 600',
  ].join('\n'),
  guestConfig: { HATCHERY_JITCONFIG: JIT },
  tags: { 'hatchery.pool': 'linux' },
});

const vmTraces = (name: string): string[] => {
  const dir = path.join(stateDir, name);
  return [...pidsWithArg(`${dir}/`).map((p) => `pid ${p}`), ...(existsSync(dir) ? [dir] : [])];
};

defineProviderContract('command (sample script on QEMU)', async () => ({
  provider: await sample(),
  foreign: await sample('someone-else'),
  spec,
  badImage: 'no-such-image',
  traces: async (name) => vmTraces(name),
  abortPoints: [
    {
      what: 'once the script has written the VM directory, before QEMU runs',
      reached: async (name) => existsSync(path.join(stateDir, name, 'meta.json')),
    },
    {
      what: 'once QEMU runs, before the script answered',
      reached: async (name) => existsSync(path.join(stateDir, name, 'qemu.pid')),
    },
  ],
  cleanup: async () => undefined,
}));

describe('command provider: the sample script', () => {
  it('passes shellcheck (POSIX sh)', () => {
    const r = spawnSync('shellcheck', ['-s', 'sh', SAMPLE], { encoding: 'utf8' });
    assert.equal(r.error, undefined, 'shellcheck is missing: scripts/setup.sh installs it');
    assert.equal(r.status, 0, r.stdout);
  });

  it('hands the guest its config and carries guest messages over the channel', async () => {
    const p = await sample();
    const name = 'hatchery-cmd-channel';
    const info = await p.create(spec(name));
    try {
      assert.equal(info.channel?.kind, 'unix');
      const line = await new Promise<string>((resolve, reject) => {
        const sock = net.createConnection(info.channel!.kind === 'unix' ? info.channel!.path : '');
        sock.setEncoding('utf8');
        sock.on('data', (d: string) => {
          sock.destroy();
          resolve(d);
        });
        sock.on('error', reject);
      });
      assert.equal(line.trim(), `event 1 booted HATCHERY_VM=${name}`);
      assert.equal(
        existsSync(path.join(stateDir, name, 'guest-config')),
        false,
        'the config file (JIT config) is gone once QEMU read it',
      );
      assert.match((await p.console!(name)) ?? '', /hatchery-init: running the bootstrap/);
    } finally {
      await p.destroy(name);
    }
    assert.deepEqual(vmTraces(name), []);
    assert.match((await p.console!(name)) ?? '', /hatchery-init/, 'the console log is kept after destroy');
  });

  it('adopts running VMs after a restart: a new provider object finds and destroys them', async () => {
    const name = 'hatchery-cmd-adopt';
    await (await sample()).create(spec(name));
    const restarted = await sample();
    const found = (await restarted.list()).find((v) => v.name === name);
    assert.equal(found?.status, 'running');
    assert.equal(found?.channel?.kind, 'unix');
    assert.equal(found?.tags['hatchery.pool'], 'linux');
    await restarted.destroy(name);
    assert.deepEqual(vmTraces(name), []);
  });

  it('puts the JIT config on no command line and in no environment of any program it runs', async () => {
    // Every program the script starts through PATH goes through a shim that logs its argv and
    // environment, then runs the real one.
    const shims = path.join(root, 'shims');
    const log = path.join(root, 'shim.log');
    mkdirSync(shims);
    const shim = path.join(root, 'shim.sh');
    writeFileSync(
      shim,
      [
        '#!/bin/sh',
        'n=${0##*/}',
        '{ printf "exec %s" "$n"; printf " %s" "$@"; printf "\\n"; /usr/bin/tr "\\0" "\\n" < /proc/$$/environ; } >> "$SHIM_LOG"',
        'for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do',
        '  [ -x "$d/$n" ] && exec "$d/$n" "$@"',
        'done',
        'exit 127',
      ].join('\n'),
      { mode: 0o755 },
    );
    for (const dir of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
      for (const f of existsSync(dir) ? readdirSync(dir) : []) {
        if (!existsSync(path.join(shims, f))) symlinkSync(shim, path.join(shims, f));
      }
    }
    const p = await sample('test', [], { PATH: `${shims}:/usr/bin:/bin`, SHIM_LOG: log });
    const name = 'hatchery-cmd-argv';
    await p.create(spec(name));
    await p.destroy(name);
    const seen = readFileSync(log, 'utf8');
    assert.match(seen, /^exec jq /m, 'the shims saw the programs the script ran');
    assert.match(seen, new RegExp(`^exec qemu-system-x86_64 -name guest=${name} .*-fw_cfg`, 'm'));
    assert.equal(seen.includes(JIT), false, 'the JIT config appeared on a command line or in an environment');
    assert.deepEqual(vmTraces(name), []);
  });

  it('aborted while QEMU starts: the script and its children are killed, the VM removed', async () => {
    // A QEMU that never finishes starting: it records its pid, then hangs.
    const slowQemu = path.join(root, 'slow-qemu.sh');
    const pidFile = path.join(root, 'slow-qemu.pid');
    writeFileSync(slowQemu, `#!/bin/sh\necho $$ > ${pidFile}\nexec sleep 3600\n`, { mode: 0o755 });
    const p = await sample('test', ['--qemu', slowQemu]);
    const name = 'hatchery-cmd-abort';
    const ac = new AbortController();
    const creating = p.create(spec(name), ac.signal);
    const pid = await eventually(() => readPid(pidFile), 'QEMU started', 60_000);
    assert.ok(existsSync(path.join(stateDir, name, 'meta.json')), 'the VM was half-way created');
    ac.abort();
    await assert.rejects(creating, (e: unknown) => e instanceof ProviderError && /aborted/.test(e.message));
    assert.equal(alive(pid), false, 'the hanging QEMU (a grandchild) was killed');
    assert.deepEqual(pidsWithArg(SAMPLE), [], 'no script process is left');
    assert.deepEqual(vmTraces(name), [], 'the VM directory was removed');
  });
});

/** The pid a process wrote to `file`, once it is there. */
function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** A process that exists and has not exited (zombies do not count). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

describe('command provider: the protocol', () => {
  let dir: string;
  let n = 0;
  before(() => {
    dir = path.join(root, 'fixtures');
    mkdirSync(dir);
  });

  /**
   * A fixture executable: POSIX sh whose `create` runs `body` and whose other operations answer
   * `answers[op]` (default {}). Every call appends its operation to `calls`.
   */
  function fixture(
    body: string,
    answers: Record<string, string> = {},
    settings: Record<string, unknown> = {},
  ) {
    const d = path.join(dir, String(++n));
    mkdirSync(d);
    const file = path.join(d, 'provider.sh');
    const others = Object.entries(answers)
      .map(([op, a]) => `  ${op}) cat >/dev/null; printf '%s\\n' '${a}' ;;`)
      .join('\n');
    writeFileSync(
      file,
      [
        '#!/bin/sh',
        `cd ${d}`,
        'echo "$HATCHERY_OPERATION" >> calls',
        'case $HATCHERY_OPERATION in',
        `  create)\n${body}\n  ;;`,
        others,
        "  *) cat >/dev/null; echo '{}' ;;",
        'esac',
      ].join('\n'),
      { mode: 0o755 },
    );
    const calls = () => readFileSync(path.join(d, 'calls'), 'utf8').trim().split('\n');
    const provider = commandProvider({ command: [file], timeout_seconds: 30, ...settings });
    return { provider, dir: d, file, calls };
  }

  const vm = (name: string, extra = '') =>
    `{"name":"${name}","instance_id":"test","status":"running","tags":{},"created_at":"2026-12-02T10:00:00Z"${extra}}`;

  const rejectsWith = async (p: Promise<unknown>, re: RegExp, retryable: boolean) => {
    const e = await p.then(
      () => assert.fail('expected a failure'),
      (err: unknown) => err,
    );
    assert.ok(e instanceof ProviderError, `a ProviderError, not ${String(e)}`);
    assert.match(e.message, re);
    assert.equal(e.retryable, retryable, `retryable: ${e.message}`);
    return e;
  };

  it('answers a create with the VM the executable describes', async () => {
    const f = fixture(
      `cat >/dev/null; echo '{"version":1,"vm":${vm('hatchery-p-ok', ',"channel":{"kind":"unix","path":"/run/x.sock"},"extra":1')}}'`,
    );
    const info = await f.provider.create(spec('hatchery-p-ok'));
    assert.deepEqual(info, {
      name: 'hatchery-p-ok',
      status: 'running',
      tags: {},
      createdAt: '2026-12-02T10:00:00Z',
      channel: { kind: 'unix', path: '/run/x.sock' },
    });
    assert.deepEqual(f.calls(), ['create']);
  });

  it('an error answer: its message and retryability, the stderr tail, then a clean-up destroy', async () => {
    const f = fixture(
      `cat >/dev/null; echo "allocating on node 3" >&2\necho '{"error":{"message":"quota exceeded for pool linux","retryable":false}}'; exit 3`,
    );
    await rejectsWith(
      f.provider.create(spec('hatchery-p-quota')),
      /^create hatchery-p-quota: quota exceeded for pool linux \(exit 3\); stderr: allocating on node 3$/,
      false,
    );
    assert.deepEqual(f.calls(), ['create', 'destroy'], 'whatever the create left is destroyed');

    const g = fixture(`cat >/dev/null; echo '{"error":{"message":"hypervisor busy"}}'; exit 1`);
    await rejectsWith(g.provider.create(spec('hatchery-p-busy')), /hypervisor busy/, true);
  });

  it('a non-zero exit without an answer: retryable, with the last lines of stderr (bounded)', async () => {
    const f = fixture(
      'cat >/dev/null; i=0; while [ $i -lt 500 ]; do i=$((i+1)); echo "step $i" >&2; done; exit 2',
    );
    const e = await rejectsWith(
      f.provider.create(spec('hatchery-p-exit')),
      /^create hatchery-p-exit: failed \(exit 2, no error answer\); stderr: step 493 \| .* \| step 500$/,
      true,
    );
    assert.ok(e.message.length < 300, `bounded: ${e.message.length} characters`);
    assert.doesNotMatch(e.message, /step 492\b/);
  });

  it('garbage on stdout, or JSON that does not match the protocol: retryable errors naming the fault', async () => {
    const f = fixture('cat >/dev/null; echo "Starting VM... done"');
    await rejectsWith(
      f.provider.create(spec('hatchery-p-garbage')),
      /answered something that is not JSON: "Starting VM\.\.\. done"/,
      true,
    );
    const g = fixture(`cat >/dev/null; echo '{"vm":${vm('hatchery-p-schema', ',"status":"exploded"')}}'`);
    await rejectsWith(
      g.provider.create(spec('hatchery-p-schema')),
      /does not match the protocol \(vm\.status: /,
      true,
    );
    const h = fixture('cat >/dev/null', { list: '{"vms":[{"name":"../etc"}]}' });
    await rejectsWith(
      h.provider.list(),
      /^list: answered JSON that does not match the protocol \(vms\.0\.name/,
      true,
    );
    const v = fixture('cat >/dev/null', { list: '{"version":2,"vms":[]}' });
    await rejectsWith(v.provider.list(), /speaks protocol version 2, Hatchery 1/, false);
  });

  it('a timeout kills the executable and its whole process group, then cleans up', async () => {
    // The executable records its pid and its children's, then hangs.
    const f = fixture(
      [
        'cat >/dev/null',
        'echo $$ >> pids',
        'sleep 3600 & echo $! >> pids',
        "sh -c 'echo $$ >> pids; exec sleep 3600' &",
        'wait',
      ].join('\n'),
      {},
      { timeout_seconds: 3 },
    );
    await rejectsWith(
      f.provider.create(spec('hatchery-p-slow')),
      /^create hatchery-p-slow: timed out after 3 s; the command and its process group were killed$/,
      true,
    );
    const pids = readFileSync(path.join(f.dir, 'pids'), 'utf8').trim().split('\n').map(Number);
    assert.equal(pids.length, 3, 'all three processes had started');
    assert.deepEqual(
      pids.filter((p) => alive(p)),
      [],
      'no process is left',
    );
    assert.deepEqual(f.calls(), ['create', 'destroy']);
  });

  it('aborting a create in flight kills the executable and cleans up; one aborted before does not start', async () => {
    const f = fixture(['cat >/dev/null', 'sleep 3600 & echo $! > pid', 'wait'].join('\n'));
    const ac = new AbortController();
    const creating = f.provider.create(spec('hatchery-p-abort'), ac.signal);
    const child = await eventually(() => readPid(path.join(f.dir, 'pid')), 'the executable started');
    ac.abort();
    await rejectsWith(
      creating,
      /^create hatchery-p-abort: aborted; the command and its process group were killed$/,
      true,
    );
    assert.equal(alive(child), false);
    assert.deepEqual(f.calls(), ['create', 'destroy']);

    const g = fixture('cat >/dev/null; echo "{}"');
    const before = new AbortController();
    before.abort();
    await rejectsWith(
      g.provider.create(spec('hatchery-p-never'), before.signal),
      /aborted before the command started/,
      true,
    );
    assert.equal(existsSync(path.join(g.dir, 'calls')), false, 'the executable never ran');
  });

  it('the request travels on stdin only: not on the command line, not in the environment, not in errors', async () => {
    process.env.HATCHERY_TEST_SERVICE_SECRET = 'service-secret-value';
    try {
      const f = fixture(
        [
          'tr "\\0" "\\n" < /proc/$$/cmdline > argv',
          'tr "\\0" "\\n" < /proc/$$/environ > environ',
          'cat > stdin',
          'cat stdin >&2', // a careless executable echoing its input
          'jq -c \'{error: {message: ("refused config " + .vm.guest_config.HATCHERY_JITCONFIG)}}\' stdin',
          'exit 1',
        ].join('\n'),
        {},
        { env: { SITE: 'lab-1' } },
      );
      const e = await rejectsWith(f.provider.create(spec('hatchery-p-secret')), /refused config/, true);
      const read = (file: string) => readFileSync(path.join(f.dir, file), 'utf8');
      const request = JSON.parse(read('stdin')) as { vm: { guest_config: Record<string, string> } };
      assert.equal(
        request.vm.guest_config.HATCHERY_JITCONFIG,
        JIT,
        'the executable got the JIT config on stdin',
      );
      assert.equal(read('argv'), `/bin/sh\n${f.file}\n`);
      assert.equal(read('environ').includes(JIT), false);
      assert.equal(
        read('environ').includes('service-secret-value'),
        false,
        "the service's environment is not passed",
      );
      assert.match(read('environ'), /^SITE=lab-1$/m);
      assert.match(read('environ'), /^HATCHERY_OPERATION=create$/m);
      assert.equal(e.message.includes(JIT), false, 'the error message carries no secret');
      assert.match(e.message, /\[redacted\]/);
    } finally {
      delete process.env.HATCHERY_TEST_SERVICE_SECRET;
    }
  });

  it('the request: version, operation, ownership, the VM spec with the pool options', async () => {
    const d = path.join(dir, 'config');
    mkdirSync(d);
    writeFileSync(path.join(d, 'provider.sh'), '#!/bin/sh\ncat > last-request\necho \'{"vm": null}\'\n', {
      mode: 0o755,
    });
    // Through hatchery.toml: relative paths are relative to the config file.
    writeFileSync(
      path.join(d, 'hatchery.toml'),
      [
        'instance_id = "site-a"',
        '[providers.cmd]',
        'kind = "command"',
        'command = ["./provider.sh", "--flag"]',
        'env = { LAB_API_TOKEN = "tok-123456", SITE = "lab-1" }',
        '[[pools]]',
        'name = "linux"',
        'labels = ["linux"]',
        'options = { flavor = "m1.small", disks = [10, 20] }',
      ].join('\n'),
    );
    const config = loadConfig({ file: path.join(d, 'hatchery.toml'), env: {}, dotenv: false }).config;
    const settings = config.providers.cmd!.settings as { working_dir: string };
    assert.equal(settings.working_dir, d, 'working_dir: the config file directory');
    assert.deepEqual((maskSecrets(config) as typeof config).providers.cmd!.settings, {
      ...settings,
      env: { LAB_API_TOKEN: '********', SITE: 'lab-1' },
    });
    const providers = Providers.build(config, silentLogger());
    const p = providers.forPool('linux');
    assert.equal(p.kind, 'command');
    assert.equal(await p.get('hatchery-p-absent'), null);
    const last = () =>
      JSON.parse(readFileSync(path.join(d, 'last-request'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(last(), {
      version: 1,
      operation: 'get',
      instance_id: 'site-a',
      provider: 'cmd',
      name: 'hatchery-p-absent',
    });
    await rejectsWith(p.create(spec('hatchery-p-spec')), /does not match the protocol \(vm: /, true);
    // (the create's clean-up destroy came last: the create request is checked through the fixture above)
    assert.deepEqual(last(), {
      version: 1,
      operation: 'destroy',
      instance_id: 'site-a',
      provider: 'cmd',
      name: 'hatchery-p-spec',
    });

    const f = fixture('cat > request; echo \'{"error":{"message":"no"}}\'; exit 1');
    await assert.rejects(f.provider.create(spec('hatchery-p-request')));
    assert.deepEqual(JSON.parse(readFileSync(path.join(f.dir, 'request'), 'utf8')), {
      version: 1,
      operation: 'create',
      instance_id: 'test',
      provider: 'cmd',
      name: 'hatchery-p-request',
      vm: {
        name: 'hatchery-p-request',
        pool: 'linux',
        image: 'tiny',
        cpus: 1,
        memory_mib: 128,
        bootstrap: spec('x').bootstrap,
        guest_config: { HATCHERY_JITCONFIG: JIT },
        tags: { 'hatchery.pool': 'linux' },
        options: {},
      },
    });
    await providers.close();
  });

  it("ownership: another installation's VMs are never shown, even when the executable shows them", async () => {
    const ours = vm('hatchery-p-ours');
    const theirs = vm('hatchery-p-theirs').replace('"instance_id":"test"', '"instance_id":"other"');
    const f = fixture(`cat >/dev/null; echo '{"vm":${theirs.replace('theirs', 'taken')}}'`, {
      list: `{"vms":[${ours},${theirs}]}`,
      get: `{"vm":${theirs}}`,
    });
    assert.deepEqual(
      (await f.provider.list()).map((v) => v.name),
      ['hatchery-p-ours'],
    );
    assert.equal(await f.provider.get('hatchery-p-theirs'), null);
    await rejectsWith(f.provider.create(spec('hatchery-p-taken')), /taken by another installation/, false);
    assert.deepEqual(
      f.calls(),
      ['list', 'get', 'create'],
      "no clean-up destroy of another installation's VM",
    );
  });

  it('an executable that cannot be run: a permanent error naming it', async () => {
    const p = commandProvider({ command: [path.join(root, 'no-such-script')] });
    await rejectsWith(p.list(), /^list: cannot run .*no-such-script \(in .*\): ENOENT$/, false);
  });

  it('optional operations: console and prepare may be unsupported; prepare reports stderr as progress', async () => {
    const f = fixture('cat >/dev/null', { console: '{"unsupported":true}', prepare: '{"unsupported":true}' });
    assert.equal(await f.provider.console!('hatchery-p-console'), null);
    const g = fixture('cat >/dev/null', { console: '{"console":"boot log\\n"}' });
    assert.equal(await g.provider.console!('hatchery-p-console'), 'boot log\n');

    const progress: string[] = [];
    const h = commandProvider({
      command: [
        '/bin/sh',
        '-c',
        'cat >/dev/null; echo "fetching image" >&2; printf "checked" >&2; echo "{}"',
      ],
    });
    await h.prepare!('tiny', (m) => progress.push(m));
    assert.deepEqual(progress, ['fetching image', 'checked']);
  });
});

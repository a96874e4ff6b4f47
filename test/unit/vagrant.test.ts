// The vagrant provider's pure parts: Vagrant's machine-readable output, how a failure is
// described and classified, libvirt's domain list, the environment handed to Vagrant, SSH ports,
// and the processes a dead service left in a project dir.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ProviderError } from '../../src/providers/provider.ts';
import {
  describeFailure,
  machineState,
  parseMachineReadable,
  runVagrant,
} from '../../src/providers/vagrant/cli.ts';
import { boxVolumeName, parseDomainList } from '../../src/providers/vagrant/libvirt.ts';
import { parsePortRange, PortAllocator } from '../../src/providers/vagrant/ports.ts';
import { endStrays, processesIn } from '../../src/providers/vagrant/strays.ts';
import { vagrantEnv, type Meta } from '../../src/providers/vagrant/project.ts';

describe('vagrant machine-readable output', () => {
  const status = [
    '1796173932,hatchery-a,metadata,provider,libvirt',
    '1796173932,hatchery-a,provider-name,libvirt',
    '1796173932,hatchery-a,state,running',
    '1796173932,hatchery-a,state-human-short,running',
    '1796173932,,ui,info,Current machine states:\\n\\nhatchery-a   running (libvirt)%!(VAGRANT_COMMA) ok',
    'a plugin warning without the format',
  ].join('\n');

  it('parses records, unescaping commas and newlines, skipping other lines', () => {
    const records = parseMachineReadable(status);
    assert.equal(records.length, 5);
    assert.deepEqual(records[0], { target: 'hatchery-a', type: 'metadata', data: ['provider', 'libvirt'] });
    assert.equal(records[4]!.data[1], 'Current machine states:\n\nhatchery-a   running (libvirt), ok');
  });

  it("finds a machine's state", () => {
    assert.equal(machineState(parseMachineReadable(status), 'hatchery-a'), 'running');
    assert.equal(machineState(parseMachineReadable(status), 'hatchery-b'), null);
  });
});

describe('describeFailure', () => {
  it("takes Vagrant's error-exit record, and a missing box is not retryable", () => {
    const records = parseMachineReadable(
      "1,,error-exit,Vagrant::Errors::BoxNotFound,The box 'nope' could not be found.\\nSecond line",
    );
    assert.deepEqual(describeFailure(records, 'ignored'), {
      message: "BoxNotFound: The box 'nope' could not be found. | Second line",
      retryable: false,
    });
  });

  it('treats other Vagrant errors as retryable', () => {
    const records = parseMachineReadable(
      '1,,error-exit,VagrantPlugins::ProviderLibvirt::Errors::FogCreateServerError,Could not set up host forwarding rule',
    );
    assert.equal(describeFailure(records, '').retryable, true);
  });

  it('keeps the message of a Ruby backtrace, not its `from` lines', () => {
    const stderr = [
      "/p/Vagrantfile:5:in `block (3 levels) in <top>': injected failure (RuntimeError)",
      "\tfrom /usr/share/vagrant/lib/trigger.rb:10:in `run'",
      "\tfrom /usr/share/vagrant/lib/machine.rb:203:in `action'",
    ].join('\n');
    assert.deepEqual(describeFailure([], stderr), {
      message: "/p/Vagrantfile:5:in `block (3 levels) in <top>': injected failure (RuntimeError)",
      retryable: true,
    });
    assert.equal(describeFailure([], '').message, 'no output');
  });
});

describe('parseDomainList', () => {
  it('maps each domain to running or not', () => {
    const list = parseDomainList(' 3    hatchery-a   running\n -    hatchery-b   shut off\n\n');
    assert.deepEqual(
      [...list],
      [
        ['hatchery-a', 'running'],
        ['hatchery-b', 'other'],
      ],
    );
  });
});

describe('vagrantEnv', () => {
  const meta: Meta = {
    name: 'hatchery-a',
    instanceId: 'i',
    pool: 'linux',
    image: 'tiny',
    box: 'hatchery-tiny-0123',
    cpus: 2,
    memoryMiB: 512,
    sshPort: 2201,
    tags: {},
    createdAt: '2026-12-02T00:00:00Z',
  };
  const env = (guestConfig?: string) =>
    vagrantEnv({
      base: { PATH: '/usr/bin', HATCHERY_CONTROL_SECRET: 's3cret', HATCHERY_GUEST_CONFIG: 'stale' },
      vagrantHome: '/state/vagrant.d',
      libvirtUri: 'qemu:///system?socket=/l/run/libvirt-sock',
      meta,
      network: { mode: 'restricted', forwards: [{ guest: '10.0.2.100:80', host: '127.0.0.1:8080' }] },
      bootstrap: '/state/hatchery-a/.hatchery/bootstrap.sh',
      guestConfig,
    });

  it("passes the Vagrantfile's inputs and keeps the service's own HATCHERY_* variables out", () => {
    const e = env();
    assert.equal(e.PATH, '/usr/bin');
    assert.equal(e.HATCHERY_CONTROL_SECRET, undefined);
    assert.equal(e.HATCHERY_GUEST_CONFIG, undefined, 'the guest config only when given (up)');
    assert.equal(e.VAGRANT_HOME, '/state/vagrant.d');
    assert.equal(e.VAGRANT_CHECKPOINT_DISABLE, '1');
    assert.deepEqual(
      [e.HATCHERY_VM_NAME, e.HATCHERY_BOX, e.HATCHERY_CPUS, e.HATCHERY_MEMORY, e.HATCHERY_SSH_PORT],
      ['hatchery-a', 'hatchery-tiny-0123', '2', '512', '2201'],
    );
    assert.equal(e.HATCHERY_NETWORK, 'restricted');
    assert.equal(e.HATCHERY_FORWARDS, '10.0.2.100:80=127.0.0.1:8080');
    assert.equal(env('HATCHERY_VM=hatchery-a\n').HATCHERY_GUEST_CONFIG, 'HATCHERY_VM=hatchery-a\n');
  });
});

describe('SSH ports', () => {
  it('parses a range and refuses bad ones', () => {
    assert.deepEqual(parsePortRange('2200-2299'), { from: 2200, to: 2299 });
    for (const bad of ['22-80', '3000-2000', '2200', '2200-70000', 'a-b'])
      assert.throws(() => parsePortRange(bad));
  });

  it('hands out ports no VM has, none twice while reserved, none another program listens on', async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const busyPort = (busy.address() as net.AddressInfo).port;
    try {
      // A range holding the busy port and one a VM has; the other two may be free (another
      // program could hold one: the assertions do not assume which).
      const ports = new PortAllocator({ from: busyPort, to: busyPort + 3 });
      const used = new Set([busyPort + 1]);
      const taken: number[] = [];
      for (;;) {
        const port = await ports.take(used).catch(() => null);
        if (port === null) break;
        taken.push(port);
      }
      assert.ok(taken.length >= 1 && taken.length <= 2, `took ${taken.join(', ')}`);
      assert.equal(new Set(taken).size, taken.length, 'no port twice while reserved');
      for (const p of taken) assert.ok(p === busyPort + 2 || p === busyPort + 3, `took ${p}`);
      await assert.rejects(ports.take(used), /no free port/);
      ports.release(taken[0]!);
      assert.equal(await ports.take(used), taken[0]);
    } finally {
      busy.close();
    }
  });
});

// runVagrant's process handling, with `sh -c` in Vagrant's place: the command ends up in its
// own process group, and a timeout or an abort ends the whole group, not only its leader.
describe('runVagrant', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-run-vagrant-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const pidFile = path.join(dir, 'child.pid');
  // A child in the background (like ssh under Vagrant), then a wait. `$0` is --machine-readable.
  const script = `sleep 300 & echo $! >${pidFile}; echo "1,,ui,info,started"; wait`;
  const opts = (extra: object) => ({ binary: 'sh', cwd: dir, env: process.env, timeoutMs: 60_000, ...extra });
  const alive = (pid: number) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'; // a zombie has ended
    } catch {
      return false;
    }
  };
  const gone = async (pid: number) => {
    for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 25));
    return !alive(pid);
  };
  const childPid = async () => {
    for (let i = 0; i < 200 && !existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 25));
    return Number(readFileSync(pidFile, 'utf8'));
  };

  it('returns the parsed records of a command that succeeds', async () => {
    const r = await runVagrant(['-c', 'echo "1,m,state,running"'], opts({}));
    assert.deepEqual(r.records, [{ target: 'm', type: 'state', data: ['running'] }]);
  });

  it('fails with the exit code and the last stderr lines', async () => {
    const err = await runVagrant(['-c', 'echo one >&2; echo two >&2; exit 3'], opts({})).catch(
      (e: unknown) => e,
    );
    assert.ok(err instanceof ProviderError);
    assert.equal(err.message, 'vagrant -c failed (3): one | two');
    assert.equal(err.retryable, true);
  });

  it('ends the whole process group on timeout', async () => {
    rmSync(pidFile, { force: true });
    const err = await runVagrant(['-c', script], opts({ timeoutMs: 1000 })).catch((e: unknown) => e);
    assert.ok(err instanceof ProviderError && err.retryable);
    assert.match(err.message, /timed out after 1 s/);
    assert.ok(await gone(await childPid()), 'the background child was ended too');
  });

  it('ends the whole process group on abort', async () => {
    rmSync(pidFile, { force: true });
    const ac = new AbortController();
    const run = runVagrant(['-c', script], opts({ signal: ac.signal })).catch((e: unknown) => e);
    const child = await childPid();
    ac.abort();
    const err = await run;
    assert.ok(err instanceof ProviderError && err.retryable);
    assert.match(err.message, /aborted/);
    assert.ok(await gone(child), 'the background child was ended too');
  });

  it('says which package is missing when the executable is', async () => {
    const err = await runVagrant(['status'], opts({ binary: 'no-such-vagrant-binary' })).catch(
      (e: unknown) => e,
    );
    assert.ok(err instanceof ProviderError);
    assert.equal(err.retryable, false);
    assert.match(err.message, /install the Debian packages vagrant vagrant-libvirt/);
  });
});

// What a killed service leaves in a project dir: its `vagrant` commands (own process groups,
// so they outlive it), possibly stopped. `sleep` stands in for them: real processes, real /proc.
describe('endStrays', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'hatchery-strays-'));
  const project = path.join(root, 'hatchery-a');
  const sub = path.join(project, '.vagrant');
  const other = path.join(root, 'hatchery-ab'); // a name sharing a prefix: not in the project
  for (const d of [sub, other]) mkdirSync(d, { recursive: true });
  const started: number[] = [];
  const sleeper = (cwd: string): number => {
    const child = spawn('sleep', ['300'], { cwd, detached: true, stdio: 'ignore' });
    child.unref();
    started.push(child.pid!);
    return child.pid!;
  };
  after(() => {
    for (const pid of started) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* ended by the test */
      }
    }
    rmSync(root, { recursive: true, force: true });
  });

  it('ends every process working in the project dir, a stopped one too, and nothing else', async () => {
    const inProject = sleeper(project);
    const stopped = sleeper(sub);
    process.kill(stopped, 'SIGSTOP'); // ignores SIGTERM until continued
    const elsewhere = sleeper(other);
    const until = Date.now() + 10_000;
    while (processesIn(project).length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(processesIn(project).sort(), [inProject, stopped].sort());

    const ended = await endStrays(project);
    assert.deepEqual(ended.sort(), [inProject, stopped].sort());
    assert.deepEqual(processesIn(project), []);
    assert.deepEqual(processesIn(other), [elsewhere], 'a process outside the project dir is left alone');
    assert.deepEqual(await endStrays(project), [], 'nothing to end: nothing ended');
  });
});

describe('boxVolumeName', () => {
  it('names the volume as vagrant-libvirt 0.11 does (HandleBoxImage.get_volume_name)', () => {
    // An unversioned box (added from a file): version 0 and the image's mtime in seconds, so a
    // box added again gets a volume of its own (seen in CI: two first `up`s raced on it).
    assert.equal(
      boxVolumeName('hatchery-tiny-dd806ea30b528503', '0', 1_796_217_061_999),
      'hatchery-tiny-dd806ea30b528503_vagrant_box_image_0_1796217061_box.img',
    );
    assert.equal(
      boxVolumeName('debian/bookworm64', '12.20240905.1', 0),
      'debian-VAGRANTSLASH-bookworm64_vagrant_box_image_12.20240905.1_box.img',
    );
  });
});

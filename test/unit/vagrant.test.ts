// The vagrant provider's pure parts: Vagrant's machine-readable output, how a failure is
// described and classified, libvirt's domain list, the environment handed to Vagrant, SSH ports.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { describeFailure, machineState, parseMachineReadable } from '../../src/providers/vagrant/cli.ts';
import { parseDomainList } from '../../src/providers/vagrant/libvirt.ts';
import { parsePortRange, PortAllocator } from '../../src/providers/vagrant/ports.ts';
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

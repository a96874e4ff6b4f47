import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  macFor,
  netdevOption,
  qemuArgs,
  renderGuestConfig,
  vmFiles,
} from '../../src/providers/qemu/command-line.ts';

const spec = {
  name: 'hatchery-linux-1-1-abcdef',
  pool: 'linux',
  image: 'tiny',
  cpus: 2,
  memoryMiB: 256,
  bootstrap: '#!/bin/sh\n',
  guestConfig: {},
  tags: {},
};

describe('QEMU command line', () => {
  it('restricts user networking and forwards each guest connection through its own process', () => {
    const opt = netdevOption(
      { mode: 'restricted', forwards: [{ guest: '10.0.2.100:80', host: '127.0.0.1:8081' }] },
      ['busybox', 'nc'],
    );
    assert.equal(opt, 'user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 8081');
    assert.equal(netdevOption({ mode: 'open', forwards: [] }, ['nc']), 'user,id=n0');
  });
  it('daemonizes with a pid file, QMP and channel sockets, fw_cfg config, an overlay disk', () => {
    const files = vmFiles('/var/h', spec.name);
    const args = qemuArgs(
      spec,
      { kernel: '/k', initrd: '/i', disk: '/d.qcow2' },
      files,
      { mode: 'restricted', forwards: [] },
      { accel: 'tcg', forwardCommand: ['nc'] },
    );
    const joined = args.join(' ');
    for (const part of [
      '-daemonize',
      `-pidfile ${files.pidfile}`,
      `-qmp unix:${files.qmp},server=on,wait=off`,
      `socket,id=c0,path=${files.channel},server=on,wait=off`,
      'virtserialport,chardev=c0,name=org.hatchery.0',
      `name=opt/hatchery/config,file=${files.config}`,
      '-kernel /k',
      '-initrd /i',
      `file=${files.overlay},format=qcow2,if=virtio`,
      '-accel tcg,tb-size=32',
      '-m 256M -smp 2',
      `mac=${macFor(spec.name)}`,
    ]) {
      assert.ok(joined.includes(part), `missing ${part}`);
    }
    assert.ok(!joined.includes('/d.qcow2'), 'the base disk is never written: only its overlay is attached');
  });
  it('escapes commas in paths', () => {
    const files = vmFiles('/var/a,b', spec.name);
    assert.ok(
      qemuArgs(
        spec,
        {},
        files,
        { mode: 'open', forwards: [] },
        { accel: 'kvm', forwardCommand: [] },
      ).includes(`file:/var/a,,b/${spec.name}/console.log`),
    );
  });
  it('gives each VM its own MAC', () => {
    assert.notEqual(macFor('hatchery-a'), macFor('hatchery-b'));
    assert.match(macFor('hatchery-a'), /^52:54:00(:[0-9a-f]{2}){3}$/);
  });
  it('renders guest config lines and refuses values that could inject lines', () => {
    assert.equal(
      renderGuestConfig({ HATCHERY_VM: 'x', HATCHERY_NET: 'dhcp' }),
      'HATCHERY_VM=x\nHATCHERY_NET=dhcp\n',
    );
    assert.throws(
      () => renderGuestConfig({ HATCHERY_VM: 'x\nHATCHERY_RUNNER_URL=evil' }),
      /control characters/,
    );
    assert.throws(() => renderGuestConfig({ 'bad key': 'x' }), /invalid guest config key/);
  });
});

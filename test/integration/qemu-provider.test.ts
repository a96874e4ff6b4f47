// The QEMU provider against real VMs (the tiny guest, TCG): the shared provider contract, plus
// what is specific to QEMU: adoption after a restart, a VM killed under us, the guest channel.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { imageResolver } from '../../src/providers/qemu/images/resolve.ts';
import type { VmSpec } from '../../src/providers/provider.ts';
import { vmFiles } from '../../src/providers/qemu/command-line.ts';
import { QemuProvider } from '../../src/providers/qemu/provider.ts';
import { defineProviderContract } from '../contracts/provider.ts';
import { killAll, qemuPidsUnder } from '../helpers/processes.ts';
import { IMAGES_DIR } from '../helpers/images.ts';

const root = mkdtempSync(path.join(tmpdir(), 'hatchery-qemu-'));
const stateDir = path.join(root, 'vms');
const resolveImage = imageResolver(IMAGES_DIR);
const provider = (instanceId = 'test') =>
  new QemuProvider({ stateDir, instanceId, accel: 'tcg', resolveImage });

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
  guestConfig: {},
  tags: { 'hatchery.pool': 'linux' },
});

after(() => {
  killAll(qemuPidsUnder(root));
  rmSync(root, { recursive: true, force: true });
});

/** Stops the VM's QEMU processes where they are (SIGSTOP); the function returned lets them go on. */
async function freeze(name: string): Promise<() => void> {
  const pids = qemuPidsUnder(path.join(stateDir, name));
  const send = (sig: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch {
        /* gone */
      }
    }
  };
  send('SIGSTOP');
  return () => send('SIGCONT');
}

defineProviderContract('qemu', async () => ({
  provider: provider(),
  foreign: provider('someone-else'),
  spec,
  badImage: 'no-such-image',
  traces: async (name) => {
    const dir = path.join(stateDir, name);
    return [...qemuPidsUnder(dir).map((p) => `qemu pid ${p}`), ...(existsSync(dir) ? [dir] : [])];
  },
  abortPoints: [
    {
      what: 'once its files are written, before QEMU starts',
      reached: async (name) => existsSync(path.join(stateDir, name, 'meta.json')),
    },
    {
      // `qemu -daemonize`: the first process sets up, forks the VM process (which writes
      // qemu.pid) and exits once the VM runs.
      what: 'once QEMU has started, before it forked the VM process',
      reached: async (name) =>
        qemuPidsUnder(path.join(stateDir, name)).length === 1 && !existsSync(vmFiles(stateDir, name).pidfile),
      hold: freeze,
    },
    {
      what: 'once QEMU forked the VM process, before the first process exited',
      reached: async (name) => qemuPidsUnder(path.join(stateDir, name)).length >= 2,
      hold: freeze,
    },
    {
      what: 'once the VM runs, before create returned',
      reached: async (name) =>
        existsSync(vmFiles(stateDir, name).pidfile) && qemuPidsUnder(path.join(stateDir, name)).length === 1,
    },
  ],
  cleanup: async () => undefined,
}));

describe('qemu provider', () => {
  it('hands the guest its config and carries guest messages over the channel', async () => {
    const p = provider();
    const name = 'hatchery-qemu-channel';
    const info = await p.create(spec(name));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        assert.equal(info.channel?.kind, 'unix');
        const sock = net.createConnection(info.channel.path);
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
      assert.match((await p.console(name)) ?? '', /hatchery-init: running the bootstrap/);
    } finally {
      await p.destroy(name);
    }
  });

  it('adopts running VMs after a restart: a new provider object finds and destroys them', async () => {
    const name = 'hatchery-qemu-adopt';
    await provider().create(spec(name));
    const restarted = provider();
    const found = (await restarted.list()).find((v) => v.name === name);
    assert.equal(found?.status, 'running');
    assert.ok(found?.channel);
    await restarted.destroy(name);
    assert.deepEqual(qemuPidsUnder(path.join(stateDir, name)), []);
  });

  it('reports a VM whose QEMU died as stopped, and destroy cleans it up', async () => {
    const name = 'hatchery-qemu-killed';
    const p = provider();
    await p.create(spec(name));
    killAll(qemuPidsUnder(path.join(stateDir, name)));
    for (let i = 0; i < 100 && qemuPidsUnder(path.join(stateDir, name)).length; i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal((await p.list()).find((v) => v.name === name)?.status, 'stopped');
    await p.destroy(name);
    assert.equal(existsSync(path.join(stateDir, name)), false);
  });
});

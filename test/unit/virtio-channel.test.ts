// The host end of a VM's virtio-serial channel (src/guest/channel.ts; the HTTP channel has
// test/integration/guest-channel.test.ts) against a real unix socket whose other end is a
// separate process, as QEMU's is: messages in order and once, a gap asks for a replay, and a
// guest that writes its last events and exits before our connect callback runs (a late event
// loop) still has them read.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { GuestChannel } from '../../src/guest/channel.ts';
import type { GuestMessage } from '../../src/guest/protocol.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-channel-'));
const children: ChildProcess[] = [];

after(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/**
 * A guest in its own process, listening on a unix socket as QEMU does. On each connection it
 * writes `lines` at once and echoes what the host sent to stdout; with `exit`, the process exits
 * once they are written (the VM powered off, QEMU gone). Resolves once it listens.
 */
async function guest(
  name: string,
  lines: string[],
  opts: { exit?: boolean } = {},
): Promise<{ path: string; received: () => Promise<string> }> {
  const socket = path.join(dir, `${name}.sock`);
  const code = `
    const net = require('node:net');
    let got = '';
    const server = net.createServer((s) => {
      s.on('data', (d) => { got += d; process.stdout.write(d); });
      s.on('error', () => {});
      // With exit, the VM powers off once its events are written: the process (QEMU) is gone.
      s.write(${JSON.stringify(lines.map((l) => `${l}\n`).join(''))}, () => ${opts.exit ? 'process.exit(0)' : 'undefined'});
    });
    server.listen(${JSON.stringify(socket)}, () => process.stdout.write('listening\\n'));
  `;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let out = '';
  child.stdout!.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: string) => {
      out += d;
      if (out.includes('listening\n')) resolve();
    });
    child.once('exit', (c) => reject(new Error(`guest process exited ${c}`)));
  });
  return { path: socket, received: async () => out.replace('listening\n', '') };
}

/** Collects a channel's messages until it closes (or `until` says enough). */
function collect(
  link: GuestChannel,
  until: (msgs: GuestMessage[]) => boolean = () => false,
): Promise<{ msgs: GuestMessage[]; closed: string | null }> {
  const msgs: GuestMessage[] = [];
  return new Promise((resolve) => {
    link.on('message', (m) => {
      msgs.push(m);
      if (until(msgs)) resolve({ msgs, closed: null });
    });
    link.on('closed', (reason) => resolve({ msgs, closed: reason }));
  });
}

test('events a guest wrote before exiting are read even when our connect callback runs late', async () => {
  const g = await guest('late', ['event 1 booted', 'event 2 registered', 'event 3 poweroff'], { exit: true });
  const link = new GuestChannel(g.path);
  const got = collect(link);
  const connected = link.connect();
  // The event loop is late: the kernel completes the connect at once, the guest writes its events
  // and exits while this process is busy, so the socket's peer is gone when the callback runs.
  const until = Date.now() + 300;
  while (Date.now() < until) {
    /* busy */
  }
  await connected;
  const { msgs, closed } = await got;
  assert.deepEqual(
    msgs.map((m) => `${m.seq} ${m.name}`),
    ['1 booted', '2 registered', '3 poweroff'],
  );
  assert.equal(closed, 'VM channel closed (QEMU exited)');
});

test("a VM's first host asks for no replay: it writes nothing, and a guest that exits at once loses nothing", async () => {
  const g = await guest('first', ['event 1 booted', 'event 2 registered', 'event 3 poweroff'], {
    exit: true,
  });
  const link = new GuestChannel(g.path);
  const got = collect(link);
  await link.connect({ replay: false });
  const { msgs, closed } = await got;
  assert.deepEqual(
    msgs.map((m) => `${m.seq} ${m.name}`),
    ['1 booted', '2 registered', '3 poweroff'],
  );
  assert.equal(closed, 'VM channel closed (QEMU exited)');
  assert.equal(await g.received(), '');
});

test('a connect asks for a replay (sync); replayed and repeated events are applied once, a gap asks again', async () => {
  // seq 1 is applied already (e.g. before a restart); 2 and 3 are new, 2 comes twice, 5 is a gap.
  const g = await guest('replay', [
    'event 1 booted',
    'event 2 registered',
    'event 2 registered',
    'event 3 job-started j',
    'event 5 poweroff',
  ]);
  const link = new GuestChannel(g.path, 1);
  const got = collect(link, (m) => m.length === 2);
  await link.connect();
  const { msgs } = await got;
  assert.deepEqual(
    msgs.map((m) => `${m.seq} ${m.name} ${m.detail}`),
    ['2 registered ', '3 job-started j'],
  );
  // The host's lines reached the guest: the replay request on connect, and one after the gap.
  for (let i = 0; i < 100 && (await g.received()).split('\n').filter(Boolean).length < 2; i++)
    await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual((await g.received()).split('\n').filter(Boolean), ['sync', 'sync']);
  assert.equal(link.appliedSeq, 3);
  link.close();
});

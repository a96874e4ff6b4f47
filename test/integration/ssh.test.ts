// The SSH bootstrap and the `prepare` command against a real OpenSSH sshd on 127.0.0.1 (its own
// host key, a free port): host keys checked before anything is sent, first-use pinning held on
// reconnect, files copied private and started detached exactly once, per-VM keys 0600 and never
// logged, and `prepare` through a real service (memory provider, real SQLite): its output in the
// audit trail, its failures and its time limit (the remote command killed).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'smol-toml';
import { loadConfig } from '../../src/config/load.ts';
import { configSchema, type PoolConfig } from '../../src/config/schema.ts';
import { sign } from '../../src/crypto/hmac.ts';
import { createLogger } from '../../src/log.ts';
import { RemoteError } from '../../src/remote/port.ts';
import { SshRemote } from '../../src/remote/remote.ts';
import { HatcheryService } from '../../src/service.ts';
import { FakeGitHub } from '../fakes/github/server.ts';
import { makeKeyPair, fingerprintOfFile, TestSshd } from '../helpers/sshd.ts';
import { eventually } from '../helpers/stack.ts';

/** A logger writing into a string (to prove what is never logged). */
function capturingLogger() {
  const out = { text: '' };
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.text += chunk.toString();
      cb();
    },
  });
  return { out, log: createLogger({ level: 'trace', destination: stream }) };
}

function sshPool(dir: string): PoolConfig {
  const config = configSchema.parse({
    providers: { sim: { kind: 'memory' } },
    pools: [{ name: 'sshpool', labels: ['x'], bootstrap: 'ssh', ssh: { user: 'root', dir } }],
  });
  return config.pools[0]!;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('SSH bootstrap against a real sshd', () => {
  let sshd: TestSshd;
  const tmp = mkdtempSync(path.join(tmpdir(), 'hatchery-ssh-'));
  const { out, log } = capturingLogger();
  const remote = new SshRemote(path.join(tmp, 'state'), log);
  let n = 0;
  const newVm = () => `hatchery-ssh-${++n}-${randomBytes(3).toString('hex')}`;
  const address = () => ({ host: '127.0.0.1', port: sshd.port, user: 'nobody' });
  const soon = () => Date.now() + 15_000;
  const never = async () => assert.fail('onFirstUse must not be called');

  before(async () => {
    sshd = await TestSshd.start();
  });
  after(async () => {
    await sshd?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('refuses a host key other than the expected one before logging in: nothing is copied', async () => {
    const vm = newVm();
    const dir = path.join(tmp, vm);
    sshd.authorize(await remote.authorizedKey(vm));
    const other = makeKeyPair(tmp, `other-${vm}`);
    const wrong = fingerprintOfFile(`${other.key}.pub`);
    await assert.rejects(
      remote.connect(
        vm,
        sshPool(dir),
        address(),
        { expected: wrong, onFirstUse: never },
        soon(),
        AbortSignal.timeout(30_000),
      ),
      (e: Error) => {
        assert.ok(e instanceof RemoteError, e.message);
        assert.equal(e.retryable, false, 'a mismatch is not retried');
        assert.match(e.message, /host key mismatch/);
        assert.ok(e.message.includes(wrong) && e.message.includes(sshd.hostKey), e.message);
        return true;
      },
    );
    assert.equal(existsSync(dir), false, 'nothing was copied');
    assert.doesNotMatch(readFileSync(sshd.log, 'utf8'), /Accepted publickey/, 'it never logged in');
  });

  it('pins the host key at first use and holds a reconnect to it', async () => {
    const vm = newVm();
    const dir = path.join(tmp, vm);
    const pool = sshPool(dir);
    sshd.authorize(await remote.authorizedKey(vm));
    const pinned: string[] = [];
    const first = await remote.connect(
      vm,
      pool,
      address(),
      { onFirstUse: async (fp) => void pinned.push(fp) },
      soon(),
      AbortSignal.timeout(30_000),
    );
    first.close();
    assert.deepEqual(pinned, [sshd.hostKey], 'the presented key was pinned');
    assert.match(readFileSync(sshd.log, 'utf8'), /Accepted publickey for root/);

    const again = await remote.connect(
      vm,
      pool,
      address(),
      { expected: pinned[0], onFirstUse: never },
      soon(),
      AbortSignal.timeout(30_000),
    );
    assert.equal(again.hostKey, pinned[0]);
    again.close();

    // Another machine answers at that address now (here: the same sshd with a new host key).
    const before = sshd.hostKey;
    sshd.newHostKey();
    await sshd.restart();
    assert.notEqual(sshd.hostKey, before);
    await assert.rejects(
      remote.connect(
        vm,
        pool,
        address(),
        { expected: pinned[0], onFirstUse: never },
        soon(),
        AbortSignal.timeout(30_000),
      ),
      (e: Error) => e instanceof RemoteError && !e.retryable && /host key mismatch/.test(e.message),
    );
    assert.equal(existsSync(dir), false, 'nothing was copied');
  });

  it('copies the bootstrap and its config into a private directory and starts it detached, once', async () => {
    const vm = newVm();
    const dir = path.join(tmp, vm);
    const pool = sshPool(dir);
    sshd.authorize(await remote.authorizedKey(vm));
    const trust = { expected: sshd.hostKey, onFirstUse: never };
    const script = [
      '#!/bin/sh',
      'echo run >> runs',
      'cat "$1" > seen-config',
      // Still running after the SSH session has ended: it was detached.
      'sleep 1',
      'ps -o sid= -p $$ > sid',
      'echo after-the-session > done',
      '',
    ].join('\n');
    const config = `HATCHERY_VM=${vm}\nHATCHERY_JITCONFIG=not-a-real-one\n`;

    const session = await remote.connect(vm, pool, address(), trust, soon(), AbortSignal.timeout(30_000));
    assert.equal(await session.started(), false);
    assert.equal(await session.start({ script, config }), true);
    session.close();
    await eventually(
      () => (existsSync(path.join(dir, 'done')) ? true : undefined),
      'the detached bootstrap to finish',
      20_000,
    );

    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(path.join(dir, 'bootstrap.sh')).mode & 0o777, 0o600);
    assert.equal(statSync(path.join(dir, 'config')).mode & 0o777, 0o600);
    assert.equal(readFileSync(path.join(dir, 'seen-config'), 'utf8'), config, 'it was given the config');
    assert.notEqual(readFileSync(path.join(dir, 'sid'), 'utf8').trim(), '', 'it ran in a session of its own');

    // A resumed step: the marker says it was started; starting again starts nothing.
    const resumed = await remote.connect(vm, pool, address(), trust, soon(), AbortSignal.timeout(30_000));
    assert.equal(await resumed.started(), true);
    assert.equal(await resumed.start({ script, config }), false);
    resumed.close();
    assert.equal(readFileSync(path.join(dir, 'runs'), 'utf8'), 'run\n', 'the bootstrap ran exactly once');
  });

  it('retries while nothing answers, then gives up at the deadline with the last error', async () => {
    const vm = newVm();
    await remote.authorizedKey(vm);
    const closed = { host: '127.0.0.1', port: 1, user: 'root' };
    await assert.rejects(
      remote.connect(
        vm,
        sshPool(path.join(tmp, vm)),
        closed,
        { onFirstUse: never },
        Date.now() + 2500,
        AbortSignal.timeout(30_000),
      ),
      (e: Error) =>
        e instanceof RemoteError &&
        e.retryable &&
        /no SSH login at root@127\.0\.0\.1:1 in time \([2-9]\d* attempts; last: .*ECONNREFUSED/.test(
          e.message,
        ),
    );
  });

  it('keeps each private key 0600 in a 0700 directory, never logs it, and removes it', async () => {
    const vm = newVm();
    const keep = newVm();
    await remote.authorizedKey(vm);
    await remote.authorizedKey(keep);
    const file = remote.keys.file(vm);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(remote.keys.dir).mode & 0o777, 0o700);
    const body = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('-----'));
    assert.ok(body.length > 0);
    assert.ok(out.text.length > 0, 'the tests above logged');
    for (const line of body) assert.ok(!out.text.includes(line), 'no line of a private key is in the log');
    assert.ok(!out.text.includes('PRIVATE KEY'));

    await remote.forget(vm);
    assert.equal(existsSync(file), false);
    await remote.forget(vm); // absent: nothing to do

    // Start-up: keys of VMs that are gone go; the others stay.
    const gone = await remote.sweep(async (names) => names.filter((x) => x !== keep));
    assert.ok(!gone.includes(keep));
    assert.deepEqual(await remote.keys.list(), [keep]);
  });
});

describe('prepare command (real sshd, real service on the memory provider)', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'hatchery-prepare-'));
  const secret = randomBytes(16).toString('hex');
  const ghToken = `ghp_${randomBytes(18).toString('hex')}`;
  const instanceId = `prep-${randomBytes(3).toString('hex')}`;
  let sshd: TestSshd;
  let fake: FakeGitHub;
  let service: HatcheryService;
  let runId = 0;
  const orphanKey = 'hatchery-orphan-1-abcdef';

  before(async () => {
    sshd = await TestSshd.start();
    const client = makeKeyPair(tmp, 'prepare_key');
    sshd.authorize(client.pub);
    fake = await FakeGitHub.start({ tokens: [ghToken] });
    const prepare = (command: string[], extra: Record<string, unknown> = {}) => ({
      host: '127.0.0.1',
      port: sshd.port,
      user: 'root',
      key: 'prepare_key', // relative to the config file
      host_key: sshd.hostKey,
      command,
      ...extra,
    });
    const other = makeKeyPair(tmp, 'not_the_host');
    mkdirSync(path.join(tmp, 'ssh', 'keys'), { recursive: true, mode: 0o700 });
    writeFileSync(path.join(tmp, 'ssh', 'keys', `${orphanKey}.key`), 'left by a crash', { mode: 0o600 });
    const file = path.join(tmp, 'hatchery.toml');
    writeFileSync(
      file,
      stringify({
        instance_id: instanceId,
        server: { port: 0 },
        api: { token: randomBytes(16).toString('hex') },
        control: { secret },
        github: { api_url: fake.url, token: ghToken },
        runner: { url: 'http://10.0.2.100/runner.tgz', sha256: '0'.repeat(64) },
        store: { path: path.join(tmp, 'hatchery.db') },
        ssh: { state_dir: 'ssh' },
        workers: { poll_ms: 20 },
        log: { level: 'silent' },
        providers: { sim: { kind: 'memory' } },
        pools: [
          {
            name: 'ok',
            labels: ['ok'],
            prepare: prepare([
              'sh',
              '-c',
              'echo "preparing $HATCHERY_VM for $HATCHERY_REPOSITORY ($HATCHERY_POOL, $HATCHERY_LABEL)"; echo "from stderr" >&2',
            ]),
          },
          {
            name: 'bad',
            labels: ['bad'],
            prepare: prepare([
              'sh',
              '-c',
              'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "step $i"; done; echo "board 7 not found" >&2; exit 3',
            ]),
          },
          {
            name: 'slow',
            labels: ['slow'],
            prepare: prepare(
              [
                'sh',
                '-c',
                `echo $$ > ${tmp}/slow.pid; sleep 300 & echo $! > ${tmp}/slow.child; echo waiting; wait`,
              ],
              { timeout_seconds: 2 },
            ),
          },
          {
            name: 'spoofed',
            labels: ['spoofed'],
            prepare: prepare(['sh', '-c', `touch ${tmp}/spoofed-ran`], {
              host_key: fingerprintOfFile(`${other.key}.pub`),
            }),
          },
        ],
      }),
    );
    const { config } = loadConfig({ file, env: {}, dotenv: false });
    service = await HatcheryService.start({ config, log: createLogger({ level: 'silent' }) });
  });
  after(async () => {
    await service?.stop();
    await fake?.close();
    await sshd?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  async function create(label: string): Promise<string> {
    const body = JSON.stringify({
      action: 'create',
      repository: 'octo/app',
      run_id: ++runId,
      run_attempt: 1,
      labels: [label],
    });
    const res = await fetch(`${service.url}/hooks/control`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-hatchery-signature-256': sign('sha256', secret, body),
      },
      body,
    });
    assert.equal(res.status, 202);
    return ((await res.json()) as { vms: { name: string }[] }).vms[0]!.name;
  }
  const settled = (name: string, states: string[]) =>
    eventually(
      async () => {
        const vm = await service.store.getVm(name);
        return vm && states.includes(vm.state) ? vm : undefined;
      },
      `${name} in ${states.join('|')}`,
      30_000,
    );
  const events = async (id: number) =>
    (await service.store.listEvents(id)).map((e) => `${e.event}: ${e.note}`);

  it('removed, at start-up, the key of a VM the store does not know', () => {
    assert.equal(existsSync(path.join(tmp, 'ssh', 'keys', `${orphanKey}.key`)), false);
  });

  it('runs before the VM is created, with the VM identifiers; its output is in the audit trail', async () => {
    const name = await create('ok');
    const vm = await settled(name, ['booting']);
    const created = (await events(vm.id)).find((e) => e.startsWith('created: '));
    assert.ok(created, JSON.stringify(await events(vm.id)));
    assert.ok(created.includes(`prepare on root@127.0.0.1:${sshd.port} exited 0`), created);
    assert.ok(created.includes(`preparing ${name} for octo/app (ok, ok)`), created);
    assert.ok(created.includes('from stderr'), created);
  });

  it('fails the VM on a non-zero exit, with the status and the last lines of output, not retried', async () => {
    const name = await create('bad');
    const vm = await settled(name, ['failed']);
    assert.match(
      vm.failure ?? '',
      /^create failed: prepare on root@127\.0\.0\.1:\d+ exited 3; output \(last lines\): step 4 \| .*step 12 \| board 7 not found$/,
    );
    assert.ok(!(vm.failure ?? '').includes('step 2 |'), 'only the last lines');
    const trail = await events(vm.id);
    assert.equal(
      trail.filter((e) => e.startsWith('create_failed')).length,
      1,
      'not retried (retryable = false)',
    );
    assert.ok(!trail.some((e) => e.startsWith('created')), JSON.stringify(trail));
  });

  it('kills a command that outlives timeout_seconds (its whole process group) and fails the VM', async () => {
    const name = await create('slow');
    const vm = await settled(name, ['failed']);
    assert.match(
      vm.failure ?? '',
      /prepare on root@127\.0\.0\.1:\d+ timed out after 2 s \(the command was killed\); output: waiting$/,
    );
    const pid = Number(readFileSync(path.join(tmp, 'slow.pid'), 'utf8'));
    const child = Number(readFileSync(path.join(tmp, 'slow.child'), 'utf8'));
    await eventually(
      () => (!alive(pid) && !alive(child) ? true : undefined),
      'the remote command and its child to be gone',
      10_000,
    );
  });

  it('refuses a host whose key is not the configured one: the command never runs', async () => {
    const name = await create('spoofed');
    const vm = await settled(name, ['failed']);
    assert.match(vm.failure ?? '', /prepare: ssh root@127\.0\.0\.1:\d+: host key mismatch/);
    assert.equal(existsSync(path.join(tmp, 'spoofed-ran')), false);
  });
});

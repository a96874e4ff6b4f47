// packer/debian-runner: `packer validate` accepts the template (Debian's Packer 1.6.6, HCL2),
// and fails on broken copies, so this check can fail. The scripts it runs parse in sh. build.sh's
// cache decision (the inputs hash) and finish.sh's move into place, without building an image
// (test/e2e/debian-runner.test.ts builds one).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const TEMPLATE_DIR = path.join(repo, 'packer/debian-runner');
const TEMPLATE = 'debian-runner.pkr.hcl';
const root = mkdtempSync(path.join(os.tmpdir(), 'hatchery-packer-test-'));
const hasPacker =
  spawnSync('packer', ['version'], { env: { ...process.env, CHECKPOINT_DISABLE: '1' } }).status === 0;
const hasShellcheck = spawnSync('shellcheck', ['--version']).status === 0;

// What build-base.sh leaves for the template: validate stats (and parses) the SSH key.
const baseDir = path.join(root, 'base');
mkdirSync(baseDir);
const { privateKey } = generateKeyPairSync('ed25519', {
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  publicKeyEncoding: { type: 'spki', format: 'pem' },
});
writeFileSync(path.join(baseDir, 'build-key'), privateKey, { mode: 0o600 });

function validate(dir: string, vars: Record<string, string> = {}) {
  const args = ['validate', '-var', `base_dir=${baseDir}`];
  for (const [k, v] of Object.entries(vars)) args.push('-var', `${k}=${v}`);
  args.push(path.join(dir, TEMPLATE));
  const r = spawnSync('packer', args, {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, CHECKPOINT_DISABLE: '1', PACKER_LOG: '' },
  });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** A copy of the template dir to break; the bootstrap path is passed explicitly. */
function copyTemplate(): string {
  const dir = mkdtempSync(path.join(root, 'copy-'));
  cpSync(TEMPLATE_DIR, dir, { recursive: true });
  return dir;
}
const bootstrapVar = { bootstrap: path.join(repo, 'bootstrap/linux.sh') };

after(() => {
  rmSync(root, { recursive: true, force: true });
  assert.ok(!existsSync(root), 'temp files left behind');
});

describe(
  'packer/debian-runner',
  { skip: hasPacker ? false : 'packer not installed (Debian package packer)' },
  () => {
    it('validates', () => {
      const r = validate(TEMPLATE_DIR);
      assert.equal(r.status, 0, r.output);
    });

    it('takes the accelerator as a variable (tcg by default, kvm where it works)', () => {
      const hcl = readFileSync(path.join(TEMPLATE_DIR, TEMPLATE), 'utf8');
      assert.match(hcl, /variable "accelerator" \{[^}]*default\s*=\s*"tcg"/);
      assert.equal(validate(TEMPLATE_DIR, { accelerator: 'kvm' }).status, 0);
      const bad = validate(TEMPLATE_DIR, { accelerator: 'warp-drive' });
      assert.notEqual(bad.status, 0);
      assert.match(bad.output, /invalid accelerator/);
    });

    it('takes the Debian mirrors as variables (deb.debian.org by default)', () => {
      const hcl = readFileSync(path.join(TEMPLATE_DIR, TEMPLATE), 'utf8');
      assert.match(hcl, /variable "mirror" \{[^}]*default\s*=\s*"http:\/\/deb\.debian\.org\/debian"/);
      assert.match(
        hcl,
        /variable "security_mirror" \{[^}]*default\s*=\s*"http:\/\/deb\.debian\.org\/debian-security"/,
      );
      const r = validate(TEMPLATE_DIR, {
        mirror: 'http://mirror.example/debian',
        security_mirror: 'http://mirror.example/debian-security',
      });
      assert.equal(r.status, 0, r.output);
    });

    it('builds in a hidden sibling of output_dir, which finish.sh moves into place', () => {
      const hcl = readFileSync(path.join(TEMPLATE_DIR, TEMPLATE), 'utf8');
      assert.match(
        hcl,
        /work_dir\s*=\s*"\$\{dirname\(var\.output_dir\)\}\/\.\$\{basename\(var\.output_dir\)\}\.partial"/,
      );
      assert.match(hcl, /output_directory\s*=\s*local\.work_dir\n/);
      assert.match(hcl, /post-processor "shell-local" \{\s*script\s*=\s*"\$\{path\.root\}\/finish\.sh"/);
    });

    it('binds the build VM to 127.0.0.1 only', () => {
      const hcl = readFileSync(path.join(TEMPLATE_DIR, TEMPLATE), 'utf8');
      assert.match(hcl, /hostfwd=tcp:127\.0\.0\.1:\{\{ \.SSHHostPort \}\}-:22/);
      assert.match(hcl, /vnc_bind_address\s*=\s*"127\.0\.0\.1"/);
    });

    it('a faithful copy validates (the control for the broken ones)', () => {
      const r = validate(copyTemplate(), bootstrapVar);
      assert.equal(r.status, 0, r.output);
    });

    it('fails on a broken copy: an unknown option', () => {
      const dir = copyTemplate();
      const file = path.join(dir, TEMPLATE);
      writeFileSync(
        file,
        readFileSync(file, 'utf8').replace(
          'disk_image       = true',
          'disk_image       = true\n  no_such_option   = "x"',
        ),
      );
      const r = validate(dir, bootstrapVar);
      assert.notEqual(r.status, 0, r.output);
      assert.match(r.output, /no_such_option/);
    });

    it('fails on a broken copy: a syntax error', () => {
      const dir = copyTemplate();
      const file = path.join(dir, TEMPLATE);
      writeFileSync(file, readFileSync(file, 'utf8').replace(/\}\s*$/, ''));
      const r = validate(dir, bootstrapVar);
      assert.notEqual(r.status, 0, r.output);
    });

    it('fails on a broken copy: a provisioner script is missing', () => {
      const dir = copyTemplate();
      rmSync(path.join(dir, 'seal.sh'));
      const r = validate(dir, bootstrapVar);
      assert.notEqual(r.status, 0, r.output);
      assert.match(r.output, /seal\.sh/);
    });

    it('fails when the build key is missing (build-base.sh not run)', () => {
      const r = spawnSync(
        'packer',
        ['validate', '-var', `base_dir=${path.join(root, 'nothing')}`, TEMPLATE],
        {
          cwd: TEMPLATE_DIR,
          encoding: 'utf8',
          env: { ...process.env, CHECKPOINT_DISABLE: '1' },
        },
      );
      assert.notEqual(r.status, 0);
      assert.match(`${r.stdout}${r.stderr}`, /build-key/);
    });
  },
);

describe('packer/debian-runner scripts', () => {
  const scripts = [
    'build.sh',
    'build-base.sh',
    'apt-upgrade.sh',
    'provision.sh',
    'seal.sh',
    'finish.sh',
    'files/hatchery-start',
  ].map((f) => path.join(TEMPLATE_DIR, f));

  it('parse in dash and busybox sh', () => {
    for (const sh of [['dash'], ['busybox', 'sh']]) {
      for (const s of [...scripts, path.join(repo, 'bootstrap/linux.sh')]) {
        const r = spawnSync(sh[0]!, [...sh.slice(1), '-n', s], { encoding: 'utf8' });
        assert.equal(r.status, 0, `${sh.join(' ')} -n ${s}: ${r.stderr}`);
      }
    }
  });

  it('pass shellcheck', () => {
    assert.ok(hasShellcheck, 'shellcheck is missing: scripts/setup.sh installs it');
    const r = spawnSync('shellcheck', ['-s', 'sh', ...scripts, path.join(repo, 'bootstrap/linux.sh')], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stdout);
  });
});

describe('packer/debian-runner build.sh: cached by the hash of its inputs', () => {
  const BOOTSTRAP = path.join(repo, 'bootstrap/linux.sh');
  /** A copy of the template dir (build.sh hashes the dir it is in) and the bootstrap it uses. */
  function copy(): string {
    const dir = mkdtempSync(path.join(root, 'hash-'));
    cpSync(TEMPLATE_DIR, dir, { recursive: true });
    rmSync(path.join(dir, 'output'), { recursive: true, force: true });
    return dir;
  }
  function hash(dir: string, env: Record<string, string> = {}): string {
    return execFileSync('sh', [path.join(dir, 'build.sh'), '--hash'], {
      encoding: 'utf8',
      env: { ...process.env, BOOTSTRAP, ...env },
    }).trim();
  }

  it('is the same for the same inputs, wherever the directory is', () => {
    const a = hash(copy());
    assert.match(a, /^[0-9a-f]{16}$/);
    assert.equal(hash(copy()), a);
  });

  it('changes with any file of the template dir, the bootstrap and each setting', () => {
    const dir = copy();
    const base = hash(dir);
    const seen = new Set([base]);
    const changed = (what: string, h: string) => {
      assert.ok(!seen.has(h), `${what}: the hash did not change`);
      seen.add(h);
    };
    for (const setting of ['MIRROR', 'SECURITY_MIRROR', 'SUITE', 'SIZE', 'EXTRA_PACKAGES']) {
      changed(setting, hash(dir, { [setting]: 'x' }));
    }
    const other = path.join(root, 'bootstrap-copy.sh');
    writeFileSync(other, `${readFileSync(BOOTSTRAP, 'utf8')}\n# changed\n`);
    changed('the bootstrap', hash(dir, { BOOTSTRAP: other }));
    for (const f of ['debian-runner.pkr.hcl', 'provision.sh', 'files/image.conf']) {
      writeFileSync(path.join(dir, f), `${readFileSync(path.join(dir, f), 'utf8')}\n`);
      changed(f, hash(dir));
    }
    writeFileSync(path.join(dir, 'files/new.conf'), 'x\n');
    changed('a new file', hash(dir));
  });

  it('ignores what builds leave in the template dir (output/, packer_cache/)', () => {
    const dir = copy();
    const before = hash(dir);
    for (const d of ['output/base', 'packer_cache']) {
      mkdirSync(path.join(dir, d), { recursive: true });
      writeFileSync(path.join(dir, d, 'f'), 'x');
    }
    assert.equal(hash(dir), before);
  });

  it('does nothing for a complete image of the same inputs; builds for a damaged or older one', () => {
    const dir = copy();
    const h = hash(dir);
    // No packer on PATH: a build stops at once ("packer not found"), a cache hit never looks.
    const bin = path.join(root, 'bin-no-packer');
    mkdirSync(bin, { recursive: true });
    for (const f of readdirSync('/usr/bin')) {
      if (f !== 'packer' && !existsSync(path.join(bin, f)))
        symlinkSync(path.join('/usr/bin', f), path.join(bin, f));
    }
    const images = mkdtempSync(path.join(root, 'images-'));
    const dest = path.join(images, 'debian-12');
    mkdirSync(dest);
    const files = {
      'disk.qcow2': 'disk',
      bzImage: 'kernel',
      'initrd.img': 'initrd',
      append: 'root=/dev/vda\n',
    };
    for (const [f, data] of Object.entries(files)) writeFileSync(path.join(dest, f), data);
    const manifest = (inputs: string) =>
      [
        `inputs=${inputs}`,
        ...Object.entries(files).map(([f, data]) => `file=${f} ${Buffer.byteLength(data)}`),
        '',
      ].join('\n');
    const build = () =>
      spawnSync('sh', [path.join(dir, 'build.sh'), dest], {
        encoding: 'utf8',
        env: { PATH: bin, BOOTSTRAP },
      });

    writeFileSync(path.join(dest, 'manifest'), manifest(h));
    const hit = build();
    assert.equal(hit.status, 0, hit.stderr);
    assert.match(hit.stdout, /is up to date/);

    writeFileSync(path.join(dest, 'bzImage'), 'another kernel');
    const damaged = build();
    assert.equal(damaged.status, 1);
    assert.match(damaged.stderr, /packer not found/);

    writeFileSync(path.join(dest, 'bzImage'), files.bzImage);
    writeFileSync(path.join(dest, 'manifest'), manifest('0123456789abcdef'));
    const older = build();
    assert.equal(older.status, 1);
    assert.match(older.stderr, /packer not found/);
    assert.deepEqual(readdirSync(images), ['debian-12'], 'nothing else in the images dir');
  });
});

describe('packer/debian-runner finish.sh: the image moves into place only when complete', () => {
  const FINISH = path.join(TEMPLATE_DIR, 'finish.sh');
  function finish(images: string) {
    return spawnSync('sh', [FINISH], {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH,
        WORK_DIR: path.join(images, '.debian-12.partial'),
        OUTPUT_DIR: path.join(images, 'debian-12'),
        APPEND: 'root=/dev/vda rw console=ttyS0',
        INPUTS_HASH: 'feedfacecafebeef',
        MIRROR: 'http://deb.debian.org/debian',
        SECURITY_MIRROR: 'http://deb.debian.org/debian-security',
      },
    });
  }
  function partial(images: string, files: string[]) {
    const work = path.join(images, '.debian-12.partial');
    mkdirSync(work);
    for (const f of files) writeFileSync(path.join(work, f), `new ${f}`);
  }
  const BUILT = ['disk.qcow2', 'bzImage', 'initrd.img'];

  it('a first build: the image, its append and manifest, and nothing else', () => {
    const images = mkdtempSync(path.join(root, 'finish-'));
    partial(images, BUILT);
    const r = finish(images);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(images), ['debian-12']);
    const dest = path.join(images, 'debian-12');
    assert.deepEqual(readdirSync(dest).sort(), ['append', 'bzImage', 'disk.qcow2', 'initrd.img', 'manifest']);
    assert.equal(readFileSync(path.join(dest, 'append'), 'utf8'), 'root=/dev/vda rw console=ttyS0\n');
    const manifest = readFileSync(path.join(dest, 'manifest'), 'utf8');
    assert.match(manifest, /^inputs=feedfacecafebeef$/m);
    assert.match(manifest, /^mirror=http:\/\/deb\.debian\.org\/debian$/m);
    assert.match(manifest, /^file=disk\.qcow2 14$/m); // "new disk.qcow2"
    assert.match(manifest, /^file=append 31$/m);
  });

  it('a second build replaces the first, and leaves nothing of either beside it', () => {
    const images = mkdtempSync(path.join(root, 'finish-'));
    const dest = path.join(images, 'debian-12');
    mkdirSync(dest);
    writeFileSync(path.join(dest, 'disk.qcow2'), 'old');
    writeFileSync(path.join(dest, 'stale-file'), 'old');
    partial(images, BUILT);
    const r = finish(images);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(images), ['debian-12']);
    assert.equal(readFileSync(path.join(dest, 'disk.qcow2'), 'utf8'), 'new disk.qcow2');
    assert.ok(!existsSync(path.join(dest, 'stale-file')));
  });

  it('an incomplete build fails and leaves the old image as it was', () => {
    const images = mkdtempSync(path.join(root, 'finish-'));
    const dest = path.join(images, 'debian-12');
    mkdirSync(dest);
    writeFileSync(path.join(dest, 'disk.qcow2'), 'old');
    partial(images, ['disk.qcow2', 'initrd.img']); // no kernel
    const r = finish(images);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /bzImage is missing/);
    assert.deepEqual(readdirSync(dest), ['disk.qcow2']);
    assert.equal(readFileSync(path.join(dest, 'disk.qcow2'), 'utf8'), 'old');
  });
});

describe('packer build leftovers are not committed', () => {
  it('packer_cache/ is ignored by git wherever packer runs', () => {
    for (const p of [
      'packer_cache/x.iso',
      'packer/debian-runner/packer_cache/x.iso',
      'packer/debian-runner/output/x',
    ]) {
      const r = spawnSync('git', ['check-ignore', '-q', p], { cwd: repo });
      assert.equal(r.status, 0, `${p} is not ignored`);
    }
  });
});

// packer/debian-runner: `packer validate` accepts the template (Debian's Packer 1.6.6, HCL2),
// and fails on broken copies, so this check can fail. The scripts it runs parse in sh.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
  const scripts = ['build-base.sh', 'provision.sh', 'seal.sh', 'files/hatchery-start'].map((f) =>
    path.join(TEMPLATE_DIR, f),
  );

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

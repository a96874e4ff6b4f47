// packer/windows-runner without Windows media (none can be obtained here): the template passes
// `packer validate` with Debian's Packer (1.6.6) given stand-in inputs of the right shape (an
// empty ISO file, a virtio-win directory with the two driver folders, a runner zip path or URL),
// fails on broken copies (the control), binds the build VM to 127.0.0.1 only, and its
// PowerShell scripts parse (tree-sitter's PowerShell grammar) and its answer file is well-formed
// XML that agrees with the template. No image is built: packer/windows-runner/README.md lists
// what was not run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import {
  badCalls,
  commandCalls,
  newerThan51,
  parsePowerShell,
  syntaxErrors,
  unresolvedNames,
} from '../helpers/powershell.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const TEMPLATE_DIR = path.join(repo, 'packer/windows-runner');
const TEMPLATE = 'windows-runner.pkr.hcl';
const root = mkdtempSync(path.join(os.tmpdir(), 'hatchery-windows-packer-'));
const hasPacker =
  spawnSync('packer', ['version'], { env: { ...process.env, CHECKPOINT_DISABLE: '1' } }).status === 0;

// Inputs of the right shape: validate checks that the CD's files and directories exist.
const iso = path.join(root, 'windows-server-2022.iso');
writeFileSync(iso, '');
const virtio = path.join(root, 'virtio-win');
for (const d of ['viostor/2k22/amd64', 'NetKVM/2k22/amd64'])
  mkdirSync(path.join(virtio, d), { recursive: true });
const zip = path.join(root, 'runner', 'actions-runner-win-x64-2.321.0.zip');
mkdirSync(path.dirname(zip));
writeFileSync(zip, '');
const SHA = 'ab'.repeat(32);
const inputs = {
  iso_url: iso,
  iso_checksum: 'none',
  virtio_win: virtio,
  runner_zip: zip,
  runner_sha256: SHA,
};

function validate(dir: string, vars: Record<string, string> = {}, flags: string[] = []) {
  const args = ['validate', ...flags];
  for (const [k, v] of Object.entries({ ...inputs, ...vars })) args.push('-var', `${k}=${v}`);
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
const bootstrapVar = { bootstrap: path.join(repo, 'bootstrap/windows.ps1') };
const hcl = () => readFileSync(path.join(TEMPLATE_DIR, TEMPLATE), 'utf8');
/** Python's XML parser (expat) on a file: status 0 when it is well-formed. */
const xmlCheck = (file: string) =>
  spawnSync(
    '/usr/bin/python3',
    ['-c', 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])', file],
    {
      encoding: 'utf8',
    },
  );

after(() => {
  rmSync(root, { recursive: true, force: true });
  assert.ok(!existsSync(root), 'temp files left behind');
});

describe(
  'packer/windows-runner',
  { skip: hasPacker ? false : 'packer not installed (Debian package packer)' },
  () => {
    it('validates, with the runner zip as a local path or a URL', () => {
      for (const runner_zip of [zip, 'https://github.com/actions/runner/releases/download/v2.321.0/x.zip']) {
        const r = validate(TEMPLATE_DIR, { runner_zip });
        assert.equal(r.status, 0, r.output);
      }
    });

    it('builds two flavours of one provisioning: openstack (no login) and vagrant (a box)', () => {
      const text = hcl();
      for (const [name, login] of [
        ['openstack', 'none'],
        ['vagrant', 'vagrant'],
      ]) {
        const block = new RegExp(
          `source "source\\.qemu\\.windows-runner" \\{\\s*name\\s*=\\s*"${name}"\\n[^\\n]*\\n[^\\n]*-Login ${login}"`,
        );
        assert.match(text, block);
      }
      assert.match(text, /post-processor "vagrant" \{\s*only\s*=\s*\["qemu\.vagrant"\]/);
      for (const only of ['qemu.openstack', 'qemu.vagrant']) {
        const r = validate(TEMPLATE_DIR, {}, [`-only=${only}`]);
        assert.equal(r.status, 0, `${only}: ${r.output}`);
      }
    });

    it('refuses missing inputs and a bad runner checksum, naming them', () => {
      const noIso = spawnSync(
        'packer',
        [
          'validate',
          '-var',
          `virtio_win=${virtio}`,
          '-var',
          `runner_zip=${zip}`,
          '-var',
          `runner_sha256=${SHA}`,
          TEMPLATE,
        ],
        { cwd: TEMPLATE_DIR, encoding: 'utf8', env: { ...process.env, CHECKPOINT_DISABLE: '1' } },
      );
      assert.notEqual(noIso.status, 0);
      assert.match(`${noIso.stdout}${noIso.stderr}`, /iso_url/);
      for (const sha of ['abc', 'z'.repeat(64), `${SHA}0`]) {
        const r = validate(TEMPLATE_DIR, { runner_sha256: sha });
        assert.notEqual(r.status, 0, sha);
        assert.match(r.output, /runner_sha256 must be 64 hex digits/);
      }
      const r = validate(TEMPLATE_DIR, { virtio_win: path.join(root, 'no-virtio') });
      assert.notEqual(r.status, 0);
      assert.match(r.output, /no-virtio\/viostor/);
    });

    it('binds the build VM to 127.0.0.1 only (WinRM, the HTTP server, VNC)', () => {
      const text = hcl();
      assert.match(text, /hostfwd=tcp:127\.0\.0\.1:\{\{ \.SSHHostPort \}\}-:5985/);
      assert.match(text, /http_bind_address\s*=\s*"127\.0\.0\.1"/);
      assert.match(text, /vnc_bind_address\s*=\s*"127\.0\.0\.1"/);
      assert.match(text, /winrm_host\s*=\s*"127\.0\.0\.1"/);
    });

    it('a faithful copy validates (the control for the broken ones)', () => {
      const r = validate(copyTemplate(), bootstrapVar);
      assert.equal(r.status, 0, r.output);
    });

    it('fails on a broken copy: an unknown option, a syntax error, a missing script', () => {
      const unknown = copyTemplate();
      const file = path.join(unknown, TEMPLATE);
      writeFileSync(
        file,
        readFileSync(file, 'utf8').replace(
          'format           = "qcow2"',
          'format = "qcow2"\n  no_such_option = 1',
        ),
      );
      const a = validate(unknown, bootstrapVar);
      assert.notEqual(a.status, 0);
      assert.match(a.output, /no_such_option/);

      const syntax = copyTemplate();
      writeFileSync(
        path.join(syntax, TEMPLATE),
        readFileSync(path.join(syntax, TEMPLATE), 'utf8').replace(/\}\s*$/, ''),
      );
      assert.notEqual(validate(syntax, bootstrapVar).status, 0);

      for (const missing of ['provision.ps1', 'autounattend.xml']) {
        const dir = copyTemplate();
        rmSync(path.join(dir, missing));
        const r = validate(dir, bootstrapVar);
        assert.notEqual(r.status, 0, missing);
        assert.match(r.output, new RegExp(missing.replace('.', '\\.')));
      }
    });
  },
);

describe('packer/windows-runner files', () => {
  it('its PowerShell scripts parse (tree-sitter-powershell), and a broken one does not', async () => {
    for (const f of ['provision.ps1', 'seal.ps1', 'enable-winrm.ps1']) {
      const text = readFileSync(path.join(TEMPLATE_DIR, f), 'utf8');
      assert.deepEqual(syntaxErrors(await parsePowerShell(text)), [], f);
      assert.deepEqual(newerThan51(await parsePowerShell(text)), [], `${f}: Windows PowerShell 5.1`);
      assert.deepEqual(unresolvedNames(await parsePowerShell(text)), [], `${f}: names`);
      assert.deepEqual(badCalls(await parsePowerShell(text)), [], `${f}: calls`);
      assert.notDeepEqual(
        syntaxErrors(await parsePowerShell(`${text}\nif ($true) {\n  Write-Host 'never closed'\n`)),
        [],
        `${f} broken`,
      );
    }
  });

  it('the answer file is well-formed XML and agrees with the template and the CD', () => {
    const xml = path.join(TEMPLATE_DIR, 'autounattend.xml');
    const check = xmlCheck(xml);
    assert.equal(check.status, 0, check.stderr);
    const broken = path.join(root, 'broken.xml');
    writeFileSync(broken, readFileSync(xml, 'utf8').replace('</ImageInstall>', ''));
    assert.notEqual(xmlCheck(broken).status, 0, 'the XML check can fail');
    const text = readFileSync(xml, 'utf8');
    const password = /build_password\s*=\s*"([^"]+)"/.exec(hcl())![1]!;
    const values = [
      ...text.matchAll(
        /<Password>\s*<Value>([^<]*)<\/Value>|<AdministratorPassword>\s*<Value>([^<]*)<\/Value>/g,
      ),
    ];
    assert.equal(values.length, 2);
    for (const m of values) assert.equal(m[1] ?? m[2], password, "the build password is the template's");
    // The drivers Setup loads are the folders the template puts on the CD.
    for (const driver of ['viostor', 'NetKVM']) {
      assert.match(text, new RegExp(`<Path>[D-F]:\\\\${driver}\\\\2k22\\\\amd64</Path>`));
      assert.match(hcl(), new RegExp(`"\\$\\{var\\.virtio_win\\}/${driver}"`));
    }
    assert.match(text, /enable-winrm\.ps1/);
  });

  it('seals the image: Administrator disabled with a random password, WinRM off unless it is the Vagrant box', async () => {
    const text = readFileSync(path.join(TEMPLATE_DIR, 'seal.ps1'), 'utf8');
    assert.match(text, /net\.exe user Administrator \/active:no/);
    assert.match(
      text,
      /if \(\$Login -eq 'none'\) \{\s*\$specialize \+= @\(\s*'sc\.exe config WinRM start= disabled'/,
    );
    assert.match(text, /RandomNumberGenerator/);
    assert.match(text, /sysprep\.exe" \/generalize \/oobe \/shutdown/);
    const tree = await parsePowerShell(text);
    for (const c of commandCalls(tree, 'Write-Host'))
      assert.doesNotMatch(c.args.map((a) => a.text).join(' '), /random/i);
    assert.match(
      hcl(),
      /winrm_password\s*=\s*local\.build_password\n/,
      'one build password, beside its reason',
    );
  });

  it("seal.ps1's answer file, filled in as PowerShell expands it, is well-formed XML", () => {
    const text = readFileSync(path.join(TEMPLATE_DIR, 'seal.ps1'), 'utf8');
    const block = /\$commands \+= @"\n([\s\S]*?)\n"@/.exec(text)![1]!;
    const answer = /\$answer = @"\n([\s\S]*?)\n"@/.exec(text)![1]!;
    const commands = ['net.exe user Administrator /active:no', 'sc.exe config WinRM start= disabled']
      .map((c, i) => `${block.replace('$($i + 1)', String(i + 1)).replace('$($specialize[$i])', c)}\n`)
      .join('');
    const filled = answer.replace('$commands', commands).replace('$random', 'q83vEjRWeJ==aA1!');
    assert.doesNotMatch(filled, /\$/, 'every variable was filled in');
    const file = path.join(root, 'hatchery-vm.xml');
    writeFileSync(file, filled);
    const check = xmlCheck(file);
    assert.equal(check.status, 0, check.stderr);
    assert.match(filled, /<Order>2<\/Order>\s*<Path>sc\.exe config WinRM start= disabled<\/Path>/);
  });

  it('installs windows.ps1 as a startup task running as SYSTEM, and the runner from the verified zip', () => {
    const text = readFileSync(path.join(TEMPLATE_DIR, 'provision.ps1'), 'utf8');
    assert.match(text, /New-ScheduledTaskTrigger -AtStartup/);
    assert.match(text, /New-ScheduledTaskPrincipal -UserId 'SYSTEM'/);
    assert.match(text, /-File "' \+ \(Join-Path \$programDir 'windows\.ps1'\)/);
    assert.match(text, /Get-FileHash -LiteralPath \$zip -Algorithm SHA256/);
    assert.match(
      readFileSync(path.join(TEMPLATE_DIR, 'files/image.conf'), 'utf8'),
      /^HATCHERY_WORK_DIR=C:\\actions-runner$/m,
    );
  });

  it('what builds leave (output/, packer_cache/) is ignored by git', () => {
    for (const p of [
      'packer/windows-runner/output/openstack/disk.qcow2',
      'packer/windows-runner/packer_cache/x.iso',
    ]) {
      const r = spawnSync('git', ['check-ignore', '-q', p], { cwd: repo });
      assert.equal(r.status, 0, `${p} is not ignored`);
    }
  });
});

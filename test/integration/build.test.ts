// What a production install runs (`npm ci --omit=dev`, then `npx hatchery …`): a copy of this
// working tree whose node_modules holds only the production dependencies (links into this
// checkout's node_modules; package-lock.json says which), built with `npm run build`. Neither
// tsx nor the stand-in's validator (ajv, @octokit/openapi) is there: what runs, runs from dist/.
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { IMAGES_DIR } from '../helpers/images.ts';
import { killAll, qemuPidsUnder } from '../helpers/processes.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** No NODE_OPTIONS, no test-runner variables: a shell's environment. */
const ENV = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir() };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(dir: string, file: string, args: string[], timeout = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: dir, env: ENV, timeout, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** The working tree's files (tracked, and new ones not ignored), copied: no node_modules, var/, dist/. */
function copyWorkingTree(to: string): void {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: REPO,
    encoding: 'utf8',
  })
    .split('\0')
    .filter((f) => f && f !== 'node_modules');
  for (const f of files) {
    const from = path.join(REPO, f);
    if (!existsSync(from) || !lstatSync(from).isFile()) continue; // deleted, or a symlink
    mkdirSync(path.dirname(path.join(to, f)), { recursive: true });
    copyFileSync(from, path.join(to, f));
  }
}

/** node_modules as `npm ci --omit=dev` leaves it: the packages package-lock.json does not mark dev. */
function linkProductionModules(to: string): string[] {
  const lock = JSON.parse(readFileSync(path.join(REPO, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; devOptional?: boolean }>;
  };
  const linked: string[] = [];
  for (const [key, entry] of Object.entries(lock.packages)) {
    const name = key.replace(/^node_modules\//, '');
    if (!key.startsWith('node_modules/') || name.includes('/node_modules/')) continue; // nested: inside its parent
    if (entry.dev || entry.devOptional) continue;
    const source = path.join(REPO, 'node_modules', name);
    if (!existsSync(source)) continue; // an optional package for another platform
    mkdirSync(path.dirname(path.join(to, 'node_modules', name)), { recursive: true });
    symlinkSync(source, path.join(to, 'node_modules', name));
    linked.push(name);
  }
  return linked;
}

/** Without tsx, bin/hatchery.js can run only dist/: what ran was compiled. */
function assertNoTsx(dir: string): void {
  assert.ok(
    !existsSync(path.join(dir, 'node_modules', 'tsx')),
    'tsx is installed: this would not test dist/',
  );
}

const RELATIVE_TS_IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*)['"]\.{1,2}\/[^'"]*\.ts['"]/;

describe('production install (npm ci --omit=dev): dist/', () => {
  let dir: string;
  let linked: string[];
  let config: string;

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hatchery-build-'));
    copyWorkingTree(dir);
    linked = linkProductionModules(dir);
    // The demo builds (or finds) the tiny guest under ./var/images: the tests' shared cache.
    mkdirSync(path.join(dir, 'var'));
    symlinkSync(IMAGES_DIR, path.join(dir, 'var', 'images'));
    config = path.join(dir, 'hatchery.toml');
    writeFileSync(
      config,
      [
        '[server]',
        'port = 0',
        '[control]',
        'secret = "control-secret-0123456789"',
        '[api]',
        'token = "api-token-abcdefghijklmnop"',
        '[github]',
        'api_url = "http://127.0.0.1:9"',
        'token = "ghp_buildtesttoken00000000000000000000"',
        '[store]',
        'path = "state/hatchery.db"',
        '[providers.memory]',
        'kind = "memory"',
        '[providers.vagrant]',
        'kind = "vagrant"',
        '[[pools]]',
        'name = "linux"',
        'labels = ["linux"]',
        'provider = "memory"',
      ].join('\n'),
    );
  });
  after(() => {
    const left = qemuPidsUnder(dir);
    killAll(left);
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(left, [], 'QEMU processes left behind');
  });

  it('has the production dependencies only: TypeScript, not tsx nor the validator', () => {
    assert.ok(linked.includes('typescript'), 'typescript is a production dependency (it builds dist/)');
    for (const dev of ['tsx', 'esbuild', 'ajv', 'ajv-formats', '@octokit/openapi', '@types/node'])
      assert.ok(!linked.includes(dev), `${dev} must stay a dev dependency`);
  });

  it('npm run build compiles src/ and the stand-in, every relative import rewritten to .js', async () => {
    const r = await run(dir, 'npm', ['run', 'build'], 300_000);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(existsSync(path.join(dir, 'dist/src/cli/main.js')));
    assert.ok(existsSync(path.join(dir, 'dist/test/fakes/github/server.js')));
    const js = readdirSync(path.join(dir, 'dist'), { recursive: true, encoding: 'utf8' }).filter((f) =>
      f.endsWith('.js'),
    );
    assert.ok(js.length > 50, `only ${js.length} files compiled`);
    for (const f of js) {
      const text = readFileSync(path.join(dir, 'dist', f), 'utf8');
      assert.doesNotMatch(text, RELATIVE_TS_IMPORT, `dist/${f} still imports a .ts file`);
    }
  });

  it('hatchery --help and config check run from dist/, files of the package found from there', async () => {
    assertNoTsx(dir);
    const help = await run(dir, process.execPath, ['bin/hatchery.js', '--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: hatchery /);
    assert.equal(help.stderr, '');

    const check = await run(dir, process.execPath, [
      'bin/hatchery.js',
      '--config',
      config,
      'config',
      'check',
    ]);
    assert.equal(check.code, 0, check.stderr);
    const effective = JSON.parse(check.stdout.replace(/^#.*\n/gm, '')) as {
      providers: Record<string, { settings: Record<string, unknown> }>;
    };
    // The default comes from the package root, not from dist/src/providers/vagrant/.
    assert.equal(effective.providers.vagrant!.settings.vagrantfile, path.join(dir, 'Vagrantfile'));
  });

  it('hatchery serve from dist/ reads its bootstrap script, listens, stops on SIGTERM', async () => {
    assertNoTsx(dir);
    const child = spawn(process.execPath, ['bin/hatchery.js', '--config', config, 'serve'], {
      cwd: dir,
      env: ENV,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let timer: NodeJS.Timeout | undefined;
    const listening = await new Promise<boolean>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/"msg":"listening"/.test(stderr)) resolve(true);
      });
      void exited.then(() => resolve(false));
      timer = setTimeout(() => resolve(false), 60_000); // then it is stopped below, and fails
    });
    clearTimeout(timer);
    child.kill('SIGTERM');
    const code = await exited;
    assert.ok(listening, `serve did not listen: ${stderr}`);
    assert.equal(code, 0, stderr);
  });

  it('a source newer than dist/: without tsx the command refuses, saying how to build', async () => {
    const source = path.join(dir, 'src/cli/main.ts');
    const { atime, mtime } = statSync(source);
    const later = new Date(Date.now() + 60_000);
    utimesSync(source, later, later);
    try {
      const r = await run(dir, process.execPath, ['bin/hatchery.js', '--help']);
      assert.equal(r.code, 1, r.stdout);
      assert.match(
        r.stderr,
        /^hatchery: dist\/ is older than src\/cli\/main\.ts, and tsx .* `npm run build`/,
      );

      // A development install has tsx: the sources run instead, quietly.
      symlinkSync(path.join(REPO, 'node_modules', 'tsx'), path.join(dir, 'node_modules', 'tsx'));
      try {
        const dev = await run(dir, process.execPath, ['bin/hatchery.js', '--help']);
        assert.equal(dev.code, 0, dev.stderr);
        assert.match(dev.stdout, /^Usage: hatchery /);
        assert.equal(dev.stderr, '');
      } finally {
        rmSync(path.join(dir, 'node_modules', 'tsx'));
      }
    } finally {
      utimesSync(source, atime, mtime);
    }
    const again = await run(dir, process.execPath, ['bin/hatchery.js', '--help']);
    assert.equal(again.code, 0, again.stderr);
  });

  it('the stand-in refuses to start without its validator, unless asked to run unchecked', async () => {
    // In a child process from dist/: the validator's packages are absent from this node_modules.
    const script = `
      const { FakeGitHub, DEFAULT_TOKEN } = await import(process.argv[1]);
      const refused = await FakeGitHub.start().then((f) => f.close().then(() => null), (e) => e.message);
      const fake = await FakeGitHub.start({ validation: 'if-installed' });
      const headers = { authorization: 'token ' + DEFAULT_TOKEN, accept: 'application/vnd.github+json',
        'x-github-api-version': '2022-11-28', 'user-agent': 'build-test', 'content-type': 'application/json' };
      const jit = await fetch(fake.url + '/repos/octo/app/actions/runners/generate-jitconfig', { method: 'POST',
        headers, body: JSON.stringify({ name: 'r1', runner_group_id: 1, labels: ['self-hosted'] }) });
      const other = await fetch(fake.url + '/repos/octo/app/issues', { headers });
      const violations = fake.takeViolations();
      await fake.close();
      console.log(JSON.stringify({ refused, unchecked: fake.unchecked, jit: jit.status, other: other.status, violations }));`;
    const r = await run(dir, process.execPath, [
      '--input-type=module',
      '-e',
      script,
      path.join(dir, 'dist/test/fakes/github/server.js'),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      refused: string | null;
      unchecked: string;
      jit: number;
      other: number;
      violations: string[];
    };
    assert.match(out.refused ?? 'started', /but ajv is not installed .*npm ci without --omit=dev/);
    assert.equal(out.unchecked, 'ajv (a dev dependency) is not installed');
    assert.equal(out.jit, 201);
    assert.equal(out.other, 404);
    assert.deepEqual(out.violations, [
      "GET /repos/octo/app/issues: not an endpoint the stand-in implements (GitHub's description is not installed to say more)",
    ]);
  });

  it('hatchery demo runs a whole workflow on a real VM, saying the stand-in is unchecked', async () => {
    const r = await run(dir, process.execPath, ['bin/hatchery.js', 'demo'], 600_000);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /started the GitHub stand-in, without validation: ajv \(a dev dependency\)/);
    assert.match(r.stdout, /demo passed: one fresh VM served one job and is gone\./);
    assert.ok(!existsSync(path.join(dir, 'var/demo')), 'the demo left its directory');
    assert.deepEqual(qemuPidsUnder(dir), []);
  });
});

// `npm run build`, also the `prepare` script (so `npm ci` builds, with or without --omit=dev):
// compiles what `hatchery` runs — src/, and the GitHub stand-in `hatchery demo` uses — to dist/
// with tsc (tsconfig.build.json; its `include` lists plain directories, which bin/hatchery.js
// watches for changes). Emit only (`noCheck`): type checking is `npm run typecheck`'s job, and a
// production install has no @types. dist/.built-at records when the build started:
// bin/hatchery.js runs dist/ only while no source is newer.
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const dist = path.join(root, 'dist');

let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  console.error('build: TypeScript is not installed (npm ci installs it)');
  process.exit(1);
}
const startedAt = Date.now();
// A stale file must not survive its source (a deleted module would stay importable).
rmSync(dist, { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error(`build: tsc failed (${r.status ?? r.signal}); dist/ is incomplete and will not be used`);
  process.exit(1);
}
writeFileSync(path.join(dist, '.built-at'), `${startedAt}\n`);

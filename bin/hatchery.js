#!/usr/bin/env -S node --max-semi-space-size=8
// --max-semi-space-size=8 (MiB; V8's default is 16): the young generation stays at 16 MiB
// instead of growing to 32 after a burst and keeping it, ~15 MiB less resident memory for a few
// more (cheap) scavenges (docs/adr/2026-12-02-control-plane-cost.md). Whoever runs this file
// with `node` passes the flags of this line too (scripts/demo.sh, test/helpers/stack.ts).
// The `hatchery` command. Runs the compiled JavaScript in dist/ (`npm run build`, which `npm ci`
// runs) when it is built and no source changed since; otherwise the TypeScript sources through
// tsx, a dev dependency (development: an edit takes effect without a build). Quietly either way.
// HATCHERY_FROM_SOURCE=1 runs the sources even when dist/ is current (benchmarks, debugging).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/**
 * Why dist/ cannot be run, or undefined when it can: the build's stamp (when it started) must be
 * newer than every source file and directory (a directory changes when a file is added or
 * removed). ~100 stat calls: about a millisecond.
 */
function whyNotDist() {
  let builtAt;
  try {
    builtAt = Number(readFileSync(path.join(root, 'dist', '.built-at'), 'utf8'));
  } catch {
    return 'not built';
  }
  const { include } = JSON.parse(readFileSync(path.join(root, 'tsconfig.build.json'), 'utf8'));
  const changed = (p) => !(statSync(path.join(root, p), { throwIfNoEntry: false })?.mtimeMs < builtAt);
  for (const top of ['tsconfig.json', 'tsconfig.build.json', ...include]) {
    const paths = [top];
    if (statSync(path.join(root, top), { throwIfNoEntry: false })?.isDirectory())
      for (const f of readdirSync(path.join(root, top), { recursive: true })) paths.push(path.join(top, f));
    const newer = paths.find(changed);
    if (newer) return `older than ${newer}`;
  }
  return undefined;
}

const why = process.env.HATCHERY_FROM_SOURCE === '1' ? 'not wanted (HATCHERY_FROM_SOURCE=1)' : whyNotDist();
if (why === undefined) {
  await import('../dist/src/cli/main.js');
} else {
  let tsx;
  try {
    tsx = await import('tsx/esm/api');
  } catch (e) {
    if (e?.code !== 'ERR_MODULE_NOT_FOUND') throw e;
    process.stderr.write(
      `hatchery: dist/ is ${why}, and tsx (a dev dependency) is not installed to run the sources: run \`npm run build\`\n`,
    );
    process.exit(1);
  }
  tsx.register();
  await import('../src/cli/main.ts');
}

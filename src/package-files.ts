// Files that ship beside the code (bootstrap/, the Vagrantfile, the stand-in runner's scripts)
// are found from the package root, never relative to the module that reads them: a module runs
// from src/ (tsx, in development) or from dist/src/ (compiled), and the files exist only once.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest directory above this module holding package.json: dist/ has none. */
function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export const PACKAGE_ROOT = packageRoot(path.dirname(fileURLToPath(import.meta.url)));

/** The absolute path of a file of the package, e.g. packageFile('bootstrap', 'linux.sh'). */
export function packageFile(...segments: string[]): string {
  return path.join(PACKAGE_ROOT, ...segments);
}

// bootstrap/windows.ps1 as data: its protocol literals read from the script (powershell.ts), and
// its pure functions' steps redone here with them, so that tests can feed the script's own
// patterns and formats to the service. test/unit/windows-bootstrap.test.ts checks that the steps
// below are the script's (the templates, the patterns); no PowerShell runs anywhere.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Tree } from 'web-tree-sitter';
import { parsePowerShell, scriptValue, type PsValue } from './powershell.ts';

export const WINDOWS_BOOTSTRAP = fileURLToPath(new URL('../../bootstrap/windows.ps1', import.meta.url));

/** A .NET pattern as a JavaScript RegExp: it may use only syntax both engines read alike. */
export function jsRegex(p: string, what: string, flags = ''): RegExp {
  assert.doesNotMatch(
    p,
    /\(\?[<!=imnsx]|\\[AzZGpP]|\$\d|\[\^?\]/,
    `${what}: a construct .NET and JavaScript read differently`,
  );
  return new RegExp(p, flags);
}

export interface RunnerPattern {
  Event: string;
  Pattern: string;
  Once: boolean;
}

export class WindowsBootstrap {
  readonly path = WINDOWS_BOOTSTRAP;

  private constructor(
    readonly source: string,
    readonly tree: Tree,
  ) {}

  static async load(): Promise<WindowsBootstrap> {
    const source = readFileSync(WINDOWS_BOOTSTRAP, 'utf8');
    return new WindowsBootstrap(source, await parsePowerShell(source));
  }

  value(name: string): PsValue {
    return scriptValue(this.tree, name);
  }

  /** A script-level pattern. */
  pattern(name: string, flags = ''): RegExp {
    const p = this.value(name);
    assert.equal(typeof p, 'string', `$${name} is not a string`);
    return jsRegex(p as string, name, flags);
  }

  get configKeys(): string[] {
    return this.value('ConfigKeys') as string[];
  }

  get runnerPatterns(): RunnerPattern[] {
    return this.value('RunnerPatterns') as unknown as RunnerPattern[];
  }

  /** ConvertFrom-GuestConfig: split on \n, drop a trailing \r, match, keep known keys. */
  parseConfig(text: string): Record<string, string> {
    const line = this.pattern('ConfigLinePattern');
    const keys = new Set(this.configKeys);
    const out: Record<string, string> = {};
    for (const raw of text.split('\n')) {
      const m = line.exec(raw.replace(/\r$/, ''));
      if (m && keys.has(m[1]!)) out[m[1]!] = m[2]!;
    }
    return out;
  }

  /** ConvertTo-EventDetail: strip control characters, then shorten to the byte limit. */
  cleanDetail(text: string): string {
    const max = this.value('DetailMaxBytes') as number;
    let clean = text.replace(this.pattern('DetailStripPattern', 'g'), '');
    while (Buffer.byteLength(clean) > max) clean = clean.slice(0, -1);
    return clean;
  }

  /** Format-EventLine: its templates "event $Seq $Name" and "$line $clean". */
  eventLine(seq: number, name: string, detail = ''): string {
    const line = `event ${seq} ${name}`;
    const clean = this.cleanDetail(detail);
    return clean === '' ? line : `${line} ${clean}`;
  }

  /** Read-RunnerOutput with Get-RunnerEvent: first matching pattern, its group 1, `Once` once. */
  runnerEvents(lines: string[]): string[] {
    const events: string[] = [];
    const seen = new Set<string>();
    for (const l of lines) {
      const p = this.runnerPatterns.find((q) => jsRegex(q.Pattern, q.Event).test(l));
      if (!p || (p.Once && seen.has(p.Event))) continue;
      seen.add(p.Event);
      const detail = jsRegex(p.Pattern, p.Event).exec(l)![1] ?? '';
      events.push(detail ? `${p.Event} ${detail}` : p.Event);
    }
    return events;
  }
}

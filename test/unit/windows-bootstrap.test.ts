// bootstrap/windows.ps1 without Windows or PowerShell (neither can be installed here): the script
// parses with tree-sitter's PowerShell grammar, and its protocol data — config keys and line
// pattern, runner output patterns, event names and line format, host lines, the JIT pattern —
// is read from the script itself and checked against the service's parser and against
// bootstrap/linux.sh run for real. The regexes are .NET's in the script and run here as
// JavaScript's: they use only the syntax both share (checked below).
// What this cannot check — the script running on Windows — is listed in packer/windows-runner/README.md.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Node, Tree } from 'web-tree-sitter';
import { hostLines } from '../../src/core/guest-inbox.ts';
import { renderGuestConfig } from '../../src/guest/config.ts';
import { parseGuestLine, toLifecycleEvent } from '../../src/guest/protocol.ts';
import {
  badCalls,
  commandCalls,
  enclosingFunction,
  functionNode,
  newerThan51,
  parsePowerShell,
  scriptValue,
  stringLiterals,
  syntaxErrors,
  unresolvedNames,
  type PsValue,
} from '../helpers/powershell.ts';
import { WindowsBootstrap } from '../helpers/windows-bootstrap.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const LINUX = path.join(repo, 'bootstrap/linux.sh');
const dir = mkdtempSync(path.join(tmpdir(), 'hatchery-windows-bootstrap-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let win: WindowsBootstrap;
let tree: Tree;
let source: string;
before(async () => {
  win = await WindowsBootstrap.load();
  ({ tree, source } = win);
});

const str = (v: PsValue): string => {
  assert.equal(typeof v, 'string', JSON.stringify(v));
  return v as string;
};

/** The events linux.sh's follow_runner emits for these runner output lines (run by sh). */
function linuxRunnerEvents(lines: string[]): string[] {
  const work = mkdtempSync(path.join(dir, 'linux-'));
  writeFileSync(path.join(work, 'lines'), lines.map((l) => `${l}\n`).join(''));
  const r = spawnSync(
    'sh',
    ['-c', '. "$0"; STATE=$1; exec 3>"$1/events"; follow_runner <"$1/lines"', LINUX, work],
    { encoding: 'utf8', env: { PATH: process.env.PATH, HATCHERY_BOOTSTRAP_LIB: '1' } },
  );
  assert.equal(r.status, 0, r.stderr);
  return readFileSync(path.join(work, 'events'), 'utf8').split('\n').filter(Boolean);
}

describe('bootstrap/windows.ps1', () => {
  describe('syntax (tree-sitter-powershell)', () => {
    it('parses without an error', () => {
      assert.deepEqual(syntaxErrors(tree), []);
      assert.ok(source.length > 10_000 && tree.rootNode.descendantsOfType('function_statement').length > 20);
    });

    it('a broken copy does not (the control: the check can fail)', async () => {
      const broken = [
        source.replace('function Invoke-HostLine {', 'function Invoke-HostLine '),
        source.replace("$l.StartsWith('jit ')", "$l.StartsWith('jit )"),
        source.replace('foreach ($raw in ($Text -split "`n")) {', 'foreach ($raw in ($Text -split "`n") {'),
      ];
      for (const [i, text] of broken.entries()) {
        assert.notEqual(text, source, `case ${i} changed nothing`);
        assert.notDeepEqual(syntaxErrors(await parsePowerShell(text)), [], `case ${i} parsed`);
      }
    });

    it('uses nothing newer than Windows PowerShell 5.1 (and the check finds what is)', async () => {
      assert.deepEqual(newerThan51(tree), []);
      const newer = source
        .replace('-UseBasicParsing -Uri $url', '-Uri $url')
        .replace(
          'Remove-Item -LiteralPath $archive -Force\n',
          'Remove-Item -LiteralPath $archive -Force && Write-Log x\n',
        );
      assert.equal(newerThan51(await parsePowerShell(newer)).length, 2);
    });

    it('calls only its own functions and known cmdlets, and reads only variables it sets', async () => {
      assert.deepEqual(unresolvedNames(tree), []);
      // The control: a misspelt function and variable in a copy are found.
      const typos = source
        .replace(
          'Invoke-ChannelPump\n    Test-TeardownAsked\n    Start-Sleep',
          'Invoke-ChanelPump\n    Test-TeardownAsked\n    Start-Sleep',
        )
        .replace(
          '$script:Acked -lt $script:Events.Count -and (Get-Date) -lt $until',
          '$script:Acked -lt $script:Events.Count -and (Get-Date) -lt $untill',
        );
      assert.deepEqual(
        unresolvedNames(await parsePowerShell(typos)).map((f) => f.replace(/^line \d+: /, '')),
        ['command Invoke-ChanelPump', 'variable $untill in Wait-ChannelFlushed'],
      );
    });

    it('calls its own functions as their param() blocks declare', async () => {
      assert.deepEqual(badCalls(tree), []);
      const wrong = source
        .replace(
          'Add-GuestEvent \'runner-exited\' "$code"\n  Complete-Bootstrap 0',
          "Add-GuestEvent 'runner-exited' $code 'x'\n  Complete-Bootstrap 0",
        )
        .replace('Wait-ChannelFlushed 10', 'Wait-ChannelFlushed -Timeout 10');
      assert.deepEqual(
        badCalls(await parsePowerShell(wrong)).map((f) => f.replace(/^line \d+: /, '')),
        [
          'Wait-ChannelFlushed has no parameter -Timeout',
          'Add-GuestEvent takes 2 positional arguments, given 3',
        ],
      );
    });

    it('is plain ASCII (Windows PowerShell 5.1 reads a file without a BOM in the ANSI code page)', () => {
      // eslint-disable-next-line no-control-regex
      const offending = source.split('\n').findIndex((l) => /[^\x09\x20-\x7e]/.test(l));
      assert.equal(offending, -1, `line ${offending + 1} has a non-ASCII character`);
    });
  });

  describe('the config it reads is the one the service writes', () => {
    it('knows the same keys as linux.sh', () => {
      const keys = scriptValue(tree, 'ConfigKeys') as string[];
      const linux = [...readFileSync(LINUX, 'utf8').matchAll(/^ {4}(HATCHERY_[A-Z0-9_]+)\) CFG_/gm)].map(
        (m) => m[1],
      );
      assert.ok(linux.length >= 10);
      assert.deepEqual([...keys].sort(), [...linux].sort());
    });

    it('parses rendered config lines back into the values (CRLF too); other lines are ignored', () => {
      const values = {
        HATCHERY_VM: 'hatchery-win-1-1-abc123',
        HATCHERY_JITCONFIG: 'eyJhIjoiYj09In0=',
        HATCHERY_CHANNEL: 'http://10.0.2.101/guest/v1/messages?x=a=b',
        HATCHERY_CHANNEL_TOKEN: 'hatchery-win-1-1-abc123.c2VjcmV0',
        HATCHERY_NEW_KEY: 'from a later service',
      };
      const parse = (text: string) => win.parseConfig(text);
      // The steps of parseConfig are ConvertFrom-GuestConfig's.
      const fn = functionNode(tree, 'ConvertFrom-GuestConfig').text;
      for (const step of ['-split "`n"', 'TrimEnd("`r")', '$ConfigLinePattern', '$ConfigKeys -ccontains'])
        assert.ok(fn.includes(step), step);
      const { HATCHERY_NEW_KEY: _unknown, ...known } = values;
      const rendered = renderGuestConfig(values);
      assert.deepEqual(parse(rendered), known);
      assert.deepEqual(parse(rendered.replace(/\n/g, '\r\n')), known);
      assert.deepEqual(parse(`#!/bin/sh\nexport PATH\n${rendered}lower_case=x\n=x\n`), known);
      // A user_data that carries both bootstraps beside the config (as a Linux-style user_data
      // script might): no line of either script is taken for config.
      const both = [LINUX, win.path].map((f) => readFileSync(f, 'utf8')).join('\n');
      assert.deepEqual(parse(`${both}\n${rendered}${both}`), known);
      assert.deepEqual(parse(both), {});
    });
  });

  describe('its messages are the protocol the service parses', () => {
    const eventNames = () => {
      const calls = commandCalls(tree, 'Add-GuestEvent');
      // Every name is a literal, but the one Read-RunnerOutput takes from $RunnerPatterns.
      const computed = calls.filter((c) => c.args[0]!.value === undefined);
      assert.deepEqual(
        computed.map((c) => [c.inFunction, c.args[0]!.text]),
        [['Read-RunnerOutput', '$e.Name']],
      );
      const emitted = calls.filter((c) => !computed.includes(c)).map((c) => str(c.args[0]!.value!));
      const fromRunner = (scriptValue(tree, 'RunnerPatterns') as Record<string, PsValue>[]).map((p) =>
        str(p.Event!),
      );
      return new Set([...emitted, ...fromRunner]);
    };

    it('sends the events linux.sh sends, each one the service knows', () => {
      const linux = new Set([...readFileSync(LINUX, 'utf8').matchAll(/\bemit ([a-z-]+)/g)].map((m) => m[1]!));
      assert.deepEqual([...eventNames()].sort(), [...linux].sort());
      for (const name of eventNames()) {
        const event = toLifecycleEvent({ seq: 1, name, detail: '' });
        assert.ok(event !== null || name === 'stopping', `${name} means nothing to the service`);
      }
    });

    it('formats each line as "event <seq> <name> [detail]", which the service parses back', () => {
      const fn = functionNode(tree, 'Format-EventLine');
      const templates = fn.descendantsOfType('expandable_string_literal').map((s) => s!.text);
      assert.deepEqual(templates, ['"event $Seq $Name"', '"$line $clean"']);
      // WindowsBootstrap.eventLine fills in these two templates (and cleans the detail).
      const format = (seq: number, name: string, detail: string) => win.eventLine(seq, name, detail);
      for (const [seq, name, detail] of [
        [1, 'booted', ''],
        [2, 'registered', ''],
        [3, 'job-started', 'build (windows-latest)'],
        [7, 'runner-exited', '0'],
        [8, 'error', 'checksum mismatch: expected 00, got 11 (http://x/r.zip)'],
      ] as const) {
        assert.deepEqual(parseGuestLine(format(seq, name, detail)), { seq, name, detail });
      }
    });

    it('cleans a detail as the protocol says: no control characters, at most 400 bytes', () => {
      assert.equal(scriptValue(tree, 'DetailMaxBytes'), 400);
      const fn = functionNode(tree, 'ConvertTo-EventDetail').text;
      for (const step of [
        '$DetailStripPattern',
        'GetByteCount($clean) -gt $DetailMaxBytes',
        '$clean.Length - 1',
      ])
        assert.ok(fn.includes(step), step);
      const clean = (text: string) => win.cleanDetail(text);
      const detail = clean(`a\tb\r\nc\u0000\u007f${'é'.repeat(300)}`);
      assert.ok(detail.startsWith('abc'));
      assert.ok(Buffer.byteLength(detail) <= 400 && Buffer.byteLength(detail) >= 399);
      assert.equal(parseGuestLine(`event 9 error ${detail}`)?.detail, detail);
    });

    it('turns runner output into the events linux.sh emits for the same lines', () => {
      const lines = [
        '√ Connected to GitHub',
        "Current runner version: '2.321.0'",
        '2026-12-02 10:00:00Z: Listening for Jobs',
        '2026-12-02 10:00:01Z: Listening for Jobs',
        '2026-12-02 10:00:05Z: Running job: build: Running job: twice',
        '2026-12-02 10:00:30Z: Job build completed with result: Succeeded',
        '2026-12-02 10:00:31Z: Job x completed with result: a completed with result: Failed',
      ];
      const events = win.runnerEvents(lines);
      assert.deepEqual(events, linuxRunnerEvents(lines));
      assert.equal(events.length, 4);
    });

    it('acts on every line the host sends (sync, shutdown, jit) and nothing else', () => {
      const fn = functionNode(tree, 'Invoke-HostLine');
      const handled = stringLiterals(fn).filter((s) => /^[a-z]+ ?$/.test(s));
      assert.deepEqual(handled.sort(), ['jit ', 'shutdown', 'sync']);
      const sent = new Set([
        ...hostLines({ state: 'busy', destroyAttempts: 0 }, 'gap'),
        ...hostLines({ state: 'destroying', destroyAttempts: 0 }, 'next'),
      ]);
      assert.deepEqual([...sent].sort(), ['shutdown', 'sync']);
      for (const line of sent) assert.ok(handled.includes(line), line);
    });

    it('takes the JIT configs GitHub mints and refuses anything a command line could misread', () => {
      const jit = win.pattern('JitPattern');
      const minted = Buffer.from(JSON.stringify({ '.runner': 'x', '.credentials': 'y' })).toString('base64');
      assert.ok(jit.test(minted));
      for (const bad of ['', 'abc def', 'abc&calc', 'abc"', 'abc\r\n', 'a|b', '%PATH%', 'a^b'])
        assert.ok(!jit.test(bad), JSON.stringify(bad));
    });

    it('validates the work dir and a static network before they reach a command line', () => {
      const work = win.pattern('WorkDirPattern');
      for (const ok of ['C:\\actions-runner', 'D:\\ci\\runner 2', 'C:\\']) assert.ok(work.test(ok), ok);
      for (const bad of ['C:\\a"&calc', 'C:\\a%PATH%', 'relative\\dir', '\\\\server\\share', 'C:\\a\nb'])
        assert.ok(!work.test(bad), JSON.stringify(bad));
      const net = win.pattern('StaticNetPattern');
      assert.deepEqual(net.exec('static:10.0.2.15/24,10.0.2.2')?.slice(1), ['10.0.2.15', '24', '10.0.2.2']);
      assert.deepEqual(net.exec('static:10.0.2.15/24')?.slice(1, 3), ['10.0.2.15', '24']);
      for (const bad of ['static:10.0.2.15', 'static:10.0.2.15/24,gw', 'static:a/24'])
        assert.ok(!net.test(bad), bad);
    });
  });

  describe('secrets', () => {
    const SECRET = /HATCHERY_CHANNEL_TOKEN|HATCHERY_JITCONFIG|\$script:Jit|\$Jit\b/i;

    it('never logs or writes the token or the JIT config', () => {
      for (const command of [
        'Write-Log',
        'Add-Content',
        'Set-Content',
        'Out-File',
        'Write-Host',
        'Write-Output',
      ]) {
        for (const call of commandCalls(tree, command)) {
          for (const arg of call.args)
            assert.doesNotMatch(arg.text, SECRET, `${command} on line ${call.line}: ${arg.text}`);
        }
      }
      assert.doesNotMatch(
        source,
        /Start-Transcript|Set-PSDebug|Tee-Object/,
        'nothing echoes commands or output',
      );
    });

    it('uses them only where they are needed: the header, the runner, the redaction, the config', () => {
      // Every leaf of the tree that names one of them, by the function it is in.
      const uses = new Set<string>();
      const walk = (n: Node): void => {
        const named = n.namedChildren.filter((c): c is Node => c !== null);
        if (named.length === 0 && SECRET.test(n.text)) uses.add(enclosingFunction(n));
        named.forEach(walk);
      };
      walk(tree.rootNode);
      assert.deepEqual([...uses].sort(), [
        '', // the defaults table and the key list
        'Invoke-HostLine', // a `jit` line
        'Read-RunnerOutput', // redacts a runner line holding the JIT config
        'Receive-HostLines', // the Authorization header of the long-poll
        'Send-ChannelLine', // the Authorization header
        'Start-Runner', // run.cmd --jitconfig
        'Wait-Jit', // takes it from the config
      ]);
    });
  });
});

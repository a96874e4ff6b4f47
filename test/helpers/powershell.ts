// PowerShell source read without a PowerShell (none can be installed here): tree-sitter's
// PowerShell grammar (tree-sitter-powershell, a third-party grammar run as WebAssembly, not
// PowerShell's own parser) parses a script, and these helpers read its literals: the script-level
// data, the calls of a command, a function's body.
import { createRequire } from 'node:module';
import v8 from 'node:v8';
import { Language, Parser, type Node, type Tree } from 'web-tree-sitter';

const require = createRequire(import.meta.url);
let parser: Promise<Parser> | null = null;

async function load(): Promise<Parser> {
  // V8 optimizes a large WebAssembly module in the background and the process waits for that
  // at exit: 15-50 s of CPU for this grammar, measured. Its baseline code parses the script in
  // well under a second.
  v8.setFlagsFromString('--liftoff-only');
  await Parser.init();
  const language = await Language.load(require.resolve('tree-sitter-powershell/tree-sitter-powershell.wasm'));
  const p = new Parser();
  p.setLanguage(language);
  return p;
}

export async function parsePowerShell(source: string): Promise<Tree> {
  parser ??= load();
  const tree = (await parser).parse(source);
  if (!tree) throw new Error('tree-sitter returned no tree');
  return tree;
}

const children = (n: Node): Node[] => n.namedChildren.filter((c): c is Node => c !== null);

/** Where the grammar could not parse: ERROR and MISSING nodes, with their line. */
export function syntaxErrors(tree: Tree): string[] {
  const found: string[] = [];
  const walk = (n: Node): void => {
    if (n.isError || n.isMissing)
      found.push(
        `line ${n.startPosition.row + 1}: ${n.isMissing ? `missing ${n.type}` : n.text.slice(0, 60)}`,
      );
    for (const c of n.children) if (c) walk(c);
  };
  walk(tree.rootNode);
  return found;
}

// Expression layers the grammar nests around every operand; a literal sits at the bottom.
const WRAPPERS = new Set([
  'pipeline',
  'pipeline_chain',
  'logical_expression',
  'bitwise_expression',
  'comparison_expression',
  'additive_expression',
  'multiplicative_expression',
  'format_expression',
  'range_expression',
  'array_literal_expression',
  'unary_expression',
  'left_assignment_expression',
  'statement_list',
]);

function unwrap(n: Node): Node {
  let node = n;
  for (;;) {
    const c = children(node);
    if (!WRAPPERS.has(node.type) || c.length !== 1) return node;
    node = c[0]!;
  }
}

export type PsValue = string | number | boolean | null | PsValue[] | { [key: string]: PsValue };

/**
 * The value of a literal expression: strings (single-quoted, or double-quoted without
 * variables or escapes), integers, $true/$false/$null, @(…) arrays, a, b lists, @{…} tables.
 * Throws on anything that would need evaluating.
 */
export function literal(n: Node): PsValue {
  const node = unwrap(n);
  switch (node.type) {
    case 'array_literal_expression':
    case 'statement_list':
      return children(node).flatMap((c) => {
        const v = literal(c);
        return node.type === 'statement_list' && Array.isArray(v) ? v : [v];
      });
    case 'array_expression': {
      const body = children(node)[0];
      if (!body) return [];
      const v = literal(body);
      return Array.isArray(v) ? v : [v];
    }
    case 'string_literal': {
      const text = node.text;
      if (text.startsWith("'")) return text.slice(1, -1).replace(/''/g, "'");
      if (/[$`]/.test(text.slice(1, -1))) throw new Error(`not a literal: ${text}`);
      return text.slice(1, -1);
    }
    case 'integer_literal':
      return Number(node.text);
    case 'variable': {
      const v = { $true: true, $false: false, $null: null } as Record<string, PsValue>;
      if (node.text.toLowerCase() in v) return v[node.text.toLowerCase()]!;
      throw new Error(`not a literal: ${node.text}`);
    }
    case 'hash_literal_expression': {
      const out: Record<string, PsValue> = {};
      const body = children(node)[0];
      for (const entry of body ? children(body) : []) {
        const [key, value] = children(entry);
        out[key!.text] = literal(value!);
      }
      return out;
    }
    default:
      throw new Error(`not a literal (${node.type}): ${node.text.slice(0, 60)}`);
  }
}

/** The script-level `$Name = <value>` assignments, by name (without `$`). */
export function scriptAssignments(tree: Tree): Map<string, Node> {
  const out = new Map<string, Node>();
  const list = children(tree.rootNode).find((c) => c.type === 'statement_list');
  for (const statement of list ? children(list) : []) {
    const assignment = children(statement).find((c) => c.type === 'assignment_expression');
    if (!assignment) continue;
    const [left, , value] = children(assignment);
    const name = unwrap(left!);
    if (name.type === 'variable' && value) out.set(name.text.slice(1), value);
  }
  return out;
}

/** A script-level literal assignment's value. */
export function scriptValue(tree: Tree, name: string): PsValue {
  const node = scriptAssignments(tree).get(name);
  if (!node) throw new Error(`no script-level $${name} = …`);
  return literal(node);
}

export function functionNode(tree: Tree, name: string): Node {
  const fn = tree.rootNode
    .descendantsOfType('function_statement')
    .find((f) => f && children(f).find((c) => c.type === 'function_name')?.text === name);
  if (!fn) throw new Error(`no function ${name}`);
  return fn;
}

export interface CommandCall {
  /** The function it is in, or '' at script level. */
  inFunction: string;
  /** Each argument: its literal value, or its source text when it is not a literal. */
  args: { value?: PsValue; text: string }[];
  line: number;
}

/** Every call of a command (a function or cmdlet) in the tree or under `within`. */
export function commandCalls(tree: Tree, name: string, within?: Node): CommandCall[] {
  const root = within ?? tree.rootNode;
  return root
    .descendantsOfType('command')
    .filter((c): c is Node => c !== null && children(c)[0]?.text === name)
    .map((c) => {
      const elements = children(c).find((e) => e.type === 'command_elements');
      const args = (elements ? children(elements) : [])
        .filter((e) => e.type !== 'command_argument_sep')
        .map((e) => {
          try {
            return { value: literal(e), text: e.text };
          } catch {
            return { text: e.text };
          }
        });
      return { inFunction: enclosingFunction(c), args, line: c.startPosition.row + 1 };
    });
}

export function enclosingFunction(n: Node): string {
  for (let p = n.parent; p; p = p.parent) {
    if (p.type === 'function_statement') return children(p).find((c) => c.type === 'function_name')!.text;
  }
  return '';
}

/** Every string literal's value under a node (single-quoted, and double-quoted ones as written). */
export function stringLiterals(n: Node): string[] {
  return n
    .descendantsOfType('string_literal')
    .filter((s): s is Node => s !== null)
    .map((s) => (s.text.startsWith("'") ? s.text.slice(1, -1).replace(/''/g, "'") : s.text.slice(1, -1)));
}

// Parameters and operators that Windows PowerShell 5.1 (what Windows Server ships) lacks: each
// came with PowerShell 6 or 7. A parser of the newer language accepts them; 5.1 does not.
const NEWER_PARAMETERS: Record<string, string[]> = {
  'Invoke-WebRequest': [
    '-SkipCertificateCheck',
    '-SkipHttpErrorCheck',
    '-StatusCodeVariable',
    '-Resume',
    '-Authentication',
    '-Token',
  ],
  'Invoke-RestMethod': [
    '-SkipCertificateCheck',
    '-SkipHttpErrorCheck',
    '-StatusCodeVariable',
    '-Resume',
    '-Authentication',
    '-Token',
  ],
  'ForEach-Object': ['-Parallel'],
  'Get-Content': ['-AsByteStream'],
  'Set-Content': ['-AsByteStream'],
  'ConvertFrom-Json': ['-AsHashtable', '-Depth'],
  'Start-Process': ['-Environment'],
};

/**
 * What in a script needs a PowerShell newer than 5.1, or trips 5.1: `&&`/`||` between
 * pipelines, the parameters above, and an Invoke-WebRequest without -UseBasicParsing (5.1
 * otherwise parses the answer with Internet Explorer's engine, absent on Server Core).
 */
export function newerThan51(tree: Tree): string[] {
  const found: string[] = [];
  for (const n of tree.rootNode.descendantsOfType(['&&', '||'])) {
    if (n) found.push(`line ${n.startPosition.row + 1}: ${n.type} between pipelines (PowerShell 7)`);
  }
  for (const [command, params] of Object.entries(NEWER_PARAMETERS)) {
    for (const call of commandCalls(tree, command)) {
      for (const arg of call.args) {
        if (params.some((p) => p.toLowerCase() === arg.text.toLowerCase()))
          found.push(`line ${call.line}: ${command} ${arg.text} (PowerShell 6+)`);
      }
    }
  }
  for (const call of commandCalls(tree, 'Invoke-WebRequest')) {
    if (!call.args.some((a) => a.text.toLowerCase() === '-usebasicparsing'))
      found.push(`line ${call.line}: Invoke-WebRequest without -UseBasicParsing`);
  }
  return found;
}

// The cmdlets these scripts may call: each one is in Windows PowerShell 5.1 on Windows Server
// 2019/2022 (Microsoft.PowerShell.*, NetTCPIP, NetAdapter, NetSecurity, NetConnection,
// ScheduledTasks, CimCmdlets, Microsoft.PowerShell.LocalAccounts, Microsoft.PowerShell.Archive).
// A name outside this list and the script's own functions is a typo or needs a check first.
export const KNOWN_CMDLETS = new Set(
  [
    'Add-Content',
    'Add-LocalGroupMember',
    'ConvertTo-SecureString',
    'Copy-Item',
    'Expand-Archive',
    'Get-ChildItem',
    'Get-CimInstance',
    'Get-Date',
    'Get-FileHash',
    'Get-NetAdapter',
    'Get-NetConnectionProfile',
    'Get-NetIPAddress',
    'Invoke-WebRequest',
    'Join-Path',
    'New-Item',
    'New-LocalUser',
    'New-NetFirewallRule',
    'New-NetIPAddress',
    'New-Object',
    'New-ScheduledTaskAction',
    'New-ScheduledTaskPrincipal',
    'New-ScheduledTaskSettingsSet',
    'New-ScheduledTaskTrigger',
    'Out-Null',
    'Register-ScheduledTask',
    'Remove-Item',
    'Remove-ItemProperty',
    'Remove-NetIPAddress',
    'Restart-Service',
    'Select-Object',
    'Set-Content',
    'Set-ItemProperty',
    'Set-NetConnectionProfile',
    'Set-NetIPInterface',
    'Set-Service',
    'Set-StrictMode',
    'Sort-Object',
    'Start-Sleep',
    'Test-Path',
    'Where-Object',
    'Write-Host',
    // Windows' own programs, in System32.
    'icacls.exe',
    'powercfg.exe',
    'winrm.cmd',
  ].map((c) => c.toLowerCase()),
);

const AUTOMATIC = new Set([
  '_',
  'true',
  'false',
  'null',
  'lastexitcode',
  'erroractionpreference',
  'progresspreference',
  'psscriptroot',
  'args',
  'matches',
  'host',
]);

/** `$script:Foo`, `${foo}`, `@foo` → `foo`; `$env:X` → null (not a variable of the script). */
function variableName(text: string): { name: string; script: boolean } | null {
  const m = /^[$@]\{?(?:(script|env|global|local):)?([A-Za-z_][A-Za-z0-9_]*)\}?$/.exec(text);
  if (!m || m[1] === 'env') return null;
  return { name: m[2]!.toLowerCase(), script: m[1] === 'script' };
}

/**
 * Names a script uses but never defines, which only running it would reveal (Set-StrictMode
 * makes such a variable fatal, a misspelt command is fatal anyway): commands that are neither
 * its functions nor KNOWN_CMDLETS, and variables read in a function that neither it (parameter,
 * assignment, loop variable) nor the script level assigns.
 */
export function unresolvedNames(tree: Tree): string[] {
  const found: string[] = [];
  const functions = new Set(
    tree.rootNode.descendantsOfType('function_name').map((f) => f!.text.toLowerCase()),
  );
  for (const c of tree.rootNode.descendantsOfType('command_name')) {
    const name = c!.text.toLowerCase();
    if (!functions.has(name) && !KNOWN_CMDLETS.has(name))
      found.push(`line ${c!.startPosition.row + 1}: command ${c!.text}`);
  }
  // Where each variable gets a value: its function ('' = script level) → names.
  const defined = new Map<string, Set<string>>();
  const define = (fn: string, text: string, script = false) => {
    const v = variableName(text);
    if (!v) return;
    const scope = v.script || script ? '' : fn;
    if (!defined.has(scope)) defined.set(scope, new Set());
    defined.get(scope)!.add(v.name);
  };
  for (const a of tree.rootNode.descendantsOfType('left_assignment_expression'))
    define(enclosingFunction(a!), unwrap(a!).text);
  for (const p of tree.rootNode.descendantsOfType('script_parameter')) {
    const v = children(p!).find((c) => c.type === 'variable');
    if (v) define(enclosingFunction(p!), v.text);
  }
  for (const f of tree.rootNode.descendantsOfType('foreach_statement')) {
    const v = children(f!).find((c) => c.type === 'variable');
    if (v) define(enclosingFunction(f!), v.text);
  }
  for (const v of tree.rootNode.descendantsOfType('variable')) {
    const name = variableName(v!.text);
    if (!name || AUTOMATIC.has(name.name)) continue;
    const fn = name.script ? '' : enclosingFunction(v!);
    if (defined.get(fn)?.has(name.name) || defined.get('')?.has(name.name)) continue;
    found.push(`line ${v!.startPosition.row + 1}: variable ${v!.text}${fn ? ` in ${fn}` : ''}`);
  }
  return found;
}

/**
 * Calls of the script's own functions that do not fit their param() blocks: a named argument
 * they do not declare, or more positional arguments than they take.
 */
export function badCalls(tree: Tree): string[] {
  const params = new Map<string, { name: string; isSwitch: boolean }[]>();
  for (const f of tree.rootNode.descendantsOfType('function_statement')) {
    const name = children(f!)
      .find((c) => c.type === 'function_name')!
      .text.toLowerCase();
    params.set(
      name,
      f!.descendantsOfType('script_parameter').map((p) => ({
        name: children(p!)
          .find((c) => c.type === 'variable')!
          .text.slice(1)
          .toLowerCase(),
        isSwitch: /\[switch\]/i.test(p!.text),
      })),
    );
  }
  const found: string[] = [];
  for (const c of tree.rootNode.descendantsOfType('command')) {
    const name = children(c!)[0]!;
    const declared = params.get(name.text.toLowerCase());
    if (name.type !== 'command_name' || !declared) continue;
    const elements = children(c!).find((e) => e.type === 'command_elements');
    const args = elements ? children(elements).filter((e) => e.type !== 'command_argument_sep') : [];
    let positional = 0;
    const byName = new Set<string>();
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      if (a.type !== 'command_parameter') {
        positional++;
        continue;
      }
      const p = declared.find((d) => d.name === a.text.slice(1).replace(/:$/, '').toLowerCase());
      if (!p) found.push(`line ${a.startPosition.row + 1}: ${name.text} has no parameter ${a.text}`);
      else if (!p.isSwitch) {
        byName.add(p.name);
        i++; // its value
      }
    }
    const takes = declared.filter((d) => !d.isSwitch && !byName.has(d.name)).length;
    if (positional > takes)
      found.push(
        `line ${c!.startPosition.row + 1}: ${name.text} takes ${takes} positional arguments, given ${positional}`,
      );
  }
  return found;
}

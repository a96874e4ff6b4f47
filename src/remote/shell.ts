// An SSH command is one string that the remote login shell parses: there is no argv. Every word
// we send is quoted here (POSIX single quotes, total: no character is special inside them), and
// the values were validated before (allow-lists) — two independent guards.

/** `'…'`, with each `'` written as `'\''`. */
export function shQuote(word: string): string {
  if (word.includes('\0')) throw new Error('a shell word cannot contain NUL');
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

/** `env NAME='value' … 'argv0' 'argv1' …`: variables through env(1), never spliced into code. */
export function commandLine(argv: readonly string[], env: Record<string, string> = {}): string {
  if (argv.length === 0) throw new Error('empty command');
  const vars = Object.entries(env).map(([k, v]) => {
    if (!ENV_NAME.test(k)) throw new Error(`invalid environment variable name ${JSON.stringify(k)}`);
    return `${k}=${shQuote(v)}`;
  });
  return [...(vars.length ? ['env', ...vars] : []), ...argv.map(shQuote)].join(' ');
}

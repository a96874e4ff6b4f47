// `hatchery encrypt-token`: what SpinW's workflow does with `openssl enc … | tr "\n" "_"`, for
// operators preparing a request by hand. Reads the token from stdin (never from argv: argv is
// visible to every user on the machine) and the password from an environment variable.
import type { Command } from 'commander';
import { opensslEncrypt } from '../crypto/openssl.ts';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function registerEncryptTokenCommand(program: Command): void {
  program
    .command('encrypt-token')
    .description(
      'encrypt a GitHub token from stdin for the legacy route (same as the openssl command SpinW workflows run)',
    )
    .option(
      '--password-env <name>',
      'environment variable holding the password',
      'HATCHERY_LEGACY_OPENSSL_PASSWORD',
    )
    .option('--raw', 'keep the base64 line breaks instead of SpinW\'s "_"')
    .action(async (opts: { passwordEnv: string; raw?: boolean }) => {
      const password = process.env[opts.passwordEnv];
      if (!password)
        throw new Error(
          `set the password in $${opts.passwordEnv} (or choose another variable with --password-env)`,
        );
      const input = await readStdin();
      const token = input.replace(/\r?\n$/, '');
      if (!token) throw new Error('no token on stdin');
      // Like `echo "$PAT" | openssl enc …`: the plaintext carries echo's trailing newline.
      const enc = opensslEncrypt(`${token}\n`, password);
      process.stdout.write(opts.raw ? enc : `${enc.replace(/\n/g, '_')}\n`);
    });
}

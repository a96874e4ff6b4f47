// The generic pool keys of src/remote/ (config/schema.ts adds them to every pool):
//   bootstrap = "provider" | "ssh"       how the bootstrap reaches the guest
//   ssh = { user, dir }                  with bootstrap = "ssh"
//   prepare = { host, port, user, key, host_key, command, timeout_seconds, retryable }
// and the service-wide `[ssh] state_dir` where the per-VM key pairs live.
import { z } from 'zod';
import { FINGERPRINT } from './fingerprint.ts';

const USER = /^[a-z_][a-z0-9_.-]{0,31}$/;
// A host name or an IPv4/IPv6 address (no brackets): no spaces, no shell or option characters.
const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$/;

const fingerprint = z
  .string()
  .regex(FINGERPRINT, 'an OpenSSH SHA256 fingerprint, as `ssh-keygen -lf <host key>.pub` prints it');

export const bootstrapMode = z
  .enum(['provider', 'ssh'])
  .default('provider')
  .describe('provider: the provider delivers the bootstrap (QEMU: fw_cfg); ssh: Hatchery copies it over SSH');

export const sshPoolSchema = z
  .object({
    user: z
      .string()
      .regex(USER, 'a user name')
      .optional()
      .describe("the login; default the provider's (VmInfo.ssh.user), else root"),
    dir: z
      .string()
      .regex(/^[A-Za-z0-9._/-]{1,200}$/, 'a path of letters, digits, ".", "_", "-", "/"')
      .refine((p) => !p.split('/').includes('..'), 'no ".." components')
      .default('.hatchery')
      .describe("where the bootstrap and its config go on the guest (relative: in the login's home)"),
  })
  .strict()
  .prefault({});

export const prepareSchema = z
  .object({
    host: z.string().regex(HOST, 'a host name or IP address'),
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().regex(USER, 'a user name'),
    key: z.string().min(1).describe('path of the private key to log in with (relative to the config file)'),
    host_key: fingerprint.describe(
      "the host's key fingerprint: required, a configured host is never trusted blindly",
    ),
    command: z
      .array(z.string().min(1))
      .min(1)
      .describe(
        'argv, each word quoted for the remote shell; the VM identifiers come as HATCHERY_* variables',
      ),
    timeout_seconds: z.number().int().positive().default(300),
    retryable: z
      .boolean()
      .default(false)
      .describe('a failure is retried like a failed create (true) or fails the VM at once (false)'),
  })
  .strict();

export const sshServiceSchema = z
  .object({
    state_dir: z
      .string()
      .default('var/ssh')
      .describe('per-VM key pairs (0700; keys 0600), removed with their VM'),
  })
  .strict()
  .prefault({});

export type SshPoolConfig = z.infer<typeof sshPoolSchema>;
export type PrepareConfig = z.infer<typeof prepareSchema>;

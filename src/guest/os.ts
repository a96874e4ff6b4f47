// A pool's guest operating system (pool key `os`): which bootstrap its VMs get and where their
// runner comes from (docs/guest-protocol.md, "Windows guests"; the ADR
// docs/adr/2026-12-02-windows-guests.md).
//
// The service-wide `[runner]` is one tarball, the Linux one. A Windows guest cannot use it: it
// runs the runner installed in its image (packer/windows-runner), unless its pool names a
// download of its own (`runner = { url, sha256 }`, the Windows .zip).
import { z } from 'zod';

export const GUEST_OSES = ['linux', 'windows'] as const;
export type GuestOs = (typeof GUEST_OSES)[number];

/** The bootstrap script of each OS, under bootstrap/. */
export const BOOTSTRAP_FILES: Record<GuestOs, string> = { linux: 'linux.sh', windows: 'windows.ps1' };

/**
 * Provider kinds that cannot hand a Windows guest its config, and why: a Windows pool on one is a
 * config error rather than VMs that boot and wait for a config that never comes.
 */
export const NO_WINDOWS_GUESTS: Readonly<Record<string, string>> = {
  qemu: 'it hands the config over through fw_cfg, which Windows cannot read',
  vagrant: 'its Vagrantfile copies and starts the bootstrap with sh over SSH',
};

export interface RunnerDownload {
  url: string;
  sha256: string;
}

export const SHA256_HEX = /^[0-9a-f]{64}$/;

export const guestOsSchema = z
  .enum(GUEST_OSES, { error: `one of ${GUEST_OSES.join(', ')}` })
  .default('linux')
  .describe("the guests' OS: linux runs bootstrap/linux.sh, windows bootstrap/windows.ps1 (HTTP channel)");

export const poolRunnerSchema = z
  .object({
    url: z.string().url(),
    sha256: z.string().regex(SHA256_HEX, '64 lowercase hex digits'),
  })
  .strict()
  .optional()
  .describe(
    "this pool's runner download instead of [runner] (e.g. the Windows .zip); " +
      'a windows pool without one uses the runner installed in its image',
  );

/**
 * Where a pool's guests get the runner: a download, `image` (the one installed in the image),
 * or null when a Linux pool has nowhere to get it from (runner.url is not configured).
 */
export function runnerFor(
  pool: { os: GuestOs; runner?: RunnerDownload | undefined },
  service: RunnerDownload | null,
): RunnerDownload | 'image' | null {
  if (pool.runner) return pool.runner;
  return pool.os === 'windows' ? 'image' : service;
}

/** The guest config keys that say where the runner comes from (none: the image's). */
export function runnerGuestConfig(runner: RunnerDownload | 'image'): Record<string, string> {
  return runner === 'image' ? {} : { HATCHERY_RUNNER_URL: runner.url, HATCHERY_RUNNER_SHA256: runner.sha256 };
}

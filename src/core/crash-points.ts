// The moments where a crash of the service is most dangerous, named so that a test can kill it
// at exactly that moment rather than whenever a poll happens to look:
//   jit-minted   — a runner config exists on GitHub, not yet recorded in the store;
//   vm-created   — the provider has created the VM, `created` is not committed;
//   vm-destroyed — the VM is gone at the provider, its registrations and `destroy_done` are not;
//   ssh-host-key-pinned — bootstrap = "ssh": the VM's host key is pinned, nothing copied yet.
// `hatchery serve` arms one with HATCHERY_TEST_CRASH_AT=<point>: the first time the process gets
// there it stops itself (SIGSTOP), for the test to SIGKILL. Nothing happens otherwise.
export const CRASH_POINTS = ['jit-minted', 'vm-created', 'vm-destroyed', 'ssh-host-key-pinned'] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

export function crashPointFor(armed: string | undefined): ((point: CrashPoint) => void) | undefined {
  if (!armed) return undefined;
  if (!(CRASH_POINTS as readonly string[]).includes(armed)) {
    throw new Error(`HATCHERY_TEST_CRASH_AT=${armed}: not one of ${CRASH_POINTS.join(', ')}`);
  }
  let fired = false;
  return (point) => {
    if (point !== armed || fired) return;
    fired = true;
    process.kill(process.pid, 'SIGSTOP');
  };
}

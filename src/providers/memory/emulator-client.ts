// A memory VM has no guest. With `guest_emulator = "<url>"` each VM is handed to an emulator of
// guests (test/fakes/guest/emulator.ts: it speaks the guest protocol over the HTTP channel and
// the runner's to GitHub) so that whole lifecycles run without a hypervisor: the control plane's
// benchmarks and scale tests. The emulator gets the guest config, the one-shot JIT config
// included: point it only at a loopback emulator of your own.
import { ProviderError } from '../provider.ts';
import type { MemoryProviderOptions } from './provider.ts';

const TIMEOUT_MS = 10_000;

async function call(url: string, init: RequestInit, what: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (e) {
    throw new ProviderError(`${what}: guest emulator unreachable (${(e as Error).message})`, true);
  }
  await res.arrayBuffer();
  if (!res.ok && res.status !== 404)
    throw new ProviderError(`${what}: guest emulator answered ${res.status}`, true);
}

export function emulatorHooks(base: string): Pick<MemoryProviderOptions, 'onCreated' | 'onDestroyed'> {
  const root = base.replace(/\/+$/, '');
  return {
    onCreated: async (vm) => {
      await call(
        `${root}/vms`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            name: vm.spec.name,
            guest_config: { HATCHERY_VM: vm.spec.name, ...vm.spec.guestConfig },
          }),
        },
        `create ${vm.spec.name}`,
      );
    },
    onDestroyed: (name) => call(`${root}/vms/${name}`, { method: 'DELETE' }, `destroy ${name}`),
  };
}

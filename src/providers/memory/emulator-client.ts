// A memory VM has no guest. With `guest_emulator = "<url>"` each VM is handed to an emulator of
// guests (test/fakes/guest/emulator.ts: it speaks the guest protocol and the runner's to GitHub)
// so that whole lifecycles run without a hypervisor: the control plane's benchmarks and scale
// tests. A guest on the HTTP channel calls the service; any other gets a unix socket from the
// emulator, as QEMU's virtio-serial port, which the service links to. The emulator is given
// the guest config, the one-shot JIT config included: point it only at a loopback emulator.
import { ProviderError, type ChannelAddress } from '../provider.ts';
import type { MemoryProviderOptions } from './provider.ts';

const TIMEOUT_MS = 10_000;

async function call(url: string, init: RequestInit, what: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (e) {
    throw new ProviderError(`${what}: guest emulator unreachable (${(e as Error).message})`, true);
  }
  const text = await res.text();
  if (!res.ok && res.status !== 404)
    throw new ProviderError(`${what}: guest emulator answered ${res.status}`, true);
  return text;
}

export function emulatorHooks(
  base: string,
): Pick<MemoryProviderOptions, 'onCreated' | 'onDestroyed' | 'nativeChannel'> {
  const root = base.replace(/\/+$/, '');
  return {
    nativeChannel: 'unix',
    onCreated: async (vm) => {
      const answer = await call(
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
      const { channel } = JSON.parse(answer) as { channel: ChannelAddress | null };
      return channel ? { channel } : {};
    },
    onDestroyed: async (name) => {
      await call(`${root}/vms/${name}`, { method: 'DELETE' }, `destroy ${name}`);
    },
  };
}

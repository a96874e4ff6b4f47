// A memory VM has no guest. With `guest_emulator = "<url>"` each VM is handed to an emulator of
// guests (test/fakes/guest/emulator.ts: it speaks the guest protocol and the runner's to GitHub)
// so that whole lifecycles run without a hypervisor: the control plane's benchmarks and scale
// tests. A guest on the HTTP channel calls the service; any other gets a unix socket from the
// emulator, as QEMU's virtio-serial port, which the service links to. The emulator is given
// the guest config, the one-shot JIT config included: point it only at a loopback emulator.
import http from 'node:http';
import { ProviderError, type ChannelAddress } from '../provider.ts';
import type { MemoryProviderOptions } from './provider.ts';

const TIMEOUT_MS = 10_000;
// node:http, not fetch: the emulator stands in for a hypervisor, and the control plane's bench
// counts this process's CPU; fetch's WHATWG streams cost several times a plain request.
const agent = new http.Agent({ keepAlive: true });

function call(url: string, method: string, body: string | undefined, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const fail = (why: string) => reject(new ProviderError(`${what}: guest emulator ${why}`, true));
    const req = http.request(
      url,
      {
        method,
        agent,
        timeout: TIMEOUT_MS,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('error', (e) => fail(`unreachable (${e.message})`));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if ((status < 200 || status >= 300) && status !== 404) fail(`answered ${status}`);
          else resolve(text);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', (e) => fail(`unreachable (${e.message})`));
    req.end(body);
  });
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
        'POST',
        JSON.stringify({
          name: vm.spec.name,
          guest_config: { HATCHERY_VM: vm.spec.name, ...vm.spec.guestConfig },
        }),
        `create ${vm.spec.name}`,
      );
      const { channel } = JSON.parse(answer) as { channel: ChannelAddress | null };
      return channel ? { channel } : {};
    },
    onDestroyed: async (name) => {
      await call(`${root}/vms/${name}`, 'DELETE', undefined, `destroy ${name}`);
    },
  };
}

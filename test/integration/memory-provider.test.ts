// The in-memory provider (scale tests and benchmarks) passes the same contract as the real ones:
// its "hypervisor" is a map shared by the two installations of the contract.
import type { MemoryBackend } from '../../src/providers/memory/provider.ts';
import { MemoryProvider } from '../../src/providers/memory/provider.ts';
import type { VmSpec } from '../../src/providers/provider.ts';
import { defineProviderContract } from '../contracts/provider.ts';

const backend: MemoryBackend = new Map();
const provider = (instanceId: string) =>
  new MemoryProvider({ instanceId, images: ['tiny'], createMs: 50, backend });

const spec = (name: string): VmSpec => ({
  name,
  pool: 'linux',
  image: 'tiny',
  cpus: 1,
  memoryMiB: 128,
  bootstrap: '',
  guestConfig: {},
  tags: { 'hatchery.pool': 'linux' },
});

defineProviderContract('memory', async () => ({
  provider: provider('test'),
  foreign: provider('someone-else'),
  spec,
  badImage: 'no-such-image',
  traces: async (name) => (backend.has(name) ? [`backend entry ${name}`] : []),
  abortPoints: [
    {
      what: 'once the VM is recorded, while its create takes its time',
      reached: async (name) => backend.has(name),
    },
  ],
  cleanup: async () => backend.clear(),
}));

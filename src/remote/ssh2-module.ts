// ssh2, loaded the first time a pool uses SSH: at import it instantiates a WebAssembly Poly1305
// with a 16 MiB heap (seen in a heap snapshot of a service with 1,000 VMs), which installations
// without SSH pools would otherwise carry for nothing.
import type Ssh2 from 'ssh2';

let loading: Promise<typeof Ssh2> | null = null;

export function loadSsh2(): Promise<typeof Ssh2> {
  loading ??= import('ssh2').then((m) => m.default);
  return loading;
}

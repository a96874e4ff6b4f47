// KVM is usable only if a guest actually runs under it: on this kind of host /dev/kvm opens and
// VM creation succeeds, yet a guest hangs (kvm-pvm). So probe with a short timed boot: a kernel
// without a root file system panics and, with panic=-1 and -no-reboot, QEMU exits at once.
import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';

export interface KvmProbe {
  usable: boolean;
  reason: string;
  ms: number;
}

export async function probeKvm(binary: string, kernel: string, timeoutMs = 4000): Promise<KvmProbe> {
  const started = Date.now();
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { usable: false, reason: '/dev/kvm is missing or not accessible', ms: Date.now() - started };
  }
  return new Promise((resolve) => {
    const child = spawn(
      binary,
      [
        '-accel',
        'kvm',
        '-m',
        '64M',
        '-display',
        'none',
        '-monitor',
        'none',
        '-serial',
        'none',
        '-no-reboot',
        '-nodefaults',
        '-kernel',
        kernel,
        '-append',
        'panic=-1',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({
        usable: false,
        reason: `a KVM guest did not finish a ${timeoutMs} ms test boot`,
        ms: Date.now() - started,
      });
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ usable: false, reason: `cannot run ${binary}: ${e.message}`, ms: Date.now() - started });
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0)
        resolve({ usable: true, reason: 'test boot under KVM finished', ms: Date.now() - started });
      else
        resolve({
          usable: false,
          reason: `QEMU with KVM exited ${code}: ${stderr.trim().split('\n')[0] ?? ''}`,
          ms: Date.now() - started,
        });
    });
  });
}

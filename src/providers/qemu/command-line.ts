// Builds a VM's qemu-system-x86_64 argument list. Pure: every path and option comes in as data,
// so the command line is unit-tested without starting QEMU.
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { VmSpec } from '../provider.ts';
import { AUTHORIZED_KEYS_FW_CFG } from './images/tiny-ssh.ts';

export interface BootImage {
  /** Uncompressed kernel (PVH ELF) or bzImage; absent: boot the disk through firmware. */
  kernel?: string;
  initrd?: string;
  /** Base qcow2: each VM gets a copy-on-write overlay of it. */
  disk?: string;
  /** Kernel command line (with `kernel`). */
  append?: string;
}

export interface NetworkSpec {
  /** `restricted`: slirp with restrict=on, only the listed forwards; `open`: outbound access. */
  mode: 'restricted' | 'open';
  /** Guest address:port → host address:port; each guest connection gets its own forwarder process. */
  forwards: { guest: string; host: string }[];
}

export interface VmFiles {
  dir: string;
  qmp: string;
  channel: string;
  console: string;
  pidfile: string;
  config: string;
  bootstrap: string;
  overlay: string;
  /** The login key of an SSH-bootstrapped VM (fw_cfg `opt/hatchery/authorized_keys`). */
  authorizedKeys: string;
}

export const CHANNEL_PORT = 'org.hatchery.0';

export function vmFiles(stateDir: string, name: string): VmFiles {
  const dir = path.join(stateDir, name);
  return {
    dir,
    qmp: path.join(dir, 'qmp.sock'),
    channel: path.join(dir, 'channel.sock'),
    console: path.join(dir, 'console.log'),
    pidfile: path.join(dir, 'qemu.pid'),
    config: path.join(dir, 'guest-config'),
    bootstrap: path.join(dir, 'bootstrap.sh'),
    overlay: path.join(dir, 'disk.qcow2'),
    authorizedKeys: path.join(dir, 'authorized_keys'),
  };
}

/** A stable, locally administered MAC per VM (SpinW gave every VM the same one). */
export function macFor(name: string): string {
  const h = createHash('sha256').update(name).digest();
  return ['52', '54', '00', h[0], h[1], h[2]]
    .map((b) => (typeof b === 'number' ? b.toString(16).padStart(2, '0') : b))
    .join(':');
}

/** QEMU option values use `,` as separator; a literal comma is written `,,`. */
const esc = (v: string): string => v.replace(/,/g, ',,');

export function netdevOption(net: NetworkSpec, forwardCommand: string[], sshPort?: number): string {
  const parts = ['user', 'id=n0'];
  if (net.mode === 'restricted') parts.push('restrict=on');
  // The guest's sshd on a loopback port of the host (restrict=on leaves host forwards working).
  if (sshPort !== undefined) parts.push(`hostfwd=tcp:127.0.0.1:${sshPort}-:22`);
  for (const f of net.forwards) {
    const [hostAddr, hostPort] = f.host.split(':');
    // `cmd:` forks one forwarder per guest connection (the `tcp:` chardev form carries only one).
    parts.push(`guestfwd=tcp:${f.guest}-cmd:${[...forwardCommand, hostAddr, hostPort].join(' ')}`);
  }
  return parts.map(esc).join(',');
}

export function qemuArgs(
  spec: VmSpec,
  image: BootImage,
  files: VmFiles,
  net: NetworkSpec,
  opts: {
    accel: 'kvm' | 'tcg';
    forwardCommand: string[];
    /** bootstrap = "ssh": forward this host port to the guest's 22; the login key goes by fw_cfg. */
    sshPort?: number;
  },
): string[] {
  // The bootstrap and its config go by fw_cfg, or (SSH) the service copies them itself.
  const delivery =
    opts.sshPort === undefined
      ? [
          '-fw_cfg',
          `name=opt/hatchery/config,file=${esc(files.config)}`,
          '-fw_cfg',
          `name=opt/hatchery/bootstrap,file=${esc(files.bootstrap)}`,
        ]
      : ['-fw_cfg', `name=${AUTHORIZED_KEYS_FW_CFG},file=${esc(files.authorizedKeys)}`];
  const args = [
    '-name',
    `guest=${spec.name}`,
    '-accel',
    opts.accel === 'kvm' ? 'kvm' : 'tcg,tb-size=32',
    '-m',
    `${spec.memoryMiB}M`,
    '-smp',
    String(spec.cpus),
    '-no-reboot',
    '-display',
    'none',
    '-monitor',
    'none',
    '-serial',
    `file:${esc(files.console)}`,
    '-qmp',
    `unix:${esc(files.qmp)},server=on,wait=off`,
    '-netdev',
    netdevOption(net, opts.forwardCommand, opts.sshPort),
    '-device',
    `virtio-net-pci,netdev=n0,mac=${macFor(spec.name)},romfile=`,
    '-chardev',
    `socket,id=c0,path=${esc(files.channel)},server=on,wait=off`,
    '-device',
    'virtio-serial-pci',
    '-device',
    `virtserialport,chardev=c0,name=${CHANNEL_PORT}`,
    ...delivery,
    '-pidfile',
    files.pidfile,
    '-daemonize',
  ];
  if (image.kernel) {
    args.push('-kernel', image.kernel, '-append', image.append ?? 'console=ttyS0 quiet panic=-1');
    if (image.initrd) args.push('-initrd', image.initrd);
  }
  if (image.disk) {
    args.push('-drive', `file=${esc(files.overlay)},format=qcow2,if=virtio,cache=unsafe,discard=unmap`);
  }
  return args;
}

/** The guest config a QEMU VM receives: how to reach the host on this provider, then the spec's. */
export function qemuGuestConfig(
  spec: Pick<VmSpec, 'name' | 'guestConfig'>,
  image: BootImage,
): Record<string, string> {
  return {
    HATCHERY_VM: spec.name,
    HATCHERY_CHANNEL: `virtio:${CHANNEL_PORT}`,
    HATCHERY_NET: 'static:10.0.2.15/24,10.0.2.2',
    ...(image.disk ? { HATCHERY_WORK_DISK: '/dev/vda' } : {}),
    ...spec.guestConfig,
  };
}

// The format is the guest protocol's (shared with the other providers and the SSH bootstrap).
export { renderGuestConfig } from '../../guest/config.ts';

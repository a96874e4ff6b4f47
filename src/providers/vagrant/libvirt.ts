// Direct questions to libvirt (virsh), where Vagrant is too slow or cannot answer: the state of
// every domain in one call (`vagrant status` costs 1.6–6 s of Ruby start-up per VM), and the
// removal of what an interrupted `vagrant up` left before Vagrant recorded the machine (a
// domain, its disk volume). Domain names are VM names (the Vagrantfile's default_prefix "").
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ProviderError } from '../provider.ts';

const exec = promisify(execFile);
const TIMEOUT_MS = 30_000;

export type DomainState = 'running' | 'other';

async function virsh(uri: string, args: string[], signal?: AbortSignal): Promise<string> {
  try {
    const { stdout } = await exec('virsh', ['-q', '-c', uri, ...args], { timeout: TIMEOUT_MS, signal });
    return stdout;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT')
      throw new ProviderError('virsh not found: install the Debian package libvirt-clients', false);
    const detail = (err.stderr ?? '').trim().split('\n').filter(Boolean).slice(-2).join(' | ') || err.message;
    throw new ProviderError(`virsh ${args[0]}: ${detail}`, true);
  }
}

/** Parses `virsh -q list --all`: ` Id   Name   State` rows (Id `-` when not running). */
export function parseDomainList(text: string): Map<string, DomainState> {
  const out = new Map<string, DomainState>();
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+|-)\s+(\S+)\s+(.+?)\s*$/.exec(line);
    if (m) out.set(m[2]!, m[3] === 'running' ? 'running' : 'other');
  }
  return out;
}

/** Every domain of the libvirtd at `uri` with its state. */
export async function domainStates(uri: string): Promise<Map<string, DomainState>> {
  return parseDomainList(await virsh(uri, ['list', '--all']));
}

/** Removes domain `name` and its disk volume `<name>.img` in the `default` pool, if present. */
export async function removeDomain(uri: string, name: string, signal?: AbortSignal): Promise<void> {
  const domains = await domainStates(uri);
  if (domains.has(name)) {
    if (domains.get(name) === 'running') await virsh(uri, ['destroy', name], signal).catch(() => undefined);
    await virsh(uri, ['undefine', name, '--remove-all-storage'], signal);
  }
  const volumes = await virsh(uri, ['vol-list', 'default'], signal).catch(() => '');
  if (volumes.split('\n').some((l) => l.trim().split(/\s+/)[0] === `${name}.img`)) {
    await virsh(uri, ['vol-delete', `${name}.img`, '--pool', 'default'], signal);
  }
}

/** True when that volume (boxVolumeName) is in the `default` pool: a first `vagrant up` uploaded it. */
export async function hasBoxVolume(uri: string, volume: string): Promise<boolean> {
  const volumes = await virsh(uri, ['vol-list', 'default']).catch(() => '');
  return volumes.split('\n').some((l) => l.trim().split(/\s+/)[0] === volume);
}

/** A box name as Vagrant spells it in paths and vagrant-libvirt in volume names. */
export function boxSlug(box: string): string {
  return box.replaceAll('/', '-VAGRANTSLASH-');
}

/**
 * The volume vagrant-libvirt uploads the box's image to (HandleBoxImage.get_volume_name): for an
 * unversioned box (version 0, as a box added from a file) the name carries the image file's
 * mtime, so a box added again (another state dir, or `box add --force`) needs a volume of its own;
 * a volume of an earlier add is not it.
 */
export function boxVolumeName(box: string, version: string, imageMtimeMs: number): string {
  const v = version === '0' || version === '' ? `0_${Math.floor(imageMtimeMs / 1000)}` : version;
  return `${boxSlug(box)}_vagrant_box_image_${v}_box.img`;
}

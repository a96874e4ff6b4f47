// The user_data of a server: a shell script cloud-init runs once, as root, at first boot. It
// writes the bootstrap and the guest config (docs/guest-protocol.md) to a root-only directory
// and runs `sh bootstrap.sh config` in the foreground, as the tiny QEMU guest's init does: the
// bootstrap powers the VM off when its runner is done. The config holds the one-shot JIT config
// and the channel token: anyone who can read the server's user_data (the cloud's admins; the
// guest itself through the metadata service) can read them until the runner has used them.
import { randomBytes } from 'node:crypto';
import { renderGuestConfig } from '../../guest/config.ts';

/** Where the guest keeps the two files (tmpfs on systemd images: gone at power-off). */
export const GUEST_DIR = '/run/hatchery-boot';

export function renderUserData(bootstrap: string, guestConfig: Record<string, string>): string {
  const config = renderGuestConfig(guestConfig);
  // Here-documents with a quoted delimiter: the text goes in verbatim, no expansion. The
  // delimiter is random, and checked, so that no line of the bootstrap can end it early.
  let end: string;
  do end = `HATCHERY_EOF_${randomBytes(8).toString('hex')}`;
  while (bootstrap.split('\n').includes(end));
  const text = (t: string) => (t.endsWith('\n') ? t : `${t}\n`);
  return [
    '#!/bin/sh',
    '# Hatchery: the VM bootstrap (run once at first boot by cloud-init).',
    'set -eu',
    'umask 077',
    // HATCHERY_BOOT_DIR: for running the script outside a VM (its test); cloud-init sets nothing.
    `d=\${HATCHERY_BOOT_DIR:-${GUEST_DIR}}`,
    'mkdir -p "$d"',
    `cat >"$d/bootstrap.sh" <<'${end}'`,
    `${text(bootstrap)}${end}`,
    `cat >"$d/config" <<'${end}'`,
    `${config}${end}`,
    'exec sh "$d/bootstrap.sh" "$d/config"',
    '',
  ].join('\n');
}

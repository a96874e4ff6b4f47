// The guest config file (docs/guest-protocol.md, "Config format"): one NAME=VALUE per line.
// Rendered by whoever delivers it: a provider (QEMU's fw_cfg, Vagrant's provisioner) or the
// service itself (the SSH bootstrap).

/** Renders guest config lines, refusing values that could break the format. */
export function renderGuestConfig(values: Record<string, string>): string {
  return Object.entries(values)
    .map(([k, v]) => {
      if (!/^[A-Z][A-Z0-9_]*$/.test(k)) throw new Error(`invalid guest config key ${JSON.stringify(k)}`);
      // eslint-disable-next-line no-control-regex
      if (/[\u0000-\u001f\u007f]/.test(v))
        throw new Error(`guest config ${k}: control characters are not allowed`);
      return `${k}=${v}\n`;
    })
    .join('');
}

// Glance images and Neutron networks by id or by name (what a pool names them by).
import { OpenStackError } from './errors.ts';
import type { Keystone } from './keystone.ts';
import { ServiceClient, UUID } from './service.ts';

export class Lookup {
  private readonly glance: ServiceClient;
  private readonly neutron: ServiceClient;

  constructor(keystone: Keystone) {
    this.glance = new ServiceClient(keystone, 'image', '/v2');
    this.neutron = new ServiceClient(keystone, 'network', '/v2.0');
  }

  /** An active image's id; null if there is none of that id or name. */
  async imageId(ref: string, signal?: AbortSignal): Promise<string | null> {
    type Image = { id: string; status: string };
    if (UUID.test(ref)) {
      const img = await this.glance.json<Image>(
        { method: 'GET', path: `/images/${ref}`, idempotent: true, signal },
        [200],
        [404],
      );
      if (img) return img.status === 'active' ? img.id : null;
    }
    const res = await this.glance.json<{ images: Image[] }>(
      {
        method: 'GET',
        path: `/images?name=${encodeURIComponent(ref)}&status=active`,
        idempotent: true,
        signal,
      },
      [200],
    );
    const found = res?.images ?? [];
    if (found.length > 1) throw ambiguous('image', 'images', ref, found.length);
    return found[0]?.id ?? null;
  }

  /** A network's id; null if there is none of that id or name. */
  async networkId(ref: string, signal?: AbortSignal): Promise<string | null> {
    type Network = { id: string };
    if (UUID.test(ref)) {
      const net = await this.neutron.json<{ network: Network }>(
        { method: 'GET', path: `/networks/${ref}`, idempotent: true, signal },
        [200],
        [404],
      );
      if (net) return net.network.id;
    }
    const res = await this.neutron.json<{ networks: Network[] }>(
      { method: 'GET', path: `/networks?name=${encodeURIComponent(ref)}`, idempotent: true, signal },
      [200],
    );
    const found = res?.networks ?? [];
    if (found.length > 1) throw ambiguous('network', 'networks', ref, found.length);
    return found[0]?.id ?? null;
  }
}

function ambiguous(service: string, what: string, ref: string, n: number): OpenStackError {
  return new OpenStackError(
    service,
    `GET /${what}`,
    'invalid-answer',
    null,
    `${n} ${what} are named ${ref}: name one by id`,
    false,
  );
}

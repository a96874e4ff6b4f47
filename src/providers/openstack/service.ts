// What the Nova, Glance and Neutron clients share: an authenticated JSON request to one service
// of the catalog, and its answer checked against the statuses the caller expects (anything else
// is an OpenStackError with the service's own message).
import { errorMessage, OpenStackError } from './errors.ts';
import type { Response } from './http.ts';
import { parseJson, type Keystone, type ServiceRequest, type Token } from './keystone.ts';

export class ServiceClient {
  constructor(
    private readonly keystone: Keystone,
    /** The catalog type: `compute`, `image`, `network`. */
    readonly service: string,
    /** A version suffix the catalog URL may lack (Glance `/v2`, Neutron `/v2.0`). */
    private readonly version = '',
    private readonly headers: Record<string, string> = {},
  ) {}

  private base = (token: Token): string => {
    const url = this.keystone.endpoint(token, this.service);
    return this.version && !url.endsWith(this.version) ? `${url}${this.version}` : url;
  };

  /** The raw answer (any status below 500 but 429: the caller decides). */
  send(req: ServiceRequest): Promise<Response> {
    return this.keystone.call(this.service, this.base, {
      ...req,
      headers: { ...this.headers, ...req.headers },
    });
  }

  /** The parsed body of an answer with one of the `ok` statuses (null for those in `absent`). */
  async json<T>(req: ServiceRequest, ok: number[], absent: number[] = []): Promise<T | null> {
    const res = await this.send(req);
    const what = `${req.method} ${req.path.replace(/\?.*$/, '')}`;
    if (absent.includes(res.status)) return null;
    if (!ok.includes(res.status))
      throw new OpenStackError(this.service, what, 'http', res.status, errorMessage(res.text), false);
    if (res.status === 204 || res.text === '') return {} as T;
    const body = parseJson(res.text);
    if (body === null || typeof body !== 'object')
      throw new OpenStackError(this.service, what, 'invalid-answer', res.status, 'not a JSON object', false);
    return body as T;
  }
}

/** What an id of Nova, Glance or Neutron looks like (names are looked up). */
export const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

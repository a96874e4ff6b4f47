// Failures of OpenStack API calls, typed: which service, which request, the HTTP status and the
// service's own message (each service shapes its error bodies differently), and whether trying
// again may help. Messages never carry a request body or a header: those hold the passwords,
// application-credential secrets, tokens and user_data.

export type FailureKind = 'http' | 'network' | 'timeout' | 'aborted' | 'invalid-answer';

export class OpenStackError extends Error {
  /** A network failure before the request reached the service (refused): safe to send again. */
  notSent = false;

  constructor(
    /** `identity`, `compute`, `image`, `network`. */
    readonly service: string,
    /** `GET /servers/detail` (no query string: it may name things, never secrets, but is long). */
    readonly request: string,
    readonly kind: FailureKind,
    /** HTTP status, for kind `http`. */
    readonly status: number | null,
    /** What the service said (or what went wrong on the way). */
    readonly detail: string,
    /** The same request may succeed later: 5xx, 429, timeouts, refused or reset connections. */
    readonly retryable: boolean,
  ) {
    super(`${service} ${request}: ${status !== null ? `${status} ` : ''}${detail}`);
    this.name = 'OpenStackError';
  }
}

const MAX_DETAIL = 400;

/**
 * The message of an error body, whatever the service: Nova `{"itemNotFound": {"code", "message"}}`,
 * Keystone `{"error": {"code", "title", "message"}}`, Neutron `{"NeutronError": {"type",
 * "message", "detail"}}`, Glance `{"message", "code", "title"}` (or an HTML page), a proxy's text.
 */
export function errorMessage(body: string, statusText = ''): string {
  let message: string | undefined;
  try {
    message = messageOf(JSON.parse(body));
  } catch {
    /* not JSON: text below */
  }
  if (message === undefined) {
    const text = body
      .replace(/<[^>]*>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim();
    message = text || statusText || '(no message)';
  }
  return message.length > MAX_DETAIL ? `${message.slice(0, MAX_DETAIL)}…` : message;
}

function messageOf(json: unknown): string | undefined {
  if (!isObject(json)) return undefined;
  if (typeof json.message === 'string') return json.message;
  // One wrapping key (Nova's fault name, Keystone's `error`, Neutron's `NeutronError`).
  for (const value of Object.values(json)) {
    if (isObject(value) && typeof value.message === 'string') {
      const detail = typeof value.detail === 'string' && value.detail ? ` (${value.detail})` : '';
      return `${value.message}${detail}`;
    }
  }
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

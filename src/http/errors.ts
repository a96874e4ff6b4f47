// Typed request outcomes: a route returns or throws a RequestError with the status and the field
// at fault; the app's error handler renders it. Nothing else turns into a 4xx.
import { z } from 'zod';
import { InvalidIdentifier } from '../core/naming.ts';
import { PoolRefusedError, UnknownLabelError } from '../core/context.ts';

export class RequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

export const badRequest = (field: string, message: string): RequestError =>
  new RequestError(400, 'invalid_request', `${field}: ${message}`, field);

export function parseJson(body: Buffer): unknown {
  if (body.length === 0) throw badRequest('body', 'empty; expected a JSON object');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw badRequest('body', 'not valid JSON');
  }
}

/** Maps validation failures (zod, identifier checks, labels) to a 400 that names the field. */
export function toRequestError(e: unknown): RequestError | null {
  if (e instanceof RequestError) return e;
  if (e instanceof InvalidIdentifier) return badRequest(e.field, e.message.slice(e.field.length + 2));
  if (e instanceof UnknownLabelError) return badRequest('labels', e.message);
  if (e instanceof PoolRefusedError)
    return new RequestError(403, 'forbidden', `repository: ${e.message}`, 'repository');
  if (e instanceof z.ZodError) {
    const issue = e.issues[0]!;
    const field = issue.path.map(String).join('.') || 'body';
    return badRequest(field, issue.message);
  }
  return null;
}

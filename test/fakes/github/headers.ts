// Request headers GitHub checks on every REST call, outside its OpenAPI description (which
// declares no header parameters for the runner endpoints; those it declares are checked by
// ./openapi.ts): the API version, a User-Agent, an Accept that admits JSON. A request that gets
// one wrong is answered as GitHub answers it, and recorded as a violation.
import { DOCS, type RestReply } from './rest.ts';

export const API_VERSION = '2022-11-28';

/** Media ranges under which GitHub serves its JSON representation. */
const JSON_ACCEPT =
  /^(\*\/\*|application\/\*|application\/json|application\/vnd\.github(\.[a-z0-9-]+)*(\+json)?)$/;

export interface HeaderRefusal {
  problem: string;
  reply: RestReply;
}

/** The refusal GitHub would answer to these request headers, or undefined when they are fine. */
export function headerRefusal(get: (name: string) => string | undefined): HeaderRefusal | undefined {
  const version = get('x-github-api-version');
  if (version !== undefined && version !== API_VERSION) {
    return {
      problem: `unsupported X-GitHub-Api-Version ${JSON.stringify(version)}`,
      reply: {
        status: 400,
        body: { message: `API version ${version} is not supported.`, documentation_url: DOCS, status: '400' },
      },
    };
  }
  if (!get('user-agent')?.trim()) {
    return {
      problem: 'no User-Agent header (GitHub refuses such requests)',
      reply: {
        status: 403,
        body: {
          message:
            'Request forbidden by administrative rules. Please make sure your request has a User-Agent header.',
          documentation_url: `${DOCS}/using-the-rest-api/getting-started-with-the-rest-api#user-agent`,
          status: '403',
        },
      },
    };
  }
  const accept = get('accept');
  if (accept !== undefined) {
    const ranges = accept.split(',').map((r) => r.split(';')[0]!.trim().toLowerCase());
    if (!ranges.some((r) => JSON_ACCEPT.test(r))) {
      return {
        problem: `Accept ${JSON.stringify(accept)} admits no JSON`,
        reply: {
          status: 415,
          body: {
            message: `Unsupported 'Accept' header: ${JSON.stringify(ranges)}. Must accept 'application/json'.`,
            documentation_url: `${DOCS}/using-the-rest-api/getting-started-with-the-rest-api#media-types`,
            status: '415',
          },
        },
      };
    }
  }
  return undefined;
}

// What the stand-in GitHub (./server.ts) checks its traffic against. Normally GitHub's OpenAPI
// description (./openapi.ts), which needs ajv, ajv-formats and @octokit/openapi: dev
// dependencies (the description alone is 385 MB), so a production install (`npm ci
// --omit=dev`) has none of them. There, and only when asked to (`hatchery demo`), the stand-in
// runs on its own routes and checks nothing. Tests never ask: for them the validator is
// required, and a stand-in that cannot load it does not start.
import type { OperationMatch, RequestInput, ResponseCheckOptions } from './openapi.ts';
import { RouteTable } from './routes.ts';

/**
 * `required` (the default, every test): start() fails when the validator is not installed.
 * `if-installed` (the demo): without it, requests are routed to the implemented handlers and
 * nothing is checked.
 */
export type Validation = 'required' | 'if-installed';

export interface ApiContract {
  /** Why traffic is not checked against GitHub's description; undefined when it is. */
  readonly unchecked: string | undefined;
  match(method: string, path: string): OperationMatch | undefined;
  /** Why a request matched no operation (a violation). */
  unmatched(method: string, path: string): string;
  validateRequest(method: string, template: string, input: RequestInput): string[];
  validateResponse(
    method: string,
    template: string,
    status: number,
    body: unknown,
    opts?: ResponseCheckOptions,
  ): string[];
  validateErrorReply(status: number, body: unknown): string[];
  /** Checks a value against a component schema (e.g. a webhook payload: `webhook-workflow-job-queued`). */
  validateSchema(component: string, value: unknown): string[];
  /** A copy of one of the description's examples (`components/examples/<name>`), if it has it. */
  example(name: string): unknown;
}

/** The packages ./openapi.ts loads: only their absence means "not installed". */
const VALIDATOR_PACKAGES = ['ajv', 'ajv-formats', '@octokit/openapi'];

/** The missing validator package an import error names, if that is what it is. */
function missingValidatorPackage(e: unknown): string | undefined {
  const code = (e as { code?: unknown }).code;
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return undefined;
  const message = String((e as Error).message);
  return VALIDATOR_PACKAGES.find((p) => message.includes(`'${p}'`) || message.includes(`'${p}/`));
}

/**
 * GitHub's description (loaded now: ~0.2 s and ~100 MB, once per process), or, when the
 * validator is not installed and `validation` allows it, the implemented routes
 * (`METHOD template` keys) without checks. Any other failure to load is thrown.
 */
export async function loadContract(
  validation: Validation,
  implemented: readonly string[],
): Promise<ApiContract> {
  let missing: string | undefined;
  try {
    // Imported here, not at the top: its imports are what may be missing.
    const { githubOpenApi } = await import('./openapi.ts');
    return githubOpenApi();
  } catch (e) {
    missing = missingValidatorPackage(e);
    if (!missing) throw e;
    if (validation === 'required') {
      throw new Error(
        `the stand-in GitHub checks every request and reply against GitHub's OpenAPI description, ` +
          `but ${missing} is not installed (${VALIDATOR_PACKAGES.join(', ')} are dev dependencies: ` +
          `npm ci without --omit=dev)`,
        { cause: e },
      );
    }
  }
  return new ImplementedRoutes(implemented, `${missing} (a dev dependency) is not installed`);
}

/** The stand-in's own routes, nothing checked: a request matches only an implemented operation. */
class ImplementedRoutes implements ApiContract {
  private readonly routes = new RouteTable();
  private readonly keys: Set<string>;

  constructor(
    implemented: readonly string[],
    readonly unchecked: string,
  ) {
    this.keys = new Set(implemented);
    for (const key of implemented) this.routes.add(key.slice(key.indexOf(' ') + 1));
  }

  match(method: string, path: string): OperationMatch | undefined {
    const m = method.toUpperCase();
    const found = this.routes.match(path, (template) => this.keys.has(`${m} ${template}`));
    if (!found) return undefined;
    return {
      method: m,
      template: found.template,
      operationId: `${m} ${found.template}`,
      params: found.params,
    };
  }

  unmatched(): string {
    return "not an endpoint the stand-in implements (GitHub's description is not installed to say more)";
  }

  validateRequest(): string[] {
    return [];
  }

  validateResponse(): string[] {
    return [];
  }

  validateErrorReply(): string[] {
    return [];
  }

  validateSchema(): string[] {
    return [];
  }

  example(): unknown {
    return undefined;
  }
}

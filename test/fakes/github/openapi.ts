// Validation against GitHub's own OpenAPI description (npm @octokit/openapi), so that the
// stand-in GitHub (test/fakes/github/server.ts) cannot drift from the real REST API: every request
// it receives and every response it sends is checked here: parameters (path, query, header),
// bodies, statuses, the documented response headers (the `Link` header's format: ./link.ts).
//
// Only `generated/api.github.com.json` is loaded (the package root would load every variant, ~0.9 GB).
// Component schemas are added to one ajv instance as `{ $id: 'gh', components }`; operation
// schemas are compiled lazily, once, on first use. OpenAPI 3.0's `nullable: true` is rewritten to
// `anyOf: [schema, {type: 'null'}]` (135 component schemas use it without `type`, which ajv refuses).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { ApiContract } from './contract.ts';
import { checkLinkHeader } from './link.ts';
import { RouteTable } from './routes.ts';

type JsonObject = Record<string, unknown>;

export interface RequestInput {
  /** Path parameters as they appear in the URL (strings, already percent-decoded). */
  params?: Record<string, string>;
  /** Query parameters as strings (repeated ones as arrays). */
  query?: Record<string, string | string[] | undefined>;
  /** The parsed JSON body; `undefined` when the request had none. */
  body?: unknown;
  /** The request's Content-Type, when it had a body. */
  contentType?: string;
  /** Request headers, names in lower case (for the operation's header parameters). */
  headers?: Record<string, string | undefined>;
}

export interface ResponseCheckOptions {
  /**
   * Statuses GitHub answers on any operation although the description omits them for many
   * (401 Bad credentials, 404 Not Found: e.g. `DELETE …/actions/runners/{runner_id}` documents
   * only 204 and 422). Accepted when their body is a `basic-error`.
   */
  implicitStatuses?: readonly number[];
  /** The response headers, names in any case (checked where the description defines them). */
  headers?: Record<string, string>;
  /** The absolute URL the request was sent to (a `Link` header's links must lead back to it). */
  requestUrl?: URL;
}

export interface OperationMatch {
  method: string;
  /** The path template, e.g. `/repos/{owner}/{repo}/actions/runners/{runner_id}`. */
  template: string;
  operationId: string;
  params: Record<string, string>;
}

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema?: JsonObject;
}

interface Operation {
  method: string;
  template: string;
  operationId: string;
  parameters: Parameter[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: JsonObject }> };
  responses: Record<string, unknown>;
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];
/** Keys whose values are data, not schemas: left alone by the rewrites. */
const DATA_KEYS = new Set(['example', 'examples', 'enum', 'const', 'default']);
const MAX_ERRORS = 10;

function isObject(x: unknown): x is JsonObject {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** `nullable: true` → `anyOf: [schema-without-nullable, {type: 'null'}]`, everywhere in a schema. */
export function rewriteNullable(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(rewriteNullable);
  if (!isObject(node)) return node;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(node)) out[k] = DATA_KEYS.has(k) ? v : rewriteNullable(v);
  if (out.nullable === true) {
    delete out.nullable;
    return { anyOf: [out, { type: 'null' }] };
  }
  if (out.nullable === false) delete out.nullable;
  return out;
}

/** Local references (`#/components/…`) in an operation's inline schema point into the 'gh' schema. */
function rewriteRefs(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(rewriteRefs);
  if (!isObject(node)) return node;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$ref' && typeof v === 'string' && v.startsWith('#/')) out[k] = `gh${v}`;
    else out[k] = DATA_KEYS.has(k) ? v : rewriteRefs(v);
  }
  return out;
}

/** A parameter or header value (always a string on the wire) as the type its schema wants. */
function coerce(s: string, type: unknown): unknown {
  if ((type === 'integer' || type === 'number') && /^-?\d+(\.\d+)?$/.test(s)) return Number(s);
  if (type === 'boolean' && (s === 'true' || s === 'false')) return s === 'true';
  return s;
}

function describe(value: unknown): string {
  const s = JSON.stringify(value);
  if (s === undefined) return String(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function formatErrors(where: string, errors: ErrorObject[] | null | undefined): string[] {
  const seen = new Set<string>();
  for (const e of errors ?? []) {
    let msg = e.message ?? 'is invalid';
    if (e.keyword === 'additionalProperties') {
      msg = `has unexpected property '${String((e.params as { additionalProperty?: unknown }).additionalProperty)}'`;
    } else if (e.keyword === 'enum') {
      msg = `must be one of ${describe((e.params as { allowedValues?: unknown }).allowedValues)}`;
    }
    seen.add(`${where}${e.instancePath}: ${msg}`);
    if (seen.size >= MAX_ERRORS) break;
  }
  return [...seen];
}

export class GitHubOpenApi implements ApiContract {
  readonly unchecked = undefined;
  private readonly ajv: Ajv;
  private readonly operations = new Map<string, Operation>();
  private readonly routes = new RouteTable();
  private readonly compiled = new Map<string, ValidateFunction>();
  private readonly components: JsonObject;

  constructor(doc: JsonObject) {
    const components = isObject(doc.components) ? doc.components : {};
    this.components = components;
    this.ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false, logger: false });
    addFormats.default(this.ajv);
    // GitHub's own formats, not in ajv-formats: documentation only.
    this.ajv.addFormat('repo.nwo', true);
    this.ajv.addFormat('timestamp', true);
    this.ajv.addSchema({ $id: 'gh', components: { schemas: rewriteNullable(components.schemas ?? {}) } });

    const paths = isObject(doc.paths) ? doc.paths : {};
    for (const [template, item] of Object.entries(paths)) {
      if (!isObject(item)) continue;
      const shared = Array.isArray(item.parameters) ? item.parameters : [];
      for (const method of METHODS) {
        const op = item[method];
        if (!isObject(op)) continue;
        const own = Array.isArray(op.parameters) ? op.parameters : [];
        const byKey = new Map<string, Parameter>();
        for (const p of [...shared, ...own].map((x) => this.deref(x) as unknown as Parameter)) {
          byKey.set(`${p.in}:${p.name}`, p);
        }
        this.operations.set(`${method.toUpperCase()} ${template}`, {
          method: method.toUpperCase(),
          template,
          operationId: typeof op.operationId === 'string' ? op.operationId : `${method} ${template}`,
          parameters: [...byKey.values()],
          requestBody: this.deref(op.requestBody) as Operation['requestBody'],
          responses: isObject(op.responses) ? op.responses : {},
        });
      }
      this.routes.add(template);
    }
  }

  /** Resolves a `#/components/…` reference (parameters, request bodies, responses), recursively. */
  private deref(x: unknown): JsonObject | undefined {
    let cur = x;
    for (let i = 0; i < 10 && isObject(cur) && typeof cur.$ref === 'string'; i++) {
      const parts = cur.$ref.replace(/^#\/components\//, '').split('/');
      let next: unknown = this.components;
      for (const p of parts)
        next = isObject(next) ? next[p.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined;
      cur = next;
    }
    return isObject(cur) ? cur : undefined;
  }

  private compile(key: string, schema: unknown): ValidateFunction {
    let fn = this.compiled.get(key);
    if (!fn) {
      fn = this.ajv.compile(rewriteNullable(rewriteRefs(schema)) as JsonObject);
      this.compiled.set(key, fn);
    }
    return fn;
  }

  /** The operation for a method and path template, or undefined when GitHub has no such operation. */
  operation(method: string, template: string): { operationId: string; statuses: string[] } | undefined {
    const op = this.operations.get(`${method.toUpperCase()} ${template}`);
    return op && { operationId: op.operationId, statuses: Object.keys(op.responses) };
  }

  /** Which documented operation a concrete request path is (most specific template first). */
  match(method: string, path: string): OperationMatch | undefined {
    const key = (template: string) => `${method.toUpperCase()} ${template}`;
    const m = this.routes.match(path, (template) => this.operations.has(key(template)));
    if (!m) return undefined;
    const op = this.operations.get(key(m.template))!;
    return { method: op.method, template: m.template, operationId: op.operationId, params: m.params };
  }

  /** True when some operation (any method) has this concrete path. */
  pathExists(path: string): boolean {
    return METHODS.some((m) => this.match(m, path) !== undefined);
  }

  /** Why a request matched no operation. */
  unmatched(method: string, path: string): string {
    return this.pathExists(path)
      ? `GitHub has no ${method.toUpperCase()} operation on this path`
      : 'not a GitHub REST API endpoint';
  }

  private checkParam(where: string, op: Operation, p: Parameter, raw: string | string[]): string[] {
    const schema = p.schema ?? {};
    const type = schema.type;
    let value: unknown;
    if (type === 'array') {
      const items = (Array.isArray(raw) ? raw : raw.split(',')).filter((s) => s !== '');
      const itemType = isObject(schema.items) ? schema.items.type : undefined;
      value = items.map((s) => coerce(s, itemType));
    } else if (Array.isArray(raw)) {
      return [`${where}: ${p.in} parameter ${p.name} is given ${raw.length} times`];
    } else {
      value = coerce(raw, type);
    }
    const fn = this.compile(`${op.method} ${op.template} ${p.in}:${p.name}`, schema);
    if (fn(value)) return [];
    return formatErrors(`${where}: ${p.in} parameter ${p.name}`, fn.errors).map(
      (m) => `${m} (got ${describe(raw)})`,
    );
  }

  /** Response headers the documented response defines: present when required, matching their schema. */
  private checkResponseHeaders(where: string, resp: JsonObject, opts: ResponseCheckOptions): string[] {
    const sent = new Map(Object.entries(opts.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    const declared = isObject(resp.headers) ? resp.headers : {};
    const problems: string[] = [];
    for (const [name, ref] of Object.entries(declared)) {
      const h = this.deref(ref) ?? {};
      const value = sent.get(name.toLowerCase());
      if (value === undefined) {
        if (h.required === true) problems.push(`${where}: missing required response header ${name}`);
        continue;
      }
      const schema = isObject(h.schema) ? h.schema : {};
      const fn = this.compile(`${where} header:${name}`, schema);
      if (!fn(coerce(value, schema.type)))
        problems.push(...formatErrors(`${where}: response header ${name}`, fn.errors));
      if (name.toLowerCase() === 'link') {
        if (!opts.requestUrl)
          problems.push(`${where}: a Link header cannot be checked without the request URL`);
        else problems.push(...checkLinkHeader(value, opts.requestUrl).map((m) => `${where}: ${m}`));
      }
    }
    return problems;
  }

  /**
   * Checks an error reply that belongs to no operation (an endpoint GitHub does not have, a
   * request the stand-in could not parse): a 4xx/5xx status with a `basic-error` body.
   */
  validateErrorReply(status: number, body: unknown): string[] {
    if (status < 400 || status > 599) return [`error reply with status ${status}, not 4xx/5xx`];
    const fn = this.compile('basic-error', { $ref: '#/components/schemas/basic-error' });
    if (!isObject(body))
      return [`error reply ${status}: body must be a basic-error object, got ${describe(body)}`];
    return fn(body) ? [] : formatErrors(`error reply ${status} body`, fn.errors);
  }

  example(name: string): unknown {
    const examples = isObject(this.components.examples) ? this.components.examples : {};
    const ex = examples[name];
    return isObject(ex) ? structuredClone(ex.value) : undefined;
  }

  /** Checks a value against one of the description's component schemas. */
  validateSchema(component: string, value: unknown): string[] {
    if (!isObject(this.components.schemas) || !(component in this.components.schemas))
      return [`no component schema ${component} in GitHub's description`];
    const fn = this.compile(`schema:${component}`, { $ref: `#/components/schemas/${component}` });
    return fn(value) ? [] : formatErrors(component, fn.errors);
  }

  /** Checks a request against the description; returns human-readable problems (empty: valid). */
  validateRequest(method: string, template: string, input: RequestInput): string[] {
    const where = `${method.toUpperCase()} ${template}`;
    const op = this.operations.get(where);
    if (!op) return [`${where}: no such operation in GitHub's REST API description`];
    const errors: string[] = [];
    const params = input.params ?? {};
    const query = input.query ?? {};

    const headers = input.headers ?? {};
    for (const p of op.parameters) {
      if (p.in === 'cookie') continue;
      const raw =
        p.in === 'path' ? params[p.name] : p.in === 'query' ? query[p.name] : headers[p.name.toLowerCase()];
      if (raw === undefined) {
        if (p.required || p.in === 'path')
          errors.push(`${where}: missing required ${p.in} parameter ${p.name}`);
        continue;
      }
      errors.push(...this.checkParam(where, op, p, raw));
    }
    const knownQuery = new Set(op.parameters.filter((p) => p.in === 'query').map((p) => p.name));
    for (const name of Object.keys(query)) {
      if (query[name] !== undefined && !knownQuery.has(name)) {
        errors.push(`${where}: unknown query parameter ${name} (GitHub ignores it)`);
      }
    }

    const hasBody =
      input.body !== undefined && !(isObject(input.body) && Object.keys(input.body).length === 0);
    const rb = op.requestBody;
    if (!rb) {
      if (hasBody) errors.push(`${where}: takes no request body, got ${describe(input.body)}`);
      return errors;
    }
    if (input.body === undefined) {
      if (rb.required) errors.push(`${where}: missing required JSON request body`);
      return errors;
    }
    const contentType = (input.contentType ?? 'application/json').split(';')[0]!.trim().toLowerCase();
    const media = rb.content?.['application/json'] ?? rb.content?.[contentType];
    if (!media) {
      errors.push(`${where}: request body of type ${contentType} is not accepted`);
      return errors;
    }
    if (contentType !== 'application/json' && !rb.content?.[contentType]) {
      errors.push(`${where}: request body sent as ${contentType}, not application/json`);
    }
    const schema = media.schema ?? {};
    const fn = this.compile(`${op.method} ${op.template} body`, schema);
    if (!fn(input.body)) errors.push(...formatErrors(`${where}: request body`, fn.errors));
    // GitHub ignores unknown top-level fields: a misspelt optional field would silently not apply.
    const props = isObject(schema.properties) ? schema.properties : undefined;
    if (props && schema.additionalProperties === undefined && isObject(input.body)) {
      for (const k of Object.keys(input.body)) {
        if (!(k in props)) errors.push(`${where}: request body has unknown property '${k}'`);
      }
    }
    return errors;
  }

  /** Checks a response: its status must be documented for the operation, its body must match. */
  validateResponse(
    method: string,
    template: string,
    status: number,
    body: unknown,
    opts: ResponseCheckOptions = {},
  ): string[] {
    const where = `${method.toUpperCase()} ${template}`;
    const op = this.operations.get(where);
    if (!op) return [`${where}: no such operation in GitHub's REST API description`];
    const code = String(status);
    const documented = op.responses[code] ?? op.responses[`${code[0]}XX`] ?? op.responses.default;
    if (documented === undefined) {
      if (opts.implicitStatuses?.includes(status)) {
        return this.validateErrorReply(status, body).map((m) => `${where}: ${m}`);
      }
      return [
        `${where}: response status ${status} is not documented (documented: ${Object.keys(op.responses).join(', ')})`,
      ];
    }
    const resp = this.deref(documented) ?? {};
    const problems = this.checkResponseHeaders(`${where}: response ${status}`, resp, opts);
    const content = isObject(resp.content) ? resp.content : undefined;
    const mediaKey = content && (content['application/json'] ? 'application/json' : Object.keys(content)[0]);
    const media = mediaKey && content ? content[mediaKey] : undefined;
    const empty = body === undefined || body === '';
    if (!isObject(media) || media.schema === undefined) {
      if (!empty) problems.push(`${where}: response ${status} must have no body, got ${describe(body)}`);
      return problems;
    }
    if (empty) return [...problems, `${where}: response ${status} must have a ${mediaKey} body, got none`];
    const sentType = Object.entries(opts.headers ?? {}).find(
      ([k]) => k.toLowerCase() === 'content-type',
    )?.[1];
    if (sentType !== undefined && sentType.split(';')[0]!.trim().toLowerCase() !== mediaKey) {
      problems.push(`${where}: response ${status} sent as ${sentType}, documented as ${mediaKey}`);
    }
    const fn = this.compile(`${op.method} ${op.template} response ${code}`, media.schema);
    if (!fn(body)) problems.push(...formatErrors(`${where}: response ${status} body`, fn.errors));
    return problems;
  }
}

let instance: GitHubOpenApi | undefined;

/** The process-wide validator, loaded on first use (~0.2 s, ~100 MB). */
export function githubOpenApi(): GitHubOpenApi {
  if (!instance) {
    const file = createRequire(import.meta.url).resolve('@octokit/openapi/generated/api.github.com.json');
    instance = new GitHubOpenApi(JSON.parse(readFileSync(file, 'utf8')) as JsonObject);
  }
  return instance;
}

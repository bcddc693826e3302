// Loads api-spec/openapi.yaml (validated and dereferenced by @readme/openapi-parser) and compiles, per
// operation, Ajv 2020-12 validators for path params, query params, request body and responses.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dereference, validate } from '@readme/openapi-parser';
import Ajv2020Module, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import YAML from 'yaml';
import type { ErrorIssue } from '../lib/errors.js';

// ajv and ajv-formats are CommonJS with a `default` property; NodeNext sees the module object.
const Ajv2020 = Ajv2020Module.default;
const addFormats = addFormatsModule.default;

export const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

type JsonObject = Record<string, unknown>;

export interface ParamSpec {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required: boolean;
  schema: JsonObject;
}

export interface RequestInput {
  path: Record<string, unknown>;
  query: Record<string, unknown>;
  /** undefined when the request had no body; `value` is the parsed JSON (unread for operations without a body). */
  body: { value: unknown } | undefined;
}

export interface ApiOperation {
  operationId: string;
  /** Upper-case HTTP method. */
  method: string;
  /** The OpenAPI path template, e.g. /v1/tokens/{name}. */
  path: string;
  /** The same path in @koa/router syntax, e.g. /v1/tokens/:name. */
  routerPath: string;
  pathParams: ParamSpec[];
  queryParams: ParamSpec[];
  /** `security: []` in the spec: callable without a token on every transport. */
  public: boolean;
  /** `x-nodevirt-local-only: true` in the spec: refused (403 LOCAL_ONLY) on every transport but the unix socket. */
  localOnly: boolean;
  /** Present when the operation takes a JSON body. */
  body: { required: boolean; schema: JsonObject } | undefined;
  /** Validates (and coerces path/query strings in place); returns every issue, empty when valid. */
  validateRequest(input: RequestInput): ErrorIssue[];
  /** Checks a response against the spec; returns the reasons it does not match, empty when it does. */
  validateResponse(status: number, contentType: string, body: unknown): string[];
}

export interface ApiSpec {
  /** The spec as written (with $refs), served at /openapi.json. */
  document: JsonObject;
  operations: ApiOperation[];
  /** Validates a problem body that belongs to no operation (unknown route, wrong method). */
  validateProblem(body: unknown): string[];
}

/** api-spec/openapi.yaml, found by walking up from this module (works from daemon/ and dist/daemon/). */
export function defaultSpecPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'api-spec', 'openapi.yaml');
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('api-spec/openapi.yaml not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

export async function loadApiSpec(path: string = defaultSpecPath()): Promise<ApiSpec> {
  const document = YAML.parse(await readFile(path, 'utf8')) as JsonObject;
  const result = await validate(structuredClone(document) as never);
  if (!result.valid) {
    throw new Error(`${path} is not a valid OpenAPI document: ${result.errors.map((e) => e.message).join('; ')}`);
  }
  const deref = (await dereference(structuredClone(document) as never)) as unknown as JsonObject;
  return compileSpec(document, deref);
}

function newAjv(coerce: boolean) {
  const ajv = new Ajv2020({
    allErrors: true,
    strict: true,
    allowUnionTypes: true,
    // Path and query values arrive as strings (or arrays of strings for repeated keys).
    coerceTypes: coerce ? 'array' : false,
  });
  addFormats(ajv);
  // OpenAPI annotations that are not JSON Schema vocabulary.
  ajv.addVocabulary(['example', 'xml', 'externalDocs', 'discriminator']);
  return ajv;
}

function compileSpec(document: JsonObject, deref: JsonObject): ApiSpec {
  const bodyAjv = newAjv(false);
  const paramAjv = newAjv(true);
  const operations: ApiOperation[] = [];
  const paths = (deref.paths ?? {}) as Record<string, JsonObject>;

  for (const [path, item] of Object.entries(paths)) {
    const shared = (item.parameters ?? []) as ParamSpec[];
    for (const method of HTTP_METHODS) {
      const op = item[method] as JsonObject | undefined;
      if (!op) continue;
      const operationId = op.operationId as string | undefined;
      if (!operationId) throw new Error(`${method.toUpperCase()} ${path} has no operationId`);
      operations.push(compileOperation(bodyAjv, paramAjv, path, method, operationId, op, shared));
    }
  }

  const problemSchema = ((deref.components as JsonObject | undefined)?.schemas as JsonObject | undefined)?.Problem;
  if (!problemSchema) throw new Error('the spec has no components.schemas.Problem');
  const problemValidator = bodyAjv.compile(problemSchema as JsonObject);
  return {
    document,
    operations,
    validateProblem: (body) => (problemValidator(body) ? [] : describe(problemValidator.errors)),
  };
}

function compileOperation(
  bodyAjv: InstanceType<typeof Ajv2020>,
  paramAjv: InstanceType<typeof Ajv2020>,
  path: string,
  method: HttpMethod,
  operationId: string,
  op: JsonObject,
  shared: ParamSpec[],
): ApiOperation {
  // Operation-level parameters override path-level ones with the same name and location.
  const params = new Map<string, ParamSpec>();
  for (const p of [...shared, ...((op.parameters ?? []) as ParamSpec[])]) params.set(`${p.in}:${p.name}`, p);
  const all = [...params.values()];
  const pathParams = all.filter((p) => p.in === 'path');
  const queryParams = all.filter((p) => p.in === 'query');

  const closedObject = (ps: ParamSpec[]) => ({
    type: 'object',
    properties: Object.fromEntries(ps.map((p) => [p.name, p.schema])),
    required: ps.filter((p) => p.required).map((p) => p.name),
    additionalProperties: false,
  });
  const pathValidator = paramAjv.compile(closedObject(pathParams));
  const queryValidator = paramAjv.compile(closedObject(queryParams));

  let body: ApiOperation['body'];
  let bodyValidator: ValidateFunction | undefined;
  const requestBody = op.requestBody as JsonObject | undefined;
  if (requestBody) {
    const content = (requestBody.content ?? {}) as Record<string, JsonObject>;
    const media = content['application/json'];
    const others = Object.keys(content).filter((t) => t !== 'application/json');
    if (!media?.schema || others.length > 0) {
      throw new Error(`${operationId}: request bodies must be application/json with a schema (got ${Object.keys(content).join(', ')})`);
    }
    body = { required: requestBody.required === true, schema: media.schema as JsonObject };
    bodyValidator = bodyAjv.compile(body.schema);
  }

  const responses = compileResponses(bodyAjv, operationId, (op.responses ?? {}) as Record<string, JsonObject>);

  return {
    operationId,
    method: method.toUpperCase(),
    path,
    routerPath: path.replace(/\{([^}]+)\}/g, ':$1'),
    pathParams,
    queryParams,
    public: Array.isArray(op.security) && op.security.length === 0,
    localOnly: op['x-nodevirt-local-only'] === true,
    body,
    validateRequest(input) {
      const issues: ErrorIssue[] = [];
      if (!pathValidator(input.path)) issues.push(...toIssues('/path', pathValidator.errors, 'path parameter'));
      if (!queryValidator(input.query)) issues.push(...toIssues('/query', queryValidator.errors, 'query parameter'));
      if (input.body === undefined) {
        if (body?.required) issues.push({ pointer: '/body', reason: 'a JSON request body is required' });
      } else if (!bodyValidator) {
        issues.push({ pointer: '/body', reason: 'this operation takes no request body' });
      } else if (!bodyValidator(input.body.value)) {
        issues.push(...toIssues('/body', bodyValidator.errors, 'property'));
      }
      return issues;
    },
    validateResponse(status, contentType, value) {
      const def = responses.get(String(status)) ?? responses.get(`${String(status)[0]}XX`) ?? responses.get('default');
      if (!def) return [`status ${status} is not documented for ${operationId}`];
      if (def.media.size === 0) {
        return value === undefined || value === null ? [] : [`status ${status} of ${operationId} has no body in the spec`];
      }
      const media = def.media.get(contentType);
      if (!media) return [`content type ${contentType || '(none)'} is not documented for ${operationId} ${status}`];
      if (!media.validate || !isJsonType(contentType)) return [];
      return media.validate(value) ? [] : describe(media.validate.errors);
    },
  };
}

interface CompiledResponse {
  media: Map<string, { validate: ValidateFunction | undefined }>;
}

function compileResponses(ajv: InstanceType<typeof Ajv2020>, operationId: string, responses: Record<string, JsonObject>) {
  const out = new Map<string, CompiledResponse>();
  for (const [status, response] of Object.entries(responses)) {
    const media = new Map<string, { validate: ValidateFunction | undefined }>();
    for (const [type, m] of Object.entries((response.content ?? {}) as Record<string, JsonObject>)) {
      const schema = m.schema as JsonObject | undefined;
      media.set(type, { validate: schema && isJsonType(type) ? ajv.compile(schema) : undefined });
    }
    out.set(status.toUpperCase(), { media });
  }
  if (out.size === 0) throw new Error(`${operationId} documents no responses`);
  return out;
}

export function isJsonType(type: string): boolean {
  return type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type);
}

/** RFC 6901 escaping of one reference token. */
function escapePointer(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

function toIssues(root: string, errors: ErrorObject[] | null | undefined, what: string): ErrorIssue[] {
  const issues: ErrorIssue[] = [];
  const seen = new Set<string>();
  for (const e of errors ?? []) {
    let pointer = root + e.instancePath;
    let reason = e.message ?? e.keyword;
    if (e.keyword === 'required') {
      pointer += '/' + escapePointer(String((e.params as { missingProperty: string }).missingProperty));
      reason = `required ${what} is missing`;
    } else if (e.keyword === 'additionalProperties') {
      pointer += '/' + escapePointer(String((e.params as { additionalProperty: string }).additionalProperty));
      reason = `unknown ${what}`;
    } else if (e.keyword === 'enum') {
      reason = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    }
    const key = pointer + '\0' + reason;
    if (seen.has(key)) continue;
    seen.add(key);
    issues.push({ pointer, reason });
  }
  return issues;
}

function describe(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`);
}

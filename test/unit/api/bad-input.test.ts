// The bad-input corpus: every operation in the spec (so new endpoints are covered without touching this
// file) gets malformed, mistyped, oversized and misaddressed requests. Each must be a 4xx problem with a
// stable code and must leave the store exactly as it was.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiOperation, ApiSpec } from '../../../daemon/api/openapi.js';
import { send, spec, startApp, type Harness, type Res } from './helpers.js';

type Json = unknown;
type Schema = Record<string, unknown>;

interface BadRequest {
  label: string;
  method?: string;
  path: string;
  headers?: Record<string, string | number>;
  body?: string | Buffer;
  /** Acceptable codes; the first entry is the usual one. */
  codes: string[];
  /** A JSON pointer the problem's errors must name. */
  pointer?: string;
}

const STABLE_CODES = new Set([
  'MALFORMED_JSON',
  'VALIDATION_FAILED',
  'BODY_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'ROUTE_NOT_FOUND',
  'METHOD_NOT_ALLOWED',
]);

function example(schema: Schema, what: string): Json {
  const examples = schema.examples as Json[] | undefined;
  if (!examples || examples.length === 0) throw new Error(`${what} needs an \`examples\` entry in the spec so the corpus can build a valid request`);
  return structuredClone(examples[0]);
}

/** The concrete path with every parameter at its example value, one of them optionally replaced. */
function concretePath(op: ApiOperation, override?: { name: string; raw: string }): string {
  return op.path.replace(/\{([^}]+)\}/g, (_m, name: string) => {
    if (override?.name === name) return override.raw;
    const p = op.pathParams.find((x) => x.name === name)!;
    return encodeURIComponent(String(example(p.schema, `path parameter ${name} of ${op.operationId}`)));
  });
}

const JSON_TYPE_OF = (v: Json): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v);

/** A value none of the schema's types admit (integer counts as a number). */
function wrongTypeFor(schema: Schema): Json | undefined {
  const raw = schema.type;
  if (raw === undefined) return undefined;
  const types = new Set(Array.isArray(raw) ? (raw as string[]) : [raw as string]);
  for (const candidate of [12345, 'a string', true, null, [1], { k: 1 }, 1.5] as Json[]) {
    const t = JSON_TYPE_OF(candidate);
    const admitted = types.has(t) || (t === 'integer' && types.has('number'));
    if (!admitted) return candidate;
  }
  return undefined;
}

/** Body mutations derived from the schema: each one breaks exactly one rule at a known pointer. */
function bodyMutations(schema: Schema, value: Json, pointer = ''): Array<{ label: string; body: Json; pointer: string }> {
  const out: Array<{ label: string; body: Json; pointer: string }> = [];
  const wrong = wrongTypeFor(schema);
  if (pointer === '' && wrong !== undefined) out.push({ label: `body of wrong type ${JSON_TYPE_OF(wrong)}`, body: wrong, pointer: '' });
  if (schema.type !== 'object' || typeof value !== 'object' || value === null || Array.isArray(value)) return out;

  const obj = value as Record<string, Json>;
  const props = (schema.properties ?? {}) as Record<string, Schema>;
  const rebuild = (at: string, inner: Json): Json => ({ ...obj, [at]: inner });

  for (const req of (schema.required ?? []) as string[]) {
    const copy = { ...obj };
    delete copy[req];
    out.push({ label: `missing required ${pointer}/${req}`, body: copy, pointer: `${pointer}/${req}` });
  }
  out.push({ label: `unknown property in ${pointer || '/'}`, body: { ...obj, zzUnknown: 1 }, pointer: `${pointer}/zzUnknown` });
  out.push({ label: `__proto__ property in ${pointer || '/'}`, body: JSON.parse(JSON.stringify(obj).replace(/^\{/, '{"__proto__":{"polluted":1},')) as Json, pointer: `${pointer}/__proto__` });

  for (const [name, propSchema] of Object.entries(props)) {
    const wrongProp = wrongTypeFor(propSchema);
    if (wrongProp !== undefined) {
      out.push({ label: `wrong type at ${pointer}/${name}`, body: rebuild(name, wrongProp), pointer: `${pointer}/${name}` });
    }
    if (typeof propSchema.maxLength === 'number') {
      out.push({ label: `too long ${pointer}/${name}`, body: rebuild(name, 'x'.repeat(propSchema.maxLength + 1)), pointer: `${pointer}/${name}` });
    }
    if (obj[name] !== undefined && propSchema.type === 'object') {
      for (const m of bodyMutations(propSchema, obj[name], `${pointer}/${name}`)) {
        out.push({ ...m, body: rebuild(name, m.body) });
      }
    }
  }
  // Only the outermost call prefixes: nested results come back through it and would get /body twice.
  return pointer === '' ? out.map((m) => ({ ...m, pointer: '/body' + m.pointer })) : out;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

function corpusFor(op: ApiOperation): BadRequest[] {
  const path = concretePath(op);
  const method = op.method;
  const validBody = op.body ? JSON.stringify(example(op.body.schema, `request body of ${op.operationId}`)) : '{}';
  // Operations without a body answer any body with VALIDATION_FAILED at /body, before reading it.
  const bodyCode = (code: string) => (op.body ? [code] : ['VALIDATION_FAILED']);
  const cases: BadRequest[] = [];

  // Malformed JSON.
  for (const [label, raw] of [
    ['truncated JSON', '{"name":'],
    ['single-quoted JSON', "{'name':'x'}"],
    ['trailing garbage', validBody + 'x'],
    ['bare word', 'undefined'],
    ['whitespace only', '   '],
  ] as const) {
    cases.push({ label, method, path, headers: JSON_HEADERS, body: raw, codes: bodyCode('MALFORMED_JSON') });
  }
  cases.push({ label: 'invalid UTF-8', method, path, headers: JSON_HEADERS, body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), codes: bodyCode('MALFORMED_JSON') });

  // Wrong content types.
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'application/jsonx']) {
    cases.push({ label: `content-type ${type}`, method, path, headers: { 'content-type': type }, body: validBody, codes: bodyCode('UNSUPPORTED_MEDIA_TYPE') });
  }
  cases.push({ label: 'body without content-type', method, path, body: validBody, codes: bodyCode('UNSUPPORTED_MEDIA_TYPE') });

  // Over 64 KiB, announced and chunked.
  const big = JSON.stringify({ pad: 'x'.repeat(64 * 1024) });
  cases.push({ label: 'body over 64 KiB (content-length)', method, path, headers: JSON_HEADERS, body: big, codes: ['BODY_TOO_LARGE'] });
  cases.push({
    label: 'body over 64 KiB (chunked)',
    method,
    path,
    headers: { ...JSON_HEADERS, 'transfer-encoding': 'chunked' },
    body: big,
    codes: bodyCode('BODY_TOO_LARGE'),
  });

  // Schema violations derived from the body schema.
  if (op.body) {
    const value = example(op.body.schema, `request body of ${op.operationId}`);
    for (const m of bodyMutations(op.body.schema, value)) {
      cases.push({ label: m.label, method, path, headers: JSON_HEADERS, body: JSON.stringify(m.body), codes: ['VALIDATION_FAILED'], pointer: m.pointer });
    }
    if (op.body.required) cases.push({ label: 'missing body', method, path, codes: ['VALIDATION_FAILED'], pointer: '/body' });
  }

  // Unknown query parameters (valid body so nothing else is wrong).
  const withBody = op.body ? { headers: JSON_HEADERS, body: validBody } : {};
  for (const q of ['zzUnknown=1', '__proto__=x', 'constructor=1', 'a=1&a=2']) {
    const name = q.split('=')[0]!;
    cases.push({ label: `unknown query ${q}`, method, path: `${path}?${q}`, ...withBody, codes: ['VALIDATION_FAILED'], pointer: `/query/${name}` });
  }

  // Bad path parameters.
  for (const p of op.pathParams) {
    for (const [label, raw] of [
      ['too long', 'a'.repeat(300)],
      ['space', 'a%20b'],
      ['upper case and symbols', 'A%3Cb%3E%3B'],
      ['dot-dot', '..'],
      ['encoded dot-dot', '%2e%2e'],
      ['encoded slash traversal', '..%2F..%2Fetc%2Fpasswd'],
      ['NUL', 'a%00b'],
      ['broken percent-encoding', '%E0%A4%A'],
      ['non-ASCII', '%C3%A9t%C3%A9'],
    ] as const) {
      cases.push({ label: `path ${p.name}: ${label}`, method, path: concretePath(op, { name: p.name, raw }), ...withBody, codes: ['VALIDATION_FAILED'], pointer: `/path/${p.name}` });
    }
    cases.push({ label: `path ${p.name}: empty`, method, path: concretePath(op, { name: p.name, raw: '' }), ...withBody, codes: ['ROUTE_NOT_FOUND', 'METHOD_NOT_ALLOWED'] });
  }
  return cases;
}

function wrongMethodCases(s: ApiSpec): BadRequest[] {
  const byPath = new Map<string, ApiOperation[]>();
  for (const op of s.operations) byPath.set(op.path, [...(byPath.get(op.path) ?? []), op]);
  const cases: BadRequest[] = [];
  for (const [, ops] of byPath) {
    const defined = new Set(ops.map((o) => o.method));
    if (defined.has('GET')) defined.add('HEAD');
    for (const method of ['GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND']) {
      if (defined.has(method)) continue;
      cases.push({ label: `${method} not allowed`, method, path: concretePath(ops[0]!), codes: ['METHOD_NOT_ALLOWED'] });
    }
  }
  return cases;
}

let h: Harness;
let apiSpec: ApiSpec;

beforeAll(async () => {
  apiSpec = await spec();
  h = await startApp();
  // Resources named like the examples exist, so a bad request that slipped through would visibly change them.
  for (const op of apiSpec.operations) {
    for (const p of op.pathParams) {
      if (p.name === 'name') await h.tokens.create({ name: String(example(p.schema, p.name)) }).catch(() => undefined);
    }
  }
});
afterAll(async () => {
  await h.close();
});

async function snapshot(): Promise<string> {
  return JSON.stringify(await h.tokenStore.list());
}

async function check(c: BadRequest): Promise<Res> {
  const before = await snapshot();
  const res = await send(h, c);
  const ctx = `${c.label}: ${c.method ?? 'GET'} ${c.path.slice(0, 80)} -> ${res.status} ${res.text.slice(0, 300)}`;
  expect(res.status, ctx).toBeGreaterThanOrEqual(400);
  expect(res.status, ctx).toBeLessThan(500);
  expect(String(res.headers['content-type']), ctx).toMatch(/^application\/problem\+json/);
  expect(res.headers['x-request-id'], ctx).toBeTruthy();
  const problem = res.json as { code: string; status: number; errors?: Array<{ pointer: string; reason: string }> };
  expect(problem.status, ctx).toBe(res.status);
  expect(STABLE_CODES.has(problem.code), ctx).toBe(true);
  expect(c.codes, ctx).toContain(problem.code);
  if (c.pointer !== undefined) expect(problem.errors?.map((e) => e.pointer), ctx).toContain(c.pointer);
  if (problem.code === 'VALIDATION_FAILED') expect(problem.errors?.length, ctx).toBeGreaterThan(0);
  if (problem.code === 'METHOD_NOT_ALLOWED') expect(res.headers.allow, ctx).toBeTruthy();
  expect(await snapshot(), `${ctx}: the store changed`).toBe(before);
  return res;
}

describe('bad-input corpus', async () => {
  const s = await spec();

  for (const op of s.operations) {
    it(`${op.operationId} (${op.method} ${op.path}) rejects every bad input and changes nothing`, async () => {
      const cases = corpusFor(op);
      expect(cases.length).toBeGreaterThan(15);
      for (const c of cases) await check(c);
    });
  }

  it('wrong methods on every path are 405 with Allow', async () => {
    const cases = wrongMethodCases(s);
    expect(cases.length).toBeGreaterThan(0);
    for (const c of cases) await check(c);
  });

  it('the example requests the corpus is built from are themselves valid', () => {
    for (const op of s.operations) {
      const path = Object.fromEntries(op.pathParams.map((p) => [p.name, example(p.schema, p.name)]));
      const body = op.body ? { value: example(op.body.schema, op.operationId) } : undefined;
      expect(op.validateRequest({ path, query: {}, body }), op.operationId).toEqual([]);
    }
  });

  it('the connection stays usable after a refused oversized body', async () => {
    // The 413 must reach the client intact (no RST from unread data) even when sent repeatedly.
    for (let i = 0; i < 20; i++) {
      const res = await send(h, { method: 'POST', path: '/v1/tokens', headers: JSON_HEADERS, body: 'x'.repeat(64 * 1024 + 1 + i * 997) });
      expect(res.status).toBe(413);
    }
  });
});

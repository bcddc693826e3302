// The spec's own rules: it parses as OpenAPI 3.1, every object schema is closed, every operation has an
// operationId, documents its errors as Problem, and maps one-to-one onto the app's routes.
import { readFile } from 'node:fs/promises';
import { dereference, validate } from '@readme/openapi-parser';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { defaultSpecPath, HTTP_METHODS } from '../../../daemon/api/openapi.js';
import { send, spec, startApp } from './helpers.js';

type Obj = Record<string, unknown>;

async function rawDoc(): Promise<Obj> {
  return YAML.parse(await readFile(defaultSpecPath(), 'utf8')) as Obj;
}

/** Every schema object anywhere in the document, with a JSON-pointer-ish location. */
function walkSchemas(node: unknown, at: string, visit: (schema: Obj, at: string) => void, seen = new Set<unknown>()): void {
  if (typeof node !== 'object' || node === null || seen.has(node)) return;
  seen.add(node);
  if (Array.isArray(node)) {
    node.forEach((v, i) => walkSchemas(v, `${at}/${i}`, visit, seen));
    return;
  }
  const obj = node as Obj;
  if ('type' in obj || 'properties' in obj) visit(obj, at);
  for (const [k, v] of Object.entries(obj)) {
    // `examples` hold instances, not schemas.
    if (k === 'examples' || k === 'example') continue;
    walkSchemas(v, `${at}/${k}`, visit, seen);
  }
}

function isObjectSchema(s: Obj): boolean {
  const t = s.type;
  return t === 'object' || (Array.isArray(t) && t.includes('object')) || 'properties' in s;
}

describe('api-spec/openapi.yaml', () => {
  it('is a valid OpenAPI 3.1 document per @readme/openapi-parser', async () => {
    const doc = await rawDoc();
    expect(doc.openapi).toMatch(/^3\.1\./);
    const result = await validate(structuredClone(doc) as never);
    expect(result.valid ? [] : result.errors).toEqual([]);
    expect(result.warnings).toEqual([]);
  });

  it('closes every object schema with additionalProperties: false', async () => {
    const deref = (await dereference(structuredClone(await rawDoc()) as never)) as unknown as Obj;
    const open: string[] = [];
    let objects = 0;
    walkSchemas(deref, '#', (schema, at) => {
      if (!isObjectSchema(schema)) return;
      // The one response deliberately without a schema (the OpenAPI document) never reaches here.
      objects++;
      if (schema.additionalProperties !== false) open.push(at);
    });
    expect(open).toEqual([]);
    expect(objects).toBeGreaterThan(10);

    // The walk itself finds an open object nested in an array item.
    const found: string[] = [];
    walkSchemas({ a: { type: 'array', items: { type: 'object', properties: { b: { type: 'object', additionalProperties: false } } } } }, '#', (sc, at) => {
      if (isObjectSchema(sc) && sc.additionalProperties !== false) found.push(at);
    });
    expect(found).toEqual(['#/a/items']);
  });

  it('gives every operation an operationId and a 4xx response documented as a Problem', async () => {
    const deref = (await dereference(structuredClone(await rawDoc()) as never)) as unknown as Obj;
    const problem = ((deref.components as Obj).schemas as Obj).Problem;
    const ids = new Set<string>();
    for (const [path, item] of Object.entries(deref.paths as Record<string, Obj>)) {
      for (const method of HTTP_METHODS) {
        const op = item[method] as Obj | undefined;
        if (!op) continue;
        const where = `${method.toUpperCase()} ${path}`;
        expect(typeof op.operationId, where).toBe('string');
        expect(ids.has(op.operationId as string), `${where}: duplicate operationId`).toBe(false);
        ids.add(op.operationId as string);
        const responses = op.responses as Record<string, Obj>;
        const errorKeys = Object.keys(responses).filter((k) => /^[45]/.test(k));
        expect(errorKeys.some((k) => k.startsWith('4')), `${where}: no 4xx response`).toBe(true);
        expect(errorKeys.some((k) => k.startsWith('5')), `${where}: no 5xx response`).toBe(true);
        for (const k of errorKeys) {
          const content = responses[k]!.content as Record<string, Obj> | undefined;
          expect(Object.keys(content ?? {}), `${where} ${k}`).toEqual(['application/problem+json']);
          expect(content!['application/problem+json']!.schema, `${where} ${k}`).toBe(problem);
        }
      }
    }
    expect(ids.size).toBeGreaterThanOrEqual(8);
  });

  it('has a route in the app for every operation, and no route without one', async () => {
    const s = await spec();
    const h = await startApp();
    try {
      // Each operation answers its own method (whatever the status) rather than 404/405...
      for (const op of s.operations) {
        const path = op.path.replace(/\{[^}]+\}/g, 'x');
        const res = await send(h, { method: op.method, path });
        expect(['ROUTE_NOT_FOUND', 'METHOD_NOT_ALLOWED'], `${op.operationId}: ${res.status} ${res.text}`).not.toContain(
          (res.json as { code?: string } | undefined)?.code,
        );
        const log = h.logs.find((l) => l.requestId === res.headers['x-request-id']);
        expect(log?.operationId, op.operationId).toBe(op.operationId);
      }
      // ...and the app's router holds exactly the spec's operations (createApp also refuses a handler
      // without an operation and an operation without a handler).
      const ids = s.operations.map((o) => o.operationId).sort();
      const { createApp } = await import('../../../daemon/api/app.js');
      const app = createApp({ logger: (await import('../../../daemon/lib/logger.js')).silentLogger(), spec: s, node: { info: async () => Promise.reject(new Error('unused')) }, tokens: h.tokens, leases: { list: async () => [] }, version: 't' });
      const routerLayers = app.middleware
        .map((m) => (m as { router?: { stack: Array<{ name?: string }> } }).router)
        .find((r) => r !== undefined);
      expect(routerLayers, 'router middleware exposes its stack').toBeDefined();
      expect(routerLayers!.stack.map((l) => l.name).sort()).toEqual(ids);
    } finally {
      await h.close();
    }
  });

  it('refuses to build an app whose spec has an operation without a handler', async () => {
    const s = await spec();
    const extra = { ...s.operations[0]!, operationId: 'notImplementedList', path: '/v1/not-implemented', routerPath: '/v1/not-implemented' };
    const { createApp } = await import('../../../daemon/api/app.js');
    const { silentLogger } = await import('../../../daemon/lib/logger.js');
    const h = await startApp();
    try {
      expect(() =>
        createApp({ logger: silentLogger(), spec: { ...s, operations: [...s.operations, extra] }, node: { info: async () => Promise.reject(new Error('unused')) }, tokens: h.tokens, leases: { list: async () => [] }, version: 't' }),
      ).toThrow(/notImplementedList .* has no handler/);
    } finally {
      await h.close();
    }
  });
});

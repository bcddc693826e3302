// Every endpoint's happy path through the real app with response validation on, plus the request-level
// behaviour every response shares (request ids, the log line, problem details).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../../../daemon/lib/errors.js';
import { fakeNode, jsonBody, send, startApp, type Harness } from './helpers.js';

let h: Harness;
beforeEach(async () => {
  h = await startApp();
});
afterEach(async () => {
  await h.close();
});

describe('endpoints', () => {
  it('GET /v1/healthz answers ok', async () => {
    const res = await send(h, { path: '/v1/healthz' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json).toEqual({ status: 'ok' });
  });

  it('GET /v1/node returns what the node service says', async () => {
    const res = await send(h, { path: '/v1/node' });
    expect(res.status).toBe(200);
    expect(res.json).toEqual(fakeNode());
  });

  it('tokens: create shows the secret once, list never does, delete revokes', async () => {
    const created = await send(h, { method: 'POST', path: '/v1/tokens', ...jsonBody({ name: 'ci-runner', description: 'the CI' }) });
    expect(created.status).toBe(201);
    expect(created.headers.location).toBe('/v1/tokens/ci-runner');
    expect(created.headers['cache-control']).toBe('no-store');
    const body = created.json as { token: { name: string; createdAt: string; lastUsedAt: null }; secret: string };
    expect(body.token).toMatchObject({ name: 'ci-runner', description: 'the CI', lastUsedAt: null });
    expect(body.secret).toMatch(/^nvt_[A-Za-z0-9_-]{43}$/);

    const stored = await h.tokenStore.get('ci-runner');
    expect(JSON.stringify(stored)).not.toContain(body.secret);

    const list = await send(h, { path: '/v1/tokens' });
    expect(list.status).toBe(200);
    expect(list.json).toEqual({ items: [body.token] });
    expect(list.text).not.toContain(body.secret.slice(4));
    expect(list.text).not.toContain(stored!.sha256);

    const dup = await send(h, { method: 'POST', path: '/v1/tokens', ...jsonBody({ name: 'ci-runner' }) });
    expect(dup.status).toBe(409);
    expect(dup.json).toMatchObject({ code: 'CONFLICT', status: 409 });

    const del = await send(h, { method: 'DELETE', path: '/v1/tokens/ci-runner' });
    expect(del.status).toBe(204);
    expect(del.text).toBe('');
    expect(await h.tokens.verify(body.secret)).toBeUndefined();

    const again = await send(h, { method: 'DELETE', path: '/v1/tokens/ci-runner' });
    expect(again.status).toBe(404);
    expect(again.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(again.json).toMatchObject({ code: 'NOT_FOUND', status: 404 });
  });

  it('GET /openapi.json serves the spec', async () => {
    const res = await send(h, { path: '/openapi.json' });
    expect(res.status).toBe(200);
    const doc = res.json as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toContain('/v1/node');
  });

  it('GET /docs serves a page whose assets are all served locally', async () => {
    const res = await send(h, { path: '/docs' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers['content-security-policy']).toContain("default-src 'self'");
    expect(res.text).toContain('<title>nodevirt API reference (nodevirtd 0.1.0-test)</title>');
    const refs = [...res.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThanOrEqual(3);
    for (const ref of refs) {
      expect(ref.startsWith('/docs/assets/')).toBe(true);
      const asset = await send(h, { path: ref });
      expect(asset.status, ref).toBe(200);
      expect(asset.text.length, ref).toBeGreaterThan(0);
    }
    const init = await send(h, { path: '/docs/assets/init.js' });
    expect(init.text).toContain("'/openapi.json'");
    const missing = await send(h, { path: '/docs/assets/index.html' });
    expect(missing.status).toBe(404);
    expect(missing.json).toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('every response', () => {
  it('carries a generated X-Request-Id and logs one structured line', async () => {
    const res = await send(h, { path: '/v1/healthz' });
    const id = res.headers['x-request-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const lines = h.logs.filter((l) => l.msg === 'request' && l.requestId === id);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ method: 'GET', path: '/v1/healthz', status: 200, transport: 'unix', operationId: 'healthzGet' });
    expect(typeof lines[0]!.ms).toBe('number');
  });

  it('echoes a sane incoming X-Request-Id and replaces an insane one', async () => {
    const ok = await send(h, { path: '/v1/healthz', headers: { 'x-request-id': 'abc-123.x:y_z' } });
    expect(ok.headers['x-request-id']).toBe('abc-123.x:y_z');
    const bad = await send(h, { path: '/v1/healthz', headers: { 'x-request-id': 'a b<script>' } });
    expect(bad.headers['x-request-id']).not.toBe('a b<script>');
    expect(bad.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const long = await send(h, { path: '/v1/healthz', headers: { 'x-request-id': 'a'.repeat(200) } });
    expect(long.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('problems carry type, title, status, detail, instance, code and requestId', async () => {
    const res = await send(h, { path: '/v1/nope', headers: { 'x-request-id': 'req-1' } });
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json).toEqual({
      type: 'urn:nodevirt:problem:route-not-found',
      title: 'no such route',
      status: 404,
      detail: 'no route /v1/nope',
      instance: '/v1/nope',
      code: 'ROUTE_NOT_FOUND',
      requestId: 'req-1',
    });
  });

  it('a wrong method is 405 with an Allow header', async () => {
    const res = await send(h, { method: 'PUT', path: '/v1/tokens' });
    expect(res.status).toBe(405);
    expect(res.headers.allow?.split(', ').sort()).toEqual(['GET', 'HEAD', 'POST']);
    expect(res.json).toMatchObject({ code: 'METHOD_NOT_ALLOWED' });
  });

  it('validation failures list every pointer with its reason', async () => {
    const res = await send(h, {
      method: 'POST',
      path: '/v1/tokens?dry=1',
      ...jsonBody({ name: 'Bad Name!', description: 7, extra: true }),
    });
    expect(res.status).toBe(400);
    const problem = res.json as { code: string; errors: Array<{ pointer: string; reason: string }> };
    expect(problem.code).toBe('VALIDATION_FAILED');
    expect(problem.errors.map((e) => e.pointer).sort()).toEqual(['/body/description', '/body/extra', '/body/name', '/query/dry']);
    for (const e of problem.errors) expect(e.reason.length).toBeGreaterThan(0);
  });
});

describe('failures inside handlers', () => {
  it('an unknown throwable is a 500 INTERNAL that leaks nothing and is logged with its stack', async () => {
    const broken = await startApp({ node: { info: async () => Promise.reject(new Error('secret path /var/lib/x exploded')) } });
    try {
      const res = await send(broken, { path: '/v1/node' });
      expect(res.status).toBe(500);
      expect(res.json).toMatchObject({ code: 'INTERNAL', status: 500 });
      expect(res.text).not.toContain('secret path');
      const logged = broken.logs.find((l) => l.msg === 'unhandled error') as { err?: { stack?: string } } | undefined;
      expect(logged?.err?.stack).toContain('secret path /var/lib/x exploded');
    } finally {
      await broken.close();
    }
  });

  it('an AppError keeps its code and message', async () => {
    const down = await startApp({ node: { info: async () => Promise.reject(new AppError('LIBVIRT_UNAVAILABLE', 'libvirt-dbus is not running')) } });
    try {
      const res = await send(down, { path: '/v1/node' });
      expect(res.status).toBe(503);
      expect(res.json).toMatchObject({ code: 'LIBVIRT_UNAVAILABLE', detail: 'libvirt-dbus is not running' });
    } finally {
      await down.close();
    }
  });

  it('a response that does not match the spec becomes 500 RESPONSE_INVALID', async () => {
    const wrong = await startApp({ node: { info: async () => ({ ...fakeNode(), surprise: 1 }) } });
    try {
      const res = await send(wrong, { path: '/v1/node' });
      expect(res.status).toBe(500);
      expect(res.json).toMatchObject({ code: 'RESPONSE_INVALID' });
      expect(res.text).not.toContain('surprise');
      const logged = wrong.logs.find((l) => l.msg === 'response does not match the API spec') as { problems?: string[] } | undefined;
      expect(logged?.problems?.join(' ')).toContain('surprise');
    } finally {
      await wrong.close();
    }
  });
});

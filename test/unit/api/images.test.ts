// /v1/images over a real socket with the real registry and real operations (qemu-img replaced by a
// magic-number inspect), importing from a loopback HTTP server: 202 + Location, ?wait, the problems a client
// sees (400 scheme, 409 name, 422 checksum, 409 in use, 404), and a cancel through /v1/operations.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOperations } from '../../../daemon/ops/operations.js';
import { createImageRegistry } from '../../../daemon/storage/image-registry.js';
import { createPathGuard } from '../../../daemon/storage/paths.js';
import { createStore, type Store } from '../../../daemon/store/store.js';
import { magicInspect, partial, serve, startByteServer, type ByteServer } from '../storage/image-helpers.js';
import { closeServer, jsonBody, send, serveApp, type Res } from './helpers.js';

let tmp: string;
let root: string;
let dir: string;
let store: Store;
let http: ByteServer;
let server: Server;
let port: number;
const users = new Map<string, string[]>();

const body = Buffer.alloc(300 * 1024, 0x5a);
const sha = createHash('sha256').update(body).digest('hex');

const req = (method: string, path: string, value?: unknown): Promise<Res> => send({ port }, { method, path, ...(value === undefined ? {} : jsonBody(value)) });
const problem = (r: Res) => r.json as { code: string; status: number; errors?: Array<{ pointer: string }> };

beforeAll(async () => {
  tmp = realpathSync(mkdtempSync(join(tmpdir(), 'nv-api-images-')));
  root = join(tmp, 'root');
  dir = join(root, 'images');
  mkdirSync(join(root, 'uploads'), { recursive: true });
  store = createStore({ stateDir: join(tmp, 'state') });
  await store.open();
  http = await startByteServer();
  http.route('/disk.img', serve(body));
  http.route('/stall', partial(4 << 20, Buffer.alloc(1000), 'stall'));
  const ops = createOperations();
  const images = createImageRegistry({
    store,
    images: { inspect: magicInspect },
    guard: createPathGuard({ roots: [root] }),
    dir,
    ops,
    usedBy: async (n) => users.get(n) ?? [],
  });
  await images.start();
  ({ server, port } = await serveApp(store, { images, ops }));
});

afterAll(async () => {
  await closeServer(server);
  await http.close();
  await store.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('/v1/images', () => {
  it('POST answers 202 with Location; the operation ends with the Image, which GET and the list show', async () => {
    const r = await req('POST', '/v1/images', { name: 'deb', source: { url: http.url('/disk.img') }, sha256: sha });
    expect(r.status, r.text).toBe(202);
    const op = r.json as { id: string; kind: string; target: string };
    expect(r.headers.location).toBe(`/v1/operations/${op.id}`);
    expect(op).toMatchObject({ kind: 'image.import', target: 'images/deb' });
    const done = await req('GET', `${r.headers.location}?wait=10`);
    expect(done.json).toMatchObject({ status: 'succeeded', progress: { percent: 100 }, result: { name: 'deb', format: 'raw', virtualSize: body.length, sha256: sha } });
    const img = await req('GET', '/v1/images/deb');
    expect(img.status).toBe(200);
    expect(img.json).toMatchObject({ name: 'deb', path: join(dir, 'deb.raw'), source: { url: http.url('/disk.img') } });
    expect((await req('GET', '/v1/images')).json).toEqual({ items: [img.json] });
  });

  it('POST ?wait answers 200 with the finished operation, or the problem the failure maps to', async () => {
    writeFileSync(join(root, 'uploads', 'local.img'), body);
    const ok = await req('POST', '/v1/images?wait=10', { name: 'local', source: { path: 'uploads/local.img' } });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.json).toMatchObject({ status: 'succeeded', result: { name: 'local', sha256: sha } });
    const bad = await req('POST', '/v1/images?wait=10', { name: 'mism', source: { url: http.url('/disk.img') }, sha256: '0'.repeat(64) });
    expect(bad.status).toBe(422);
    expect(problem(bad).code).toBe('IMAGE_CHECKSUM_MISMATCH');
    const gone = await req('POST', '/v1/images?wait=10', { name: 'gone', source: { url: http.url('/missing') } });
    expect(gone.status).toBe(502);
    expect(problem(gone).code).toBe('IMAGE_DOWNLOAD_FAILED');
    expect(readdirSync(dir).sort()).toEqual(['deb.raw', 'local.raw']);
    expect((await req('GET', '/v1/images/mism')).status).toBe(404);
  });

  it('refuses bad schemes (400), taken names (409), paths outside the roots (400) and malformed bodies (400)', async () => {
    for (const url of ['file:///etc/passwd', 'ftp://127.0.0.1/x']) {
      const r = await req('POST', '/v1/images', { name: 'x', source: { url } });
      expect(r.status, url).toBe(400);
      expect(problem(r).code).toBe('IMAGE_SOURCE_INVALID');
    }
    const taken = await req('POST', '/v1/images', { name: 'deb', source: { url: http.url('/disk.img') } });
    expect(taken.status).toBe(409);
    expect(problem(taken).code).toBe('IMAGE_EXISTS');
    const outside = await req('POST', '/v1/images', { name: 'x', source: { path: '/etc/passwd' } });
    expect(outside.status).toBe(400);
    expect(problem(outside).code).toBe('PATH_INVALID');
    for (const b of [
      { name: 'x', source: { url: http.url('/disk.img'), path: 'uploads/local.img' } },
      { name: 'Bad_Name', source: { url: http.url('/disk.img') } },
      { name: 'x', source: { url: http.url('/disk.img') }, sha256: 'abc' },
      { name: 'x', source: {} },
    ]) {
      const r = await req('POST', '/v1/images', b);
      expect(r.status, JSON.stringify(b)).toBe(400);
      expect(problem(r).code).toBe('VALIDATION_FAILED');
    }
    expect((await req('GET', '/v1/images/x')).status).toBe(404);
  });

  it('a cancel through DELETE /v1/operations/{id} ends the import with nothing left', async () => {
    const r = await req('POST', '/v1/images', { name: 'slow', source: { url: http.url('/stall') } });
    expect(r.status).toBe(202);
    for (let i = 0; i < 100 && !readdirSync(dir).some((f) => f.startsWith('.import-slow-')); i++) await new Promise((res) => setTimeout(res, 20));
    const c = await req('DELETE', `${r.headers.location}?wait=10`);
    expect(c.json).toMatchObject({ status: 'cancelled' });
    expect(readdirSync(dir).sort()).toEqual(['deb.raw', 'local.raw']);
    expect((await req('GET', '/v1/images/slow')).status).toBe(404);
  });

  it('DELETE is refused with 409 IMAGE_IN_USE while a VM uses the image, then removes record and file', async () => {
    users.set('local', ['web1']);
    const inUse = await req('DELETE', '/v1/images/local');
    expect(inUse.status).toBe(409);
    expect(problem(inUse).code).toBe('IMAGE_IN_USE');
    users.delete('local');
    expect((await req('DELETE', '/v1/images/local')).status).toBe(204);
    expect(existsSync(join(dir, 'local.raw'))).toBe(false);
    const again = await req('DELETE', '/v1/images/local');
    expect(again.status).toBe(404);
    expect(problem(again).code).toBe('IMAGE_NOT_FOUND');
  });
});

// The listeners: unix socket file mode/group and stale-socket handling, TCP bearer auth end to end,
// graceful close that lets an in-flight request finish.
import { mkdtemp, rename, rm, stat, writeFile, readFile } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
import { Agent, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Koa from 'koa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../../../daemon/api/app.js';
import { startServers, type Servers } from '../../../daemon/api/server.js';
import type { Node } from '../../../daemon/api/types.js';
import { createTokenService, type StoredToken, type TokenService } from '../../../daemon/auth/token-service.js';
import { silentLogger } from '../../../daemon/lib/logger.js';
import { createStore, type Store } from '../../../daemon/store/store.js';
import { fakeNode, jsonBody, send, spec } from './helpers.js';

let dir: string;
let store: Store;
let tokens: TokenService;
let servers: Servers | undefined;
/** Lets a test hold GET /v1/node open. */
let nodeGate: { entered: () => void; release: Promise<void> } | undefined;

async function app(): Promise<Koa> {
  return createApp({
    logger: silentLogger(),
    spec: await spec(),
    node: {
      async info(): Promise<Node> {
        if (nodeGate) {
          nodeGate.entered();
          await nodeGate.release;
        }
        return fakeNode();
      },
    },
    tokens,
    leases: { list: async () => [] },
    version: 't',
    validateResponses: true,
  });
}

async function firstNonRootGroup(): Promise<{ name: string; gid: number } | undefined> {
  for (const line of (await readFile('/etc/group', 'utf8')).split('\n')) {
    const [name, , gid] = line.split(':');
    if (name && gid && gid !== '0') return { name, gid: Number(gid) };
  }
  return undefined;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-srv-'));
  store = createStore({ stateDir: join(dir, 'state') });
  await store.open();
  tokens = createTokenService({ tokens: store.sublevel<StoredToken>('tokens') });
  nodeGate = undefined;
});
afterEach(async () => {
  await servers?.close();
  servers = undefined;
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('unix socket', () => {
  it('is created with mode 0660 and the configured group, in a parent dir it creates', async () => {
    const group = await firstNonRootGroup();
    const path = join(dir, 'run', 'nodevirt', 'api.sock');
    servers = await startServers({ app: await app(), logger: silentLogger(), unixSocket: { path, ...(group ? { group: group.name } : {}) } });
    const st = await stat(path);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
    if (group) expect(st.gid).toBe(group.gid);
    expect(servers.addresses.unix).toBe(path);
    const res = await send({ socketPath: path }, { path: '/v1/node' });
    expect(res.status).toBe(200);
  });

  it('keeps the socket owner group when the group does not exist', async () => {
    const path = join(dir, 'api.sock');
    servers = await startServers({ app: await app(), logger: silentLogger(), unixSocket: { path, group: 'no-such-group-nodevirt' } });
    expect((await stat(path)).gid).toBe(process.getgid!());
  });

  it('replaces a stale socket file, refuses a live one and a non-socket file', async () => {
    // A socket file nobody listens on: listen, move the file away, close the listener.
    const path = join(dir, 'api.sock');
    const tmp = createNetServer();
    await new Promise<void>((r) => tmp.listen(join(dir, 'tmp.sock'), r));
    await rename(join(dir, 'tmp.sock'), path);
    await new Promise<void>((r) => tmp.close(() => r()));
    expect((await stat(path)).isSocket()).toBe(true);

    servers = await startServers({ app: await app(), logger: silentLogger(), unixSocket: { path } });
    expect((await send({ socketPath: path }, { path: '/v1/healthz' })).status).toBe(200);

    await expect(startServers({ app: await app(), logger: silentLogger(), unixSocket: { path } })).rejects.toThrow(/in use/);
    expect((await send({ socketPath: path }, { path: '/v1/healthz' })).status).toBe(200);

    const file = join(dir, 'not-a-socket');
    await writeFile(file, 'keep me');
    await expect(startServers({ app: await app(), logger: silentLogger(), unixSocket: { path: file } })).rejects.toThrow(/not a socket/);
    expect(await readFile(file, 'utf8')).toBe('keep me');
  });
});

describe('TCP listener', () => {
  async function start() {
    servers = await startServers({
      app: await app(),
      logger: silentLogger(),
      unixSocket: { path: join(dir, 'api.sock') },
      tcp: { host: '127.0.0.1', port: 0 },
    });
    return { unix: { socketPath: servers.addresses.unix }, tcp: { port: servers.addresses.tcp!.port } };
  }

  it('needs a bearer token for everything but healthz', async () => {
    const { unix, tcp } = await start();

    const open = await send(tcp, { path: '/v1/healthz' });
    expect(open.status).toBe(200);

    // The API description is public so a browser can read /docs over TCP; everything else needs a token.
    for (const path of ['/openapi.json', '/docs']) expect((await send(tcp, { path })).status, path).toBe(200);

    for (const path of ['/v1/node', '/v1/tokens', '/v1/no-such-route']) {
      const res = await send(tcp, { path });
      expect(res.status, path).toBe(401);
      expect(res.headers['www-authenticate'], path).toBe('Bearer realm="nodevirt"');
      expect(res.headers['content-type'], path).toMatch(/^application\/problem\+json/);
      expect(res.json, path).toMatchObject({ code: 'UNAUTHENTICATED', status: 401 });
    }

    const wrong = await send(tcp, { path: '/v1/node', headers: { authorization: 'Bearer nvt_' + 'A'.repeat(43) } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toBe('Bearer realm="nodevirt", error="invalid_token"');
    const basic = await send(tcp, { path: '/v1/node', headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    expect(basic.status).toBe(401);

    // Tokens are made over the trusted socket, then work on TCP.
    const created = await send(unix, { method: 'POST', path: '/v1/tokens', ...jsonBody({ name: 'remote' }) });
    expect(created.status).toBe(201);
    const secret = (created.json as { secret: string }).secret;
    const ok = await send(tcp, { path: '/v1/node', headers: { authorization: `Bearer ${secret}` } });
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual(fakeNode());
    const lower = await send(tcp, { path: '/v1/node', headers: { authorization: `bearer ${secret}` } });
    expect(lower.status).toBe(200);

    // Token administration is local-only: a valid (maybe leaked) token can neither list, mint nor revoke.
    const auth = { authorization: `Bearer ${secret}` };
    for (const req of [
      { path: '/v1/tokens', headers: auth },
      { method: 'POST', path: '/v1/tokens', ...jsonBody({ name: 'minted' }), headers: { ...jsonBody({ name: 'minted' }).headers, ...auth } },
      { method: 'DELETE', path: '/v1/tokens/remote', headers: auth },
    ]) {
      const res = await send(tcp, req);
      expect(res.status, `${req.method ?? 'GET'} ${req.path}`).toBe(403);
      expect(res.json).toMatchObject({ code: 'LOCAL_ONLY', status: 403 });
    }
    const listed = await send(unix, { path: '/v1/tokens' });
    expect((listed.json as { items: Array<{ name: string; lastUsedAt: string | null }> }).items.map((t) => t.name)).toEqual(['remote']);
    expect((listed.json as { items: Array<{ lastUsedAt: string | null }> }).items[0]?.lastUsedAt).not.toBeNull();

    // Revoked over the socket; from then on the token is refused on TCP.
    const del = await send(unix, { method: 'DELETE', path: '/v1/tokens/remote' });
    expect(del.status).toBe(204);
    const after = await send(tcp, { path: '/v1/node', headers: { authorization: `Bearer ${secret}` } });
    expect(after.status).toBe(401);
  });

  it('answers a refused request before reading a huge announced body, and closes that connection', async () => {
    const { tcp } = await start();
    const res = await new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port: tcp.port, method: 'POST', path: '/v1/tokens', agent: false, headers: { 'content-type': 'application/json', 'content-length': 10 * 1024 ** 3, authorization: 'Bearer x' } },
        (r) => {
          r.resume();
          resolve({ status: r.statusCode ?? 0, connection: r.headers.connection });
          req.destroy();
        },
      );
      req.on('error', reject);
      req.flushHeaders();
    });
    // Authentication is checked first on TCP; the body is never read either way.
    expect(res.status).toBe(401);
    expect(res.connection).toBe('close');
  });
});

describe('graceful close', () => {
  it('finishes an in-flight request, refuses new connections, and closes idle keep-alive ones', async () => {
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    nodeGate = { entered, release: new Promise<void>((r) => (release = r)) };
    const path = join(dir, 'api.sock');
    servers = await startServers({ app: await app(), logger: silentLogger(), unixSocket: { path }, tcp: { host: '127.0.0.1', port: 0 } });
    const s = servers;

    // An idle keep-alive connection that must not hold close() up.
    const agent = new Agent({ keepAlive: true });
    await new Promise<void>((resolve, reject) => {
      httpRequest({ socketPath: path, path: '/v1/healthz', agent }, (r) => {
        r.resume();
        r.on('end', resolve);
      }).on('error', reject).end();
    });

    const inflight = send({ socketPath: path }, { path: '/v1/node' });
    await inside;
    let closed = false;
    const closing = s.close().then(() => {
      closed = true;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(closed).toBe(false);
    await expect(send({ socketPath: path }, { path: '/v1/healthz' })).rejects.toThrow();

    release();
    const res = await inflight;
    expect(res.status).toBe(200);
    expect(res.json).toEqual(fakeNode());
    await closing;
    expect(closed).toBe(true);
    agent.destroy();
    await expect(stat(path)).rejects.toThrow();
    servers = undefined;
  });

  it('cuts a request that outlives the timeout', async () => {
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    nodeGate = { entered, release: new Promise<void>(() => {}) };
    const path = join(dir, 'api.sock');
    servers = await startServers({ app: await app(), logger: silentLogger(), unixSocket: { path }, closeTimeoutMs: 200 });
    const inflight = send({ socketPath: path }, { path: '/v1/node' });
    await inside;
    const t0 = Date.now();
    await servers.close();
    expect(Date.now() - t0).toBeLessThan(5000);
    await expect(inflight).rejects.toThrow();
    servers = undefined;
  });
});

describe('oversized bodies', () => {
  it('a huge announced body is refused with 413 before any of it is sent', async () => {
    const path = join(dir, 'api.sock');
    servers = await startServers({ app: await app(), logger: silentLogger(), unixSocket: { path } });
    const res = await new Promise<{ status: number; connection: string | undefined; code: string }>((resolve, reject) => {
      const req = httpRequest(
        { socketPath: path, method: 'POST', path: '/v1/tokens', agent: false, headers: { 'content-type': 'application/json', 'content-length': 10 * 1024 ** 3 } },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => {
            resolve({ status: r.statusCode ?? 0, connection: r.headers.connection, code: (JSON.parse(Buffer.concat(chunks).toString()) as { code: string }).code });
            req.destroy();
          });
        },
      );
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(res).toEqual({ status: 413, connection: 'close', code: 'BODY_TOO_LARGE' });
  });

  it('a streamed (chunked) body is cut off at the limit while the client is still sending', async () => {
    const path = join(dir, 'api.sock');
    servers = await startServers({ app: await app(), logger: silentLogger(), unixSocket: { path } });
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    const result = await new Promise<{ status: number; sentWhenAnswered: number }>((resolve, reject) => {
      let sent = 0;
      let answered: { status: number; sentWhenAnswered: number } | undefined;
      const req = httpRequest(
        { socketPath: path, method: 'POST', path: '/v1/tokens', agent: false, headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } },
        (r) => {
          answered = { status: r.statusCode ?? 0, sentWhenAnswered: sent };
          r.resume();
          r.on('end', () => {
            req.destroy();
            resolve(answered!);
          });
        },
      );
      req.on('error', (e) => (answered ? resolve(answered) : reject(e)));
      const pump = () => {
        // Up to 64 MiB; the answer must come long before.
        while (!answered && sent < 64 * 1024 * 1024) {
          sent += chunk.length;
          if (!req.write(chunk)) return req.once('drain', pump);
        }
        if (!answered) req.end();
      };
      pump();
    });
    expect(result.status).toBe(413);
    // The server stops after 64 KiB plus at most its 1 MiB discard budget (and socket buffers).
    expect(result.sentWhenAnswered).toBeLessThan(16 * 1024 * 1024);
  });
});

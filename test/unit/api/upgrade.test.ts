// WebSocket upgrades through the real app and server listeners: console and VNC routed by the spec, refusals
// (401 over TCP, 404, 409, 426, 400) answered as problems before any 101, then bytes through the sockets.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createApp, requestListener, type Transport } from '../../../daemon/api/app.js';
import { upgradeListener, type UpgradeListener } from '../../../daemon/api/upgrade.js';
import { createTokenService, type StoredToken } from '../../../daemon/auth/token-service.js';
import { AppError } from '../../../daemon/lib/errors.js';
import { silentLogger } from '../../../daemon/lib/logger.js';
import { createLeaseRepo, type StoredLease } from '../../../daemon/net/dhcp/lease-repo.js';
import { createStore, type Store } from '../../../daemon/store/store.js';
import { CLOSE, createConsoleService, type ConsoleService } from '../../../daemon/vm/console.js';
import { createVncProxy } from '../../../daemon/vm/vnc.js';
import { send, spec } from './helpers.js';

let dir: string;
let store: Store;
let serial: { server: Server; clients: Socket[]; input: string };
let vnc: Server;
let consoles: ConsoleService;
const servers: Array<{ http: HttpServer; upgrades: UpgradeListener; port: number }> = [];
let unixPort: number;
let tcpPort: number;
let token: string;
const running = new Set(['vm1']);

async function serve(transport: Transport, heartbeatMs?: number) {
  const app = createApp({
    logger: silentLogger(),
    spec: await spec(),
    node: { info: async () => Promise.reject(new Error('unused')) },
    tokens: createTokenService({ tokens: store.sublevel<StoredToken>('tokens') }),
    leases: createLeaseRepo({ leases: store.sublevel<StoredLease>('dhcp-leases') }),
    version: 't',
    validateResponses: true,
    console: consoles,
    vnc: createVncProxy({ vms: locator, libvirt }),
  });
  const http = createHttpServer(requestListener(app, transport));
  const upgrades = upgradeListener(app, transport, heartbeatMs === undefined ? {} : { heartbeatMs });
  http.on('upgrade', upgrades.handle);
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const port = (http.address() as AddressInfo).port;
  servers.push({ http, upgrades, port });
  return port;
}

const locator = {
  async domainOf(vm: string) {
    if (vm !== 'vm1' && vm !== 'off1') throw new AppError('VM_NOT_FOUND', `no VM named ${vm}`);
    return `nodevirt-${vm}`;
  },
};
const libvirt = {
  lookupDomain: async (name: string) => {
    const active = running.has(name.replace(/^nodevirt-/, ''));
    return { name, uuid: 'u', state: active ? ('running' as const) : ('shutoff' as const), reason: 0, persistent: true, active };
  },
  getDomainXml: async () =>
    `<domain id='4'><devices><serial type='unix'><source mode='bind' path='${join(dir, 'serial.sock')}'/></serial>` +
    `<graphics type='vnc' socket='${join(dir, 'vnc.sock')}'/></devices></domain>`,
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nv-upgrade-'));
  store = createStore({ stateDir: dir });
  await store.open();
  token = (await createTokenService({ tokens: store.sublevel<StoredToken>('tokens') }).create({ name: 'ws' })).secret;
  serial = { server: createServer(), clients: [], input: '' };
  serial.server.on('connection', (c) => {
    serial.clients.push(c);
    c.on('data', (d: Buffer) => (serial.input += d.toString()));
    c.on('close', () => serial.clients.splice(serial.clients.indexOf(c), 1));
  });
  await new Promise<void>((r) => serial.server.listen(join(dir, 'serial.sock'), r));
  vnc = createServer((c) => {
    c.write('RFB 003.008\n');
    c.on('error', () => undefined);
  });
  await new Promise<void>((r) => vnc.listen(join(dir, 'vnc.sock'), r));
  consoles = createConsoleService({ vms: locator, libvirt });
  unixPort = await serve('unix');
  tcpPort = await serve('tcp');
});

afterAll(async () => {
  await consoles.stop();
  for (const s of servers) {
    s.upgrades.close();
    s.http.closeAllConnections();
    await new Promise((r) => s.http.close(r));
  }
  for (const c of serial.clients) c.destroy();
  await new Promise((r) => serial.server.close(r));
  await new Promise((r) => vnc.close(r));
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

type Outcome = { ws: WebSocket; protocol: string; out: { text: () => string } } | { status: number; body: { code?: string; status?: number; requestId?: string }; headers: Record<string, unknown> };

/** Opens a WebSocket; resolves with it, or with the HTTP answer that refused the upgrade. */
function connect(port: number, path: string, opts: { headers?: Record<string, string>; protocols?: string[]; autoPong?: boolean } = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, opts.protocols ?? [], { headers: opts.headers ?? {}, autoPong: opts.autoPong ?? true });
    ws.binaryType = 'nodebuffer';
    // Listening from the start: the first bytes may arrive with the 101, before a later listener could attach.
    const out = collect(ws);
    ws.once('open', () => resolve({ ws, protocol: ws.protocol, out }));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { code?: string }, headers: res.headers }));
    });
    ws.once('error', reject);
  });
}

const refused = (o: Outcome) => {
  if ('ws' in o) throw new Error('the upgrade was accepted');
  return o;
};
const opened = (o: Outcome) => {
  if (!('ws' in o)) throw new Error(`the upgrade was refused: ${o.status} ${JSON.stringify(o.body)}`);
  return o;
};

const until = async (cond: () => boolean, what: string, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

function collect(ws: WebSocket): { text: () => string } {
  const chunks: Buffer[] = [];
  ws.on('message', (d: Buffer) => chunks.push(d));
  return { text: () => Buffer.concat(chunks).toString() };
}

describe('WebSocket upgrades', () => {
  it('serves the console over the unix listener: output to readers, the writer input upstream', async () => {
    const { ws: w, out: wOut } = opened(await connect(unixPort, '/v1/vms/vm1/console?mode=rw'));
    const { ws: r, out: rOut } = opened(await connect(unixPort, '/v1/vms/vm1/console'));
    await until(() => serial.clients.length === 1, 'the upstream connection');
    serial.clients[0]!.write('hello from the guest\r\n');
    await until(() => wOut.text() === 'hello from the guest\r\n' && rOut.text() === 'hello from the guest\r\n', 'both clients to see it');
    w.send('typed\n');
    r.send('ignored\n');
    await until(() => serial.input.includes('typed'), 'the writer input');
    // The binary frame arrives after the text frame if at all: give it the same round trip.
    w.send(Buffer.from('bin\n'));
    await until(() => serial.input.includes('bin'), 'the binary input');
    expect(serial.input).toBe('typed\nbin\n');

    const busy = refused(await connect(unixPort, '/v1/vms/vm1/console?mode=rw'));
    expect(busy.status).toBe(409);
    expect(busy.body.code).toBe('CONSOLE_BUSY');

    const closed = new Promise<number>((ok) => r.once('close', (code) => ok(code)));
    w.close();
    r.close();
    await closed;
    await until(() => serial.clients.length === 0, 'the upstream to close after the last client');
  });

  it('refuses before the upgrade: unknown VM 404, stopped VM 409, bad mode 400, plain GET 426', async () => {
    const missing = refused(await connect(unixPort, '/v1/vms/nope/console'));
    expect([missing.status, missing.body.code]).toEqual([404, 'VM_NOT_FOUND']);
    expect(missing.body.requestId).toBeTruthy();
    const off = refused(await connect(unixPort, '/v1/vms/off1/vnc'));
    expect([off.status, off.body.code]).toEqual([409, 'VM_NOT_RUNNING']);
    const bad = refused(await connect(unixPort, '/v1/vms/vm1/console?mode=admin'));
    expect([bad.status, bad.body.code]).toEqual([400, 'VALIDATION_FAILED']);
    const plain = await send({ port: unixPort }, { path: '/v1/vms/vm1/console' });
    expect(plain.status).toBe(426);
    expect((plain.json as { code: string }).code).toBe('UPGRADE_REQUIRED');
    expect(plain.headers.upgrade).toBe('websocket');
  });

  it('over TCP needs the bearer token before the upgrade (401 without, 101 with)', async () => {
    const anon = refused(await connect(tcpPort, '/v1/vms/vm1/console'));
    expect([anon.status, anon.body.code]).toEqual([401, 'UNAUTHENTICATED']);
    const wrong = refused(await connect(tcpPort, '/v1/vms/vm1/vnc', { headers: { authorization: 'Bearer nvt_wrong' } }));
    expect(wrong.status).toBe(401);
    // The refused upgrades never reached the console: no upstream was opened for them.
    expect(serial.clients).toHaveLength(0);
    const { ws } = opened(await connect(tcpPort, '/v1/vms/vm1/console', { headers: { authorization: `Bearer ${token}` } }));
    ws.close();
  });

  it('proxies VNC with the binary subprotocol noVNC asks for', async () => {
    const { ws, out } = opened(await connect(unixPort, '/v1/vms/vm1/vnc', { protocols: ['binary'] }));
    expect(ws.protocol).toBe('binary');
    await until(() => out.text() === 'RFB 003.008\n', 'the RFB greeting');
    ws.close();
  });

  it('closes live WebSockets with 1001 when the listener shuts down', async () => {
    const port = await serve('unix');
    const { ws } = opened(await connect(port, '/v1/vms/vm1/console'));
    const code = new Promise<number>((ok) => ws.once('close', (c) => ok(c)));
    servers.at(-1)!.upgrades.close();
    expect(await code).toBe(CLOSE.GOING_AWAY);
    const after = await connect(port, '/v1/vms/vm1/console').catch((e: Error) => e);
    expect(after).toBeInstanceOf(Error);
  });

  it('cuts off a client that stops answering pings, which frees the writer role', async () => {
    const port = await serve('unix', 50);
    const { ws: dead } = opened(await connect(port, '/v1/vms/vm1/console?mode=rw', { autoPong: false }));
    const { ws: alive } = opened(await connect(port, '/v1/vms/vm1/console', {}));
    const code = await new Promise<number>((ok) => dead.once('close', (c) => ok(c)));
    expect(code).toBe(1006);
    expect(alive.readyState).toBe(WebSocket.OPEN);
    const { ws: next } = opened(await connect(port, '/v1/vms/vm1/console?mode=rw'));
    next.close();
    alive.close();
  });
});

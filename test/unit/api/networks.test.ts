// /v1/networks through the real app (response validation on) over the real network service, a temp store
// and the link/net-host fakes: create/update/no-op with ETag and generation, If-Match 412, dry run,
// 404/409/400 problems, and 500 while the service is not wired.
import { mkdtemp, rm } from 'node:fs/promises';
import { type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NetworkApi } from '../../../daemon/api/routes/networks.js';
import { createFakeLinks, type FakeLinks } from '../../../daemon/host/links-fake.js';
import { createFakeNftables } from '../../../daemon/host/nftables-fake.js';
import { bridgeName } from '../../../daemon/net/names.js';
import { createFakeNetHost } from '../../../daemon/host/net-host-fake.js';
import { createNetworkService } from '../../../daemon/net/network-service.js';
import { createStore, type Store } from '../../../daemon/store/store.js';
import { closeServer, serveApp, jsonBody, send, spec } from './helpers.js';

let dir: string;
let store: Store;
let server: Server;
let port: number;
let links: FakeLinks;
let nicsInUse: string[];

async function serve(networks: NetworkApi | undefined): Promise<void> {
  ({ server, port } = await serveApp(store, networks ? { networks: networks } : {}));
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-networks-api-'));
  store = createStore({ stateDir: dir });
  await store.open();
  links = createFakeLinks();
  links.seed({ name: 'eth1', up: true });
  nicsInUse = [];
});

afterEach(async () => {
  await closeServer(server);
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const service = () =>
  createNetworkService({ store, adapters: { links, nft: createFakeNftables(), host: createFakeNetHost(links) }, nicsUsing: async () => nicsInUse });

const put = (name: string, body: unknown, headers: Record<string, string> = {}, query = '') => {
  const j = jsonBody(body);
  return send({ port }, { method: 'PUT', path: `/v1/networks/${name}${query}`, headers: { ...j.headers, ...headers }, body: j.body });
};

describe('/v1/networks', () => {
  it('PUT creates (201, ETag, Location), repeats as a no-op (200, same ETag), updates (generation 2)', async () => {
    await serve(service());
    const spec1 = { type: 'bridge', bridge: { uplinks: ['eth1'] } };
    const created = await put('lan', spec1);
    expect(created.status).toBe(201);
    expect(created.headers.etag).toBe('"1"');
    expect(created.headers.location).toBe('/v1/networks/lan');
    expect(created.json).toMatchObject({ changed: true, dryRun: false, network: { name: 'lan', generation: 1, status: { ready: true, bridge: bridgeName('lan') } } });
    expect((created.json as { diff: string }).diff).toContain(`+ ip link add name ${bridgeName('lan')}`);

    const again = await put('lan', spec1);
    expect(again.status).toBe(200);
    expect(again.headers.etag).toBe('"1"');
    expect(again.json).toMatchObject({ changed: false, changes: [], diff: '(no changes)\n' });

    const updated = await put('lan', { ...spec1, mtu: 1400 }, { 'If-Match': '"1"' });
    expect(updated.status).toBe(200);
    expect(updated.headers.etag).toBe('"2"');
    const stale = await put('lan', { ...spec1, mtu: 1300 }, { 'If-Match': '"1"' });
    expect(stale.status).toBe(412);
    expect(stale.json).toMatchObject({ code: 'PRECONDITION_FAILED' });

    const got = await send({ port }, { path: '/v1/networks/lan' });
    expect(got.status).toBe(200);
    expect(got.headers.etag).toBe('"2"');
    expect(got.json).toMatchObject({ spec: { type: 'bridge', mtu: 1400, bridge: { managed: true, uplinks: ['eth1'], stp: false } } });
    const list = await send({ port }, { path: '/v1/networks' });
    expect((list.json as { items: Array<{ name: string }> }).items.map((n) => n.name)).toEqual(['lan']);
  });

  it('?dryRun=true answers the diff and changes nothing', async () => {
    await serve(service());
    const r = await put('n', { type: 'nat', nat: { subnet: '192.168.77.0/24', isolation: true } }, {}, '?dryRun=true');
    expect(r.status).toBe(200);
    expect(r.headers.etag).toBeUndefined();
    expect(r.json).toMatchObject({ dryRun: true, changed: true, network: { generation: 0 } });
    expect((r.json as { changes: string[] }).changes).toContain(`+ ip addr add 192.168.77.1/24 dev ${bridgeName('n')}`);
    expect(links.log).toEqual([]);
    expect((await send({ port }, { path: '/v1/networks/n' })).status).toBe(404);
  });

  it('problems: 404 NETWORK_NOT_FOUND, 409 NETWORK_IN_USE, 400 NETWORK_INVALID and VALIDATION_FAILED', async () => {
    await serve(service());
    expect((await send({ port }, { path: '/v1/networks/none' })).json).toMatchObject({ status: 404, code: 'NETWORK_NOT_FOUND' });
    expect((await send({ port }, { method: 'DELETE', path: '/v1/networks/none' })).status).toBe(404);
    expect((await put('x', { type: 'bridge', bridge: { uplinks: ['missing0'] } })).json).toMatchObject({ status: 400, code: 'NETWORK_INVALID' });
    expect((await put('x', { type: 'nat', nat: { subnet: '10.0.2.1/24' } })).json).toMatchObject({ status: 400 });
    expect((await put('x', { type: 'bridge', mtu: 100 })).json).toMatchObject({ status: 400, code: 'VALIDATION_FAILED' });
    await put('lan', { type: 'bridge' });
    nicsInUse = ['vm1/net0'];
    expect((await send({ port }, { method: 'DELETE', path: '/v1/networks/lan' })).json).toMatchObject({ status: 409, code: 'NETWORK_IN_USE' });
    nicsInUse = [];
    expect((await send({ port }, { method: 'DELETE', path: '/v1/networks/lan', headers: { 'If-Match': '"7"' } })).status).toBe(412);
    expect((await send({ port }, { method: 'DELETE', path: '/v1/networks/lan' })).status).toBe(204);
    expect(await links.get(bridgeName('lan'))).toBeUndefined();
  });

  it('floating IPs: PUT 201 then 200, GET one/list, 400 on a non-routed network, DELETE 204 then 404', async () => {
    await serve(service());
    await put('rt', { type: 'routed', routed: { pool: '203.0.113.16/28', uplink: 'eth1' } });
    await put('b', { type: 'bridge' });
    const fipPut = (net: string, ip: string, body: unknown) => {
      const j = jsonBody(body);
      return send({ port }, { method: 'PUT', path: `/v1/networks/${net}/floating-ips/${ip}`, headers: j.headers, body: j.body });
    };
    const created = await fipPut('rt', '198.51.100.50', { vm: 'vm1', nic: 'net0' });
    expect(created.status).toBe(201);
    expect(created.headers.location).toBe('/v1/networks/rt/floating-ips/198.51.100.50');
    expect(created.json).toMatchObject({ changed: true, floatingIp: { ip: '198.51.100.50', vm: 'vm1', nic: 'net0', ready: false } });
    expect((await fipPut('rt', '198.51.100.50', { vm: 'vm1', nic: 'net0' })).json).toMatchObject({ changed: false, changes: [] });
    expect((await fipPut('rt', '198.51.100.50', { vm: 'vm1' })).json).toMatchObject({ status: 400, code: 'VALIDATION_FAILED' });
    expect((await fipPut('rt', 'not-an-ip', { vm: 'vm1', nic: 'net0' })).status).toBe(400);
    expect((await fipPut('b', '198.51.100.50', { vm: 'vm1', nic: 'net0' })).json).toMatchObject({ status: 400, code: 'NETWORK_INVALID' });
    expect((await send({ port }, { path: '/v1/networks/rt/floating-ips' })).json).toMatchObject({ items: [{ ip: '198.51.100.50', vm: 'vm1' }] });
    expect((await send({ port }, { path: '/v1/networks/rt/floating-ips/198.51.100.50' })).json).toMatchObject({ ip: '198.51.100.50', nic: 'net0' });
    expect((await send({ port }, { path: '/v1/networks/rt' })).json).toMatchObject({ generation: 2, spec: { routed: { floatingIps: [{ ip: '198.51.100.50', vm: 'vm1', nic: 'net0' }] } } });
    expect((await send({ port }, { method: 'DELETE', path: '/v1/networks/rt/floating-ips/198.51.100.50' })).status).toBe(204);
    expect((await send({ port }, { path: '/v1/networks/rt/floating-ips/198.51.100.50' })).json).toMatchObject({ status: 404, code: 'FLOATING_IP_NOT_FOUND' });
    expect((await send({ port }, { method: 'DELETE', path: '/v1/networks/rt/floating-ips/198.51.100.50' })).status).toBe(404);
  });

  it('confirm: 404 HOST_CHANGE_NOT_FOUND without a host change, 404 for no network; a bad rollbackTimeoutMs is 400', async () => {
    await serve(service());
    await put('lan', { type: 'bridge' });
    expect((await send({ port }, { method: 'POST', path: '/v1/networks/lan/confirm' })).json).toMatchObject({ status: 404, code: 'HOST_CHANGE_NOT_FOUND' });
    expect((await send({ port }, { method: 'POST', path: '/v1/networks/none/confirm' })).json).toMatchObject({ status: 404, code: 'NETWORK_NOT_FOUND' });
    expect((await put('lan', { type: 'bridge' }, {}, '?rollbackTimeoutMs=5')).json).toMatchObject({ status: 400, code: 'VALIDATION_FAILED' });
    expect((await put('lan', { type: 'bridge' }, {}, '?autoConfirm=false&rollbackTimeoutMs=5000')).status).toBe(200);
  });

  it('probeUrl (repeatable) reaches the host change as probe URLs; a non-http(s) one is 400 and changes nothing', async () => {
    const real = service();
    const seen: unknown[] = [];
    await serve({ ...real, put: (n, spec, o) => (seen.push(o?.probeUrls), real.put(n, spec, o)) });
    expect((await put('lan', { type: 'bridge' }, {}, '?probeUrl=http://10.0.0.5:8006/v1/healthz&probeUrl=https://peer/x')).status).toBe(201);
    expect(seen).toEqual([['http://10.0.0.5:8006/v1/healthz', 'https://peer/x']]);
    expect((await put('lan2', { type: 'bridge' }, {}, '?probeUrl=ftp://peer/x')).json).toMatchObject({ status: 400, code: 'VALIDATION_FAILED' });
    expect(seen).toHaveLength(1);
    expect((await send({ port }, { path: '/v1/networks/lan2' })).status).toBe(404);
  });

  it('answers 500 INTERNAL until the service is wired, never an empty list', async () => {
    await serve(undefined);
    expect((await send({ port }, { path: '/v1/networks' })).json).toMatchObject({ status: 500, code: 'INTERNAL' });
  });
});

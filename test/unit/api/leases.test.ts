// GET /v1/leases through the real app (response validation on) over a real lease repo on a temp store.
import { mkdtemp, rm } from 'node:fs/promises';
import { type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type AppDeps } from '../../../daemon/api/app.js';
import { createLeaseRepo, type LeaseRepo, type StoredLease } from '../../../daemon/net/dhcp/lease-repo.js';
import { createStore, type Store } from '../../../daemon/store/store.js';
import { closeServer, serveApp, send } from './helpers.js';

const T0 = Date.parse('2024-05-01T10:00:00.000Z');

let dir: string;
let store: Store;
let repo: LeaseRepo;
let server: Server;
let port: number;

async function serve(leases: AppDeps['leases']): Promise<void> {
  ({ server, port } = await serveApp(store, leases ? { leases: leases } : {}));
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-leases-api-'));
  store = createStore({ stateDir: dir });
  await store.open();
  repo = createLeaseRepo({ leases: store.sublevel<StoredLease>('dhcp-leases'), now: () => T0 });
  await repo.start();
});

afterEach(async () => {
  await closeServer(server);
  await repo.stop();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('GET /v1/leases', () => {
  it('lists what the DHCP servers recorded, filtered by interface or MAC', async () => {
    await serve(repo);
    expect((await send({ port }, { path: '/v1/leases' })).json).toEqual({ items: [] });
    repo.record('nvtap0001', { type: 'ack', mac: '52:54:00:aa:00:01', ip: '192.168.100.11', at: T0 });
    repo.record('nvtap0001', { type: 'ack', mac: '52:54:00:aa:00:01', ip: '192.168.100.11', at: T0 + 60_000 });
    repo.record('nvtap0002', { type: 'decline', mac: '52:54:00:00:00:02', ip: '192.168.100.12', at: T0 });
    const all = await send({ port }, { path: '/v1/leases' });
    expect(all.status).toBe(200);
    expect(all.json).toEqual({
      items: [
        {
          interface: 'nvtap0001',
          mac: '52:54:00:aa:00:01',
          ip: '192.168.100.11',
          firstAckAt: '2024-05-01T10:00:00.000Z',
          lastAckAt: '2024-05-01T10:01:00.000Z',
          acks: 2,
          declines: { count: 0, lastDeclineAt: null },
          releasedAt: null,
        },
        {
          interface: 'nvtap0002',
          mac: '52:54:00:00:00:02',
          ip: '192.168.100.12',
          firstAckAt: null,
          lastAckAt: null,
          acks: 0,
          declines: { count: 1, lastDeclineAt: '2024-05-01T10:00:00.000Z' },
          releasedAt: null,
        },
      ],
    });
    const byIf = await send({ port }, { path: '/v1/leases?interface=nvtap0002' });
    expect((byIf.json as { items: Array<{ interface: string }> }).items.map((l) => l.interface)).toEqual(['nvtap0002']);
    const byMac = await send({ port }, { path: '/v1/leases?mac=52:54:00:AA:00:01' });
    expect((byMac.json as { items: Array<{ interface: string }> }).items.map((l) => l.interface)).toEqual(['nvtap0001']);
    expect((await send({ port }, { path: '/v1/leases?interface=nope' })).json).toEqual({ items: [] });
  });

  it('rejects malformed filters with a problem naming the parameter', async () => {
    await serve(repo);
    for (const [q, name] of [
      ['mac=52:54:00:00:00', 'mac'],
      ['interface=' + 'x'.repeat(16), 'interface'],
      ['interface=a%2Fb', 'interface'],
      ['vm=x', 'vm'],
    ] as const) {
      const res = await send({ port }, { path: `/v1/leases?${q}` });
      expect(res.status, q).toBe(400);
      expect(res.json, q).toMatchObject({ code: 'VALIDATION_FAILED', errors: [expect.objectContaining({ pointer: `/query/${name}` })] });
    }
  });
});

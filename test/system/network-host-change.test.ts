// A managed bridge network over the uplink that carries the host's address, through the network service on
// the real kernel (host-change.test.ts's topology, nvh* namespaces): a PUT whose bridge cannot forward at
// once (STP on: 2 x 15 s forward delay) loses the gateway and is reverted exactly; the plain move is
// auto-confirmed; with autoConfirm off it waits as `pending` in status until POST .../confirm.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLinks } from '../../daemon/host/links.js';
import { createNftables } from '../../daemon/host/nftables.js';
import { isAppError } from '../../daemon/lib/errors.js';
import { createHostChanges, type HostChanges } from '../../daemon/net/host-change.js';
import { bridgeName } from '../../daemon/net/names.js';
import { createNetHost } from '../../daemon/net/network-host.js';
import { createNetworkService, type NetworkService } from '../../daemon/net/network-service.js';
import { createStore, type Store } from '../../daemon/store/store.js';
import { ipn, netnsUnavailable, ping as pingNs, sh } from './helpers/netns.js';

const why = netnsUnavailable();
const run = randomBytes(3).toString('hex');
let seq = 0;
let HOST = '';
let GW = '';
const BR = bridgeName('vmbr');

// One try: the negative checks must not wait for retries.
const ping = (ns: string, ip: string) => pingNs(ns, ip, 1);
/** Addresses, routes, masters, MTUs and states: what "exactly back" means. */
const snapshot = (ns: string) => ({
  links: (JSON.parse(ipn(ns, '-j', 'addr', 'show')) as Array<Record<string, any>>).map((l) => ({
    name: l.ifname,
    mtu: l.mtu,
    master: l.master,
    up: (l.flags as string[]).includes('UP'),
    inet: (l.addr_info as Array<Record<string, any>>).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
  })),
  routes: JSON.parse(ipn(ns, '-4', '-j', 'route', 'show', 'table', 'main')) as unknown[],
});

describe.skipIf(why !== undefined)(`bridge networks over the host's uplink, with rollback${why ? ` (skipped: ${why})` : ''}`, () => {
  let dir: string;
  let store: Store;
  let hc: HostChanges;
  let svc: NetworkService;

  beforeEach(async () => {
    seq++;
    HOST = `nvh${run}h${seq}`;
    GW = `nvh${run}g${seq}`;
    for (const ns of [HOST, GW]) {
      sh('ip', 'netns', 'add', ns);
      ipn(ns, 'link', 'set', 'dev', 'lo', 'up');
    }
    ipn(HOST, 'link', 'add', 'name', 'up0', 'type', 'veth', 'peer', 'name', 'gw0', 'netns', GW);
    ipn(GW, 'addr', 'add', '10.77.0.1/24', 'dev', 'gw0');
    ipn(GW, 'link', 'set', 'dev', 'gw0', 'up');
    ipn(HOST, 'addr', 'add', '10.77.0.2/24', 'dev', 'up0');
    ipn(HOST, 'link', 'set', 'dev', 'up0', 'up');
    ipn(HOST, 'route', 'add', 'default', 'via', '10.77.0.1');
    ipn(HOST, 'route', 'add', '10.78.0.0/16', 'via', '10.77.0.1', 'metric', '50', 'proto', 'static');
    dir = await mkdtemp(join(tmpdir(), 'nvh-'));
    store = createStore({ stateDir: dir });
    await store.open();
    hc = createHostChanges({ store, stateDir: dir });
    svc = createNetworkService({
      store,
      adapters: { links: createLinks({ netns: HOST }), nft: createNftables({ netns: HOST }), host: createNetHost({ netns: HOST }) },
      hostChanges: hc,
      hostChangeNetns: HOST,
    });
  });

  afterEach(async () => {
    hc?.stop();
    for (const c of (await hc?.list().catch(() => [])) ?? []) {
      try {
        if (c.agentPid !== undefined) process.kill(-c.agentPid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await store?.close();
    for (const ns of [HOST, GW]) {
      try {
        sh('ip', 'netns', 'del', ns);
      } catch {
        /* already gone */
      }
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a PUT that cuts the gateway (STP on) is reverted: addresses and routes are back, nothing is stored', async () => {
    const before = snapshot(HOST);
    expect(ping(HOST, '10.77.0.1')).toBe(true);
    const err = await svc.put('vmbr', { type: 'bridge', bridge: { uplinks: ['up0'], stp: true } }, { rollbackTimeoutMs: 6000 }).catch((e: unknown) => e);
    expect(isAppError(err) && err.code).toBe('HOST_CHANGE_CONFLICT');
    expect((err as { extra?: { hostChange?: unknown } }).extra?.hostChange).toMatchObject({ state: 'reverted', reason: 'probe-failed', probes: [{ name: 'gateway 10.77.0.1', baseline: true, after: false }] });
    expect(snapshot(HOST)).toEqual(before);
    expect(ping(HOST, '10.77.0.1')).toBe(true);
    expect(await svc.list()).toEqual([]);
  });

  it('the plain move is auto-confirmed: the bridge carries the address and routes, status shows the change', async () => {
    const dry = await svc.put('vmbr', { type: 'bridge', bridge: { uplinks: ['up0'] } }, { dryRun: true });
    expect(dry.changes[0]).toMatch(/^! host change with rollback: 10\.77\.0\.2\/24 and routes move from up0/);
    expect(dry.changes).toContain(`~ ip addr add 10.77.0.2/24 dev ${BR}`);
    expect(snapshot(HOST).links.find((l) => l.name === BR)).toBeUndefined();
    const r = await svc.put('vmbr', { type: 'bridge', bridge: { uplinks: ['up0'] } }, { rollbackTimeoutMs: 6000 });
    expect(r.created).toBe(true);
    expect(r.network.status.hostChange).toMatchObject({ state: 'confirmed' });
    expect(r.network.status.ready).toBe(true);
    const snap = snapshot(HOST);
    expect(snap.links.find((l) => l.name === BR)).toMatchObject({ up: true, inet: ['10.77.0.2/24'] });
    expect(snap.links.find((l) => l.name === 'up0')).toMatchObject({ master: BR, inet: [] });
    expect(snap.routes).toContainEqual(expect.objectContaining({ dst: 'default', gateway: '10.77.0.1', dev: BR }));
    expect(snap.routes).toContainEqual(expect.objectContaining({ dst: '10.78.0.0/16', dev: BR, metric: 50 }));
    expect(ping(HOST, '10.77.0.1')).toBe(true);
    // Idempotent once moved: the uplink is a port now, so the same PUT is an ordinary no-op.
    expect(await svc.put('vmbr', { type: 'bridge', bridge: { uplinks: ['up0'] } })).toMatchObject({ changed: false, changes: [] });
  });

  it('with autoConfirm off the change is pending in status until confirm', async () => {
    const r = await svc.put('vmbr', { type: 'bridge', bridge: { uplinks: ['up0'] } }, { autoConfirm: false, rollbackTimeoutMs: 30_000 });
    const pending = r.network.status.hostChange!;
    expect(pending.state).toBe('pending');
    expect(Date.parse(pending.deadline)).toBeGreaterThan(Date.now());
    expect(r.network.status.ready).toBe(false);
    const confirmed = await svc.confirm('vmbr');
    expect(confirmed.status.hostChange).toMatchObject({ id: pending.id, state: 'confirmed' });
    expect(confirmed.status.ready).toBe(true);
    expect(await svc.confirm('vmbr')).toMatchObject({ status: { hostChange: { state: 'confirmed' } } });
    expect(ping(HOST, '10.77.0.1')).toBe(true);
  });
});

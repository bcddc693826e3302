// A managed bridge network over the uplink that carries the host's address, through the network service on
// the real kernel (host-change.test.ts's topology, nvh* namespaces): a PUT whose bridge cannot forward at
// once (STP on: 2 x 15 s forward delay) loses the gateway and is reverted exactly; the plain move is
// auto-confirmed; with autoConfirm off it waits as `pending` in status until POST .../confirm; with the
// applying daemon process SIGKILLed the revert agent alone restores the host; probe URLs count only if
// they answered before the change.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLinks } from '../../daemon/host/links.js';
import { createNftables } from '../../daemon/host/nftables.js';
import { isAppError } from '../../daemon/lib/errors.js';
import { createHostChanges, type HostChanges } from '../../daemon/net/host-change.js';
import { bridgeName } from '../../daemon/net/names.js';
import { createNetHost } from '../../daemon/host/net-host.js';
import { createNetworkService, type NetworkService } from '../../daemon/net/network-service.js';
import { createStore, type Store } from '../../daemon/store/store.js';
import { inNs, ipn, netnsUnavailable, ping as pingNs, sh } from './helpers/netns.js';
import { netnsAdapters, openTempStore } from './helpers/net-service.js';
import { transpileForChild } from './helpers/transpile.js';

const why = netnsUnavailable();
const run = randomBytes(3).toString('hex');
let seq = 0;
let HOST = '';
let GW = '';
const BR = bridgeName('vmbr');

// One try: the negative checks must not wait for retries.
const ping = (ns: string, ip: string) => pingNs(ns, ip, 1);
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return cond();
}
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
    ({ store, dir } = await openTempStore('nvh-'));
    hc = createHostChanges({ store, stateDir: dir });
    svc = createNetworkService({
      store,
      adapters: netnsAdapters(HOST),
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

  it('with the daemon process SIGKILLed right after the apply, the revert agent alone restores addresses and routes', async () => {
    const before = snapshot(HOST);
    const cache = join(process.cwd(), 'node_modules/.cache', `nvt-nethc-${run}`);
    const files = ['daemon/net/network-service.ts', 'daemon/net/host-change.ts', 'daemon/host/links.ts', 'daemon/host/nftables.ts', 'daemon/host/net-host.ts', 'daemon/store/store.ts'];
    await transpileForChild(files, cache);
    // The "daemon": the network service with host changes, in a process of its own that owns the store.
    hc.stop();
    await store.close();
    const m = (f: string) => JSON.stringify(join(cache, f.replace(/\.ts$/, '.js')));
    const script = `
      import { createNetworkService } from ${m(files[0]!)};
      import { createHostChanges } from ${m(files[1]!)};
      import { createLinks } from ${m(files[2]!)};
      import { createNftables } from ${m(files[3]!)};
      import { createNetHost } from ${m(files[4]!)};
      import { createStore } from ${m(files[5]!)};
      const [dir, ns] = process.argv.slice(1);
      const store = createStore({ stateDir: dir });
      await store.open();
      const hostChanges = createHostChanges({ store, stateDir: dir, agentScript: ${JSON.stringify(join(process.cwd(), 'daemon/net/revert-agent.sh'))} });
      const svc = createNetworkService({ store, adapters: { links: createLinks({ netns: ns }), nft: createNftables({ netns: ns }), host: createNetHost({ netns: ns }) }, hostChanges, hostChangeNetns: ns });
      const r = await svc.put('vmbr', { type: 'bridge', bridge: { uplinks: ['up0'] } }, { autoConfirm: false, rollbackTimeoutMs: 4000 });
      const c = await hostChanges.get(r.network.status.hostChange.id);
      process.stdout.write(JSON.stringify({ state: c.state, id: c.id, agentPid: c.agentPid, deadline: c.deadline }) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const child: ChildProcess = spawn(process.execPath, ['--input-type=module', '-e', script, dir, HOST], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      child.on('exit', (code) => reject(new Error(`daemon stand-in exited ${code}: ${err}`)));
    });
    child.kill('SIGKILL');
    const killedAt = Date.now();
    const applied = JSON.parse(line) as { state: string; id: string; agentPid: number; deadline: number };
    expect(applied.state).toBe('pending');
    // Applied: the bridge holds the host's address now, and no process of ours is left to undo it.
    expect(snapshot(HOST).links.find((l) => l.name === BR)).toMatchObject({ inet: ['10.77.0.2/24'] });
    expect(alive(applied.agentPid)).toBe(true);
    expect(await waitFor(() => JSON.stringify(snapshot(HOST)) === JSON.stringify(before), applied.deadline - Date.now() + 4000)).toBe(true);
    const restoredAfter = Date.now() - killedAt;
    console.log(`daemon killed; agent restored the host ${restoredAfter} ms later (deadline was ${applied.deadline - killedAt} ms after the kill)`);
    expect(Date.now()).toBeGreaterThanOrEqual(applied.deadline - 50);
    expect(ping(HOST, '10.77.0.1')).toBe(true);

    // The next daemon start: the change is recorded as reverted by the agent, and the network it made is dropped.
    store = createStore({ stateDir: dir });
    await store.open();
    hc = createHostChanges({ store, stateDir: dir });
    svc = createNetworkService({ store, adapters: netnsAdapters(HOST), hostChanges: hc, hostChangeNetns: HOST });
    expect(await hc.reconcile()).toEqual([expect.objectContaining({ id: applied.id, state: 'reverted', reason: 'agent' })]);
    const [res] = await svc.reconcile();
    expect(res).toMatchObject({ name: 'vmbr', error: expect.stringMatching(/was reverted: the network is dropped/) });
    expect(await svc.list()).toEqual([]);
    expect(snapshot(HOST)).toEqual(before);
    await rm(cache, { recursive: true, force: true });
  }, 30_000);

  it('a probe URL that answered before and not after reverts the change; one that never answered does not count', async () => {
    // 10.79.0.1 (in GW) is reached from the host only through a policy-routing table via up0. The move keeps
    // the main table's routes, but the kernel drops that table's route when up0 loses its address: the
    // gateway still answers, the URL no longer does. Only the URL probe can see this break.
    ipn(GW, 'addr', 'add', '10.79.0.1/32', 'dev', 'lo');
    ipn(GW, 'route', 'add', '10.77.0.0/24', 'dev', 'gw0', 'src', '10.79.0.1', 'table', 'main', 'metric', '10');
    const routeToPeer = () => ipn(HOST, 'route', 'add', '10.79.0.1/32', 'via', '10.77.0.1', 'dev', 'up0', 'table', '100');
    routeToPeer();
    ipn(HOST, 'rule', 'add', 'to', '10.79.0.1', 'lookup', '100', 'priority', '100');
    ipn(HOST, 'rule', 'add', 'to', '10.79.0.1', 'prohibit', 'priority', '101');
    const server = spawn('ip', ['netns', 'exec', GW, process.execPath, '-e', `require('http').createServer((q,s)=>s.end('ok')).listen(8080,'0.0.0.0',()=>console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()));
      const peer = 'http://10.79.0.1:8080/';
      const dead = 'http://10.77.0.1:9/';
      expect(inNs(HOST, process.execPath, '-e', `fetch('${peer}').then(r=>r.text()).then(t=>process.stdout.write(t))`)).toBe('ok');
      const before = snapshot(HOST);

      const err = await svc.put('vmbr', { type: 'bridge', bridge: { uplinks: ['up0'] } }, { rollbackTimeoutMs: 5000, probeUrls: [peer, dead] }).catch((e: unknown) => e);
      expect(isAppError(err) && err.code).toBe('HOST_CHANGE_CONFLICT');
      const probes = (err as { extra: { hostChange: { reason: string; probes: Array<{ name: string; baseline: boolean; after?: boolean }> } } }).extra.hostChange;
      expect(probes.reason).toBe('probe-failed');
      expect(probes.probes).toEqual([
        expect.objectContaining({ name: 'gateway 10.77.0.1', baseline: true, after: true }),
        expect.objectContaining({ name: peer, baseline: true, after: false }),
        expect.objectContaining({ name: dead, baseline: false }),
      ]);
      expect(snapshot(HOST)).toEqual(before);
      expect(await svc.list()).toEqual([]);

      // The table-100 route died with the change; with it back, the same move passes: the URL that never
      // answered (port 9) is not held against it.
      routeToPeer();
      const ok = await svc.put('vmbr', { type: 'bridge', bridge: { uplinks: ['up0'] } }, { rollbackTimeoutMs: 5000, probeUrls: [dead] });
      expect(ok.network.status.hostChange).toMatchObject({ state: 'confirmed' });
    } finally {
      server.kill('SIGKILL');
    }
  }, 30_000);
});

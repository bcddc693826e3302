// Host changes that roll back by themselves, on the real kernel: a "host" namespace whose uplink veth
// carries its address, default and static routes to a "gateway" namespace (nvr* names, fresh per test).
// The vmbr0 move is confirmed by its probes; a change that cuts the gateway is reverted exactly, also when
// the process that applied it is SIGKILLed (the detached revert agent does it); confirm keeps a change.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { transpileForChild } from './helpers/transpile.js';
import { bridgeOverUplinkPlan, type HostOp } from '../../daemon/net/checkpoint.js';
import { createHostChanges, type HostChanges } from '../../daemon/net/host-change.js';
import { createStore, type Store } from '../../daemon/store/store.js';
import { ipn, netnsUnavailable, ping as pingNs, sh } from './helpers/netns.js';

const why = netnsUnavailable();
const run = randomBytes(3).toString('hex');
const BR = 'nvrbr0';
let seq = 0;
let HOST = '';
let GW = '';
const made = new Set<string>();
const cacheDir = join(process.cwd(), 'node_modules/.cache', `nvr-hostchange-${run}`);

// One try: the negative checks must not wait for retries.
const ping = (ns: string, ip: string) => pingNs(ns, ip, 1);
/** What "exactly back" means: IPv4 addresses, routes, master, MTU and state of the uplink, and no bridge. */
const snapshot = (ns: string) => {
  const links = (JSON.parse(ipn(ns, '-j', 'addr', 'show')) as Array<Record<string, any>>).map((l) => ({
    name: l.ifname,
    mtu: l.mtu,
    master: l.master,
    up: (l.flags as string[]).includes('UP'),
    inet: (l.addr_info as Array<Record<string, any>>).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen} brd ${a.broadcast}`),
  }));
  return { links, routes: JSON.parse(ipn(ns, '-4', '-j', 'route', 'show', 'table', 'main')) as unknown[] };
};
const waitFor = async (cond: () => boolean | Promise<boolean>, ms: number) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return cond();
};
const alive = (pid: number | undefined) => {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The bad change: the address moves to a bridge that the uplink never joins, so the gateway is cut off. */
const brokenPlan = (): HostOp[] => [
  { op: 'create-bridge', name: BR },
  { op: 'addr-del', dev: 'up0', cidr: '10.77.0.2/24' },
  { op: 'set', name: BR, up: true },
  { op: 'addr-add', dev: BR, cidr: '10.77.0.2/24', broadcast: '10.77.0.255' },
  { op: 'route-replace', route: { dst: 'default', gateway: '10.77.0.1', dev: BR } },
];

/** host-change.ts and its relative imports, loadable by a plain node child (shared transpile helper). */
async function compileForChild(): Promise<string> {
  await transpileForChild(['daemon/net/host-change.ts'], cacheDir);
  return join(cacheDir, 'daemon/net/host-change.js');
}

describe.skipIf(why !== undefined)(`host changes with rollback${why ? ` (skipped: ${why})` : ''}`, () => {
  let dir: string;
  let store: Store;
  let changes: HostChanges;

  beforeEach(async () => {
    seq++;
    HOST = `nvr${run}h${seq}`;
    GW = `nvr${run}g${seq}`;
    for (const ns of [HOST, GW]) {
      sh('ip', 'netns', 'add', ns);
      made.add(ns);
      ipn(ns, 'link', 'set', 'dev', 'lo', 'up');
    }
    ipn(HOST, 'link', 'add', 'name', 'up0', 'mtu', '1400', 'type', 'veth', 'peer', 'name', 'gw0', 'netns', GW);
    ipn(GW, 'link', 'set', 'dev', 'gw0', 'mtu', '1400');
    ipn(GW, 'addr', 'add', '10.77.0.1/24', 'dev', 'gw0');
    ipn(GW, 'link', 'set', 'dev', 'gw0', 'up');
    ipn(HOST, 'addr', 'add', '10.77.0.2/24', 'brd', '+', 'dev', 'up0');
    ipn(HOST, 'link', 'set', 'dev', 'up0', 'up');
    ipn(HOST, 'route', 'add', 'default', 'via', '10.77.0.1');
    ipn(HOST, 'route', 'add', '10.78.0.0/16', 'via', '10.77.0.1', 'metric', '50', 'proto', 'static');
    dir = await mkdtemp(join(tmpdir(), 'nvr-hc-'));
    store = createStore({ stateDir: dir });
    await store.open();
    changes = createHostChanges({ store, stateDir: dir });
  });

  afterEach(async () => {
    changes?.stop();
    for (const c of (await changes?.list().catch(() => [])) ?? []) if (c.agentPid !== undefined && alive(c.agentPid)) process.kill(-c.agentPid, 'SIGKILL');
    await store?.close();
    for (const ns of [HOST, GW]) {
      try {
        sh('ip', 'netns', 'del', ns);
        made.delete(ns);
      } catch {
        /* afterAll retries */
      }
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  afterAll(async () => {
    for (const ns of made) {
      try {
        sh('ip', 'netns', 'del', ns);
      } catch {
        /* already gone */
      }
    }
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('(a) the vmbr0 move passes its gateway probe and is auto-confirmed; the change stays', async () => {
    expect(ping(HOST, '10.77.0.1')).toBe(true);
    const c = await changes.applyWithRollback({ netns: HOST, links: ['up0', BR], apply: (cp) => bridgeOverUplinkPlan(cp, 'up0', BR), timeoutMs: 5000 });
    expect(c.state).toBe('confirmed');
    expect(c.probes).toEqual([{ name: 'gateway 10.77.0.1', baseline: true, after: true }]);
    const snap = snapshot(HOST);
    expect(snap.links.find((l) => l.name === BR)).toMatchObject({ mtu: 1400, up: true, inet: ['10.77.0.2/24 brd 10.77.0.255'] });
    expect(snap.links.find((l) => l.name === 'up0')).toMatchObject({ master: BR, inet: [] });
    expect(snap.routes).toContainEqual(expect.objectContaining({ dst: 'default', gateway: '10.77.0.1', dev: BR }));
    expect(snap.routes).toContainEqual(expect.objectContaining({ dst: '10.78.0.0/16', dev: BR, protocol: 'static', metric: 50 }));
    expect(await waitFor(() => !alive(c.agentPid), 2000)).toBe(true);
    expect((await changes.get(c.id))?.state).toBe('confirmed');
    expect(ping(HOST, '10.77.0.1')).toBe(true);
  });

  it('(b) a change that cuts the gateway is reverted after its probes and the old state is back exactly', async () => {
    const before = snapshot(HOST);
    const t0 = Date.now();
    const c = await changes.applyWithRollback({ netns: HOST, links: ['up0', BR], apply: brokenPlan(), timeoutMs: 4000 });
    const took = Date.now() - t0;
    expect(c).toMatchObject({ state: 'reverted', reason: 'probe-failed' });
    expect(c.probes).toEqual([{ name: 'gateway 10.77.0.1', baseline: true, after: false }]);
    expect(took).toBeLessThan(4000 + 5000);
    expect(snapshot(HOST)).toEqual(before);
    expect(ping(HOST, '10.77.0.1')).toBe(true);
    expect((await changes.get(c.id))?.state).toBe('reverted');
    expect(await waitFor(() => !alive(c.agentPid), 2000)).toBe(true);
  });

  it('(c) with the applying process SIGKILLed right after apply, the detached agent reverts at the deadline', async () => {
    const before = snapshot(HOST);
    const mod = await compileForChild();
    await store.close();
    const script = `
      import { createHostChanges } from ${JSON.stringify(mod)};
      import { createStore } from ${JSON.stringify(join(cacheDir, 'daemon/store/store.js'))};
      const store = createStore({ stateDir: process.argv[1] });
      await store.open();
      const hc = createHostChanges({ store, stateDir: process.argv[1], agentScript: ${JSON.stringify(join(process.cwd(), 'daemon/net/revert-agent.sh'))} });
      const c = await hc.applyWithRollback({ netns: process.argv[2], links: ['up0', '${BR}'], apply: ${JSON.stringify(brokenPlan())},
        probes: { gateway: false }, autoConfirm: false, timeoutMs: 3000 });
      process.stdout.write(JSON.stringify({ id: c.id, state: c.state, agentPid: c.agentPid, deadline: c.deadline }) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, dir, HOST], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      child.on('exit', (code) => reject(new Error(`child exited ${code}: ${err}`)));
    });
    child.kill('SIGKILL');
    const applied = JSON.parse(line) as { id: string; state: string; agentPid: number; deadline: number };
    expect(applied.state).toBe('pending');
    // The change is in place and the node is cut off: nothing in this process will fix it.
    expect(ping(HOST, '10.77.0.1')).toBe(false);
    expect(alive(applied.agentPid)).toBe(true);
    expect(await waitFor(() => JSON.stringify(snapshot(HOST)) === JSON.stringify(before), applied.deadline - Date.now() + 4000)).toBe(true);
    expect(Date.now()).toBeGreaterThanOrEqual(applied.deadline - 50);
    expect(ping(HOST, '10.77.0.1')).toBe(true);
    expect(await waitFor(() => !alive(applied.agentPid), 2000)).toBe(true);
    expect((await readFile(join(dir, 'host-changes', applied.id, 'reverted'), 'utf8')).trim()).toBe('ok');
    // A restarted daemon finds the change pending, its agent gone, and records what the agent did.
    store = createStore({ stateDir: dir });
    await store.open();
    changes = createHostChanges({ store, stateDir: dir });
    expect((await changes.get(applied.id))?.state).toBe('pending');
    const rec = await changes.reconcile();
    expect(rec).toEqual([expect.objectContaining({ id: applied.id, state: 'reverted', reason: 'agent' })]);
    expect(snapshot(HOST)).toEqual(before);
  });

  it('(d) confirm before the deadline keeps the change, stops the agent, and the deadline passes harmlessly', async () => {
    const c = await changes.applyWithRollback({ netns: HOST, links: ['up0', BR], apply: (cp) => bridgeOverUplinkPlan(cp, 'up0', BR), timeoutMs: 3000, autoConfirm: false });
    expect(c.state).toBe('pending');
    expect(alive(c.agentPid)).toBe(true);
    const after = snapshot(HOST);
    const done = await changes.confirm(c.id);
    expect(done.state).toBe('confirmed');
    expect(await waitFor(() => !alive(c.agentPid), 2000)).toBe(true);
    expect(await changes.confirm(c.id)).toMatchObject({ state: 'confirmed' });
    await new Promise((r) => setTimeout(r, Math.max(0, c.deadline - Date.now()) + 1500));
    expect(snapshot(HOST)).toEqual(after);
    expect(existsSync(join(dir, 'host-changes', c.id, 'reverted'))).toBe(false);
    expect((await changes.get(c.id))?.state).toBe('confirmed');
    expect(ping(HOST, '10.77.0.1')).toBe(true);
  });
});

// NIC plumbing leaves nothing behind on the real kernel, in a private netns: 200 NICs plumbed and removed
// in bulk, then a plumber in a child node process SIGKILLed right after each recorded phase
// (NODEVIRT_TEST_CRASH_AFTER), the sweep's clear error, and the documented recovery converging.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinks, type Links } from '../../daemon/host/links.js';
import { createNftables, type Nftables } from '../../daemon/host/nftables.js';
import { bridgeName, isOurs, tapName } from '../../daemon/net/names.js';
import { createNicPlumber, type NicRecord, type NicSpec } from '../../daemon/net/nic.js';
import { createStore } from '../../daemon/store/store.js';
import { createTestNetns, netnsUnavailable, type TestNetns } from './helpers/netns.js';
import { transpileForChild } from './helpers/transpile.js';

const why = netnsUnavailable();

// The child: one bulk plumb or unplumb through the real adapters, on the store the test opens afterwards.
const CHILD = `
import { createLinks } from './daemon/host/links.js';
import { createNftables } from './daemon/host/nftables.js';
import { createNicPlumber } from './daemon/net/nic.js';
import { createStore } from './daemon/store/store.js';
const { NETNS, STATE, OP, ARG } = process.env;
const store = createStore({ stateDir: STATE });
await store.open();
const plumber = createNicPlumber({ links: createLinks({ netns: NETNS }), nft: createNftables({ netns: NETNS }), records: store.sublevel('nics') });
if (OP === 'plumb') await plumber.plumbMany(JSON.parse(ARG));
else await plumber.unplumbMany(JSON.parse(ARG));
await store.close();
`;

describe.skipIf(why !== undefined)(`nic leaks and kill -9${why ? ` (skipped: ${why})` : ''}`, () => {
  let ns: TestNetns;
  let links: Links;
  let nft: Nftables;
  let bridge: string;
  let childDir: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    ns = createTestNetns('nicleak');
    links = createLinks({ netns: ns.name });
    nft = createNftables({ netns: ns.name });
    bridge = bridgeName(`${ns.run}/leak`);
    await links.apply([{ op: 'create-bridge', name: bridge, mtu: 1400 }, { op: 'set', name: bridge, up: true }]);
    childDir = await transpileForChild(['daemon/net/nic.ts', 'daemon/host/links.ts', 'daemon/host/nftables.ts', 'daemon/store/store.ts'], join(process.cwd(), 'node_modules/.cache', `nvt-nicleak-${ns.run}`));
    await writeFile(join(childDir, 'child.mjs'), CHILD);
  }, 60_000);
  afterAll(async () => {
    ns?.remove();
    if (childDir) await rm(childDir, { recursive: true, force: true });
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  const spec = (round: string, i: number): NicSpec => ({
    vmId: `${ns.run}-${round}-${i}`,
    nicId: 'nic0',
    mac: `0e:00:00:01:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
    ipv4: `10.70.${(i + 2) >> 8}.${(i + 2) & 255}`,
    mtu: 1400,
    // Every fifth NIC routed (inet + arp tables), the rest bridged.
    ...(i % 5 === 4 ? {} : { bridge }),
  });
  const tapsOf = (specs: NicSpec[]) => specs.map((s) => tapName(s.vmId, s.nicId));
  const ids = (specs: NicSpec[]) => specs.map((s) => `${s.vmId}/${s.nicId}`);

  /** Everything of ours in the netns (links but the bridge, addresses, routes, guard chains and elements). */
  const snapshot = () => {
    const ourLinks = (JSON.parse(ns.exec('ip', ['-j', 'link', 'show'])) as Array<{ ifname: string }>).map((l) => l.ifname).filter((n) => isOurs(n) && n !== bridge);
    // The bridge's own IPv6 link-local address is the only one expected (it is the network's, not a NIC's).
    const addrs = (JSON.parse(ns.exec('ip', ['-j', 'addr', 'show'])) as Array<{ ifname: string; addr_info: Array<{ local: string; scope: string }> }>)
      .flatMap((l) => l.addr_info.map((a) => ({ ifname: l.ifname, ...a })))
      .filter((a) => a.ifname !== 'lo' && !(a.ifname === bridge && a.scope === 'link'))
      .map((a) => `${a.ifname} ${a.local}`);
    const routes = ns.exec('ip', ['route', 'show', 'table', 'all']).split('\n').filter((l) => /nvt/.test(l));
    const ruleset = ns.exec('nft', ['list', 'ruleset']);
    const chains = [...ruleset.matchAll(/nvt[a-z2-7]{10}/g)].map((m) => m[0]);
    // Our guard tables go with the last NIC: "delete leaves nothing" includes them.
    const tables = ns.exec('nft', ['list', 'tables']).split('\n').filter((l) => / nodevirt$/.test(l));
    return { ourLinks, addrs, routes, chains, tables };
  };
  const clean = { ourLinks: [], addrs: [], routes: [], chains: [], tables: [] };
  const hostLinks = () => new Set((JSON.parse(spawnSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' }).stdout) as Array<{ ifname: string }>).map((l) => l.ifname));

  const withPlumber = async <T>(state: string, fn: (p: ReturnType<typeof createNicPlumber>, records: () => Promise<NicRecord[]>) => Promise<T>) => {
    const store = createStore({ stateDir: state });
    await store.open();
    try {
      const records = store.sublevel<NicRecord>('nics');
      return await fn(createNicPlumber({ links, nft, records }), async () => (await records.list()).map(([, r]) => r));
    } finally {
      await store.close();
    }
  };

  it('plumbs and removes 200 NICs in bulk with zero leftover links, addresses, routes, chains and records', async () => {
    const state = await mkdtemp(join(tmpdir(), 'nvt-nicleak-'));
    dirs.push(state);
    expect(snapshot()).toEqual(clean);
    const specs = Array.from({ length: 200 }, (_, i) => spec('bulk', i));
    await withPlumber(state, async (p, records) => {
      const nics = await p.plumbMany(specs);
      const during = snapshot();
      expect(during.tables.sort()).toEqual(['table arp nodevirt', 'table bridge nodevirt', 'table inet nodevirt']);
      expect(during.ourLinks.sort()).toEqual(nics.map((n) => n.tap).sort());
      expect(new Set(during.chains)).toEqual(new Set(nics.map((n) => n.tap)));
      expect((await records()).every((r) => r.phase === 'finished')).toBe(true);
      expect(await p.unplumbMany(ids(specs))).toEqual(Array(200).fill(true));
      expect(snapshot()).toEqual(clean);
      expect(await records()).toEqual([]);
      expect(await p.sweep({ alsoOwned: [bridge] })).toEqual({ orphanLinks: [], orphanChains: [], unfinished: [] });
    });
  }, 120_000);

  const runChild = (state: string, op: 'plumb' | 'unplumb', arg: unknown, crashAfter: string) =>
    spawnSync(process.execPath, [join(childDir, 'child.mjs')], {
      env: { ...process.env, NETNS: ns.name, STATE: state, OP: op, ARG: JSON.stringify(arg), NODEVIRT_TEST_CRASH_AFTER: crashAfter },
      encoding: 'utf8',
      timeout: 60_000,
    });

  for (const [point, recovery] of [
    ['pending', 'unplumb'],
    ['started:tap', 'plumb'],
    ['started:link', 'unplumb'],
    ['started:guard', 'plumb'],
    ['finished', 'unplumb'],
    ['removing', 'unplumb'],
  ] as const) {
    it(`kill -9 after "${point}": the sweep reports it clearly and ${recovery === 'plumb' ? 're-plumb' : 'unplumb'} converges with nothing leaked`, async () => {
      const state = await mkdtemp(join(tmpdir(), 'nvt-nicleak-'));
      dirs.push(state);
      const round = point.replace(':', '');
      const specs = Array.from({ length: 5 }, (_, i) => spec(round, i));
      if (point === 'removing') await withPlumber(state, (p) => p.plumbMany(specs));
      const r = point === 'removing' ? runChild(state, 'unplumb', ids(specs), point) : runChild(state, 'plumb', specs, point);
      expect({ signal: r.signal, stderr: r.stderr }).toEqual({ signal: 'SIGKILL', stderr: '' });

      await withPlumber(state, async (p, records) => {
        const report = await p.sweep({ alsoOwned: [bridge] });
        expect(report.orphanLinks).toEqual([]);
        expect(report.orphanChains).toEqual([]);
        if (point === 'finished') {
          // Killed after the last record: nothing is half done.
          expect(report.unfinished).toEqual([]);
        } else {
          const [phase, step] = point.split(':');
          expect(report.unfinished.map((u) => [u.id, u.phase, u.step])).toEqual(ids(specs).map((id) => [id, phase, step]).sort());
          for (const u of report.unfinished) expect(u.error).toMatch(new RegExp(`^NIC ${u.id} was interrupted \\(${phase}${step ? ` at step ${step}` : ''}\\); .*: (unplumb|plumb)`));
        }
        if (recovery === 'plumb') {
          const nics = await p.plumbMany(specs);
          for (const n of nics) expect(await links.get(n.tap)).toMatchObject({ up: true, mtu: 1400 });
          expect((await p.sweep({ alsoOwned: [bridge] })).unfinished).toEqual([]);
        }
        await p.unplumbMany(ids(specs));
        expect(snapshot()).toEqual(clean);
        expect(await records()).toEqual([]);
      });
      // A tap is made in the child's namespace and moved in: none may stay behind on the host.
      const host = hostLinks();
      expect(tapsOf(specs).filter((t) => host.has(t))).toEqual([]);
    }, 60_000);
  }
});

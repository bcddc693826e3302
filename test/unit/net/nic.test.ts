// NIC plumbing over the stateful fakes and a real store: the composed steps, phase records, revert on a
// failure at every step, bulk plumb/unplumb (one ip -batch, one nft -f), crash leftovers, sweep, names.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeLinks, type FakeLinks } from '../../../daemon/host/links-fake.js';
import type { Links } from '../../../daemon/host/links.js';
import { createFakeNftables, type FakeNftables } from '../../../daemon/host/nftables-fake.js';
import { isAppError } from '../../../daemon/lib/errors.js';
import { bridgeName, tapName } from '../../../daemon/net/names.js';
import { parseGuardTable, renderGuardAdd, renderGuardRemove, type NftFamily } from '../../../daemon/net/nft-rules.js';
import { createNicPlumber, type DhcpPort, type NicRecord, type NicSpec, type PlumbedNic } from '../../../daemon/net/nic.js';
import { createStore, type Store } from '../../../daemon/store/store.js';

let dir: string;
let store: Store;
let space = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-nic-'));
  store = createStore({ stateDir: dir });
  await store.open();
});
afterAll(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const BR = bridgeName('net1');

function recordingDhcp() {
  const attached = new Map<string, PlumbedNic>();
  const calls: string[] = [];
  let failAttach = false;
  const port: DhcpPort = {
    attach(nic) {
      calls.push(`attach ${nic.tap}`);
      if (failAttach) throw new Error('dhcp attach failed');
      attached.set(nic.tap, nic);
    },
    detach(tap) {
      calls.push(`detach ${tap}`);
      attached.delete(tap);
    },
  };
  return { port, attached, calls, failAttachNext: (v: boolean) => (failAttach = v) };
}

function setup(opts: { links?: Links } = {}) {
  const links = createFakeLinks();
  links.seed({ name: 'eth0', kind: undefined, up: true });
  links.seed({ name: BR, kind: 'bridge', up: true });
  const nft = createFakeNftables();
  const records = store.sublevel<NicRecord>(`nics${space++}`);
  const dhcp = recordingDhcp();
  const plumber = createNicPlumber({ links: opts.links ?? links, nft, records, dhcp: dhcp.port });
  return { links, nft, records, dhcp, plumber };
}

const spec = (n: number, extra: Partial<NicSpec> = {}): NicSpec => ({
  vmId: 'vm1',
  nicId: `nic${n}`,
  mac: `0e:00:00:00:00:${(n + 1).toString(16).padStart(2, '0')}`,
  ipv4: `10.0.0.${n + 2}`,
  mtu: 1450,
  bridge: BR,
  ...extra,
});

async function chains(nft: FakeNftables, family: NftFamily) {
  const json = await nft.listTable(family, 'nodevirt');
  return json === undefined ? new Map<string, number>() : parseGuardTable(family, json).chains;
}

async function nothingLeft(links: FakeLinks, nft: FakeNftables, tap: string) {
  expect(await links.get(tap)).toBeUndefined();
  for (const f of ['bridge', 'inet', 'arp'] as const) expect((await chains(nft, f)).has(tap)).toBe(false);
}

describe('plumb', () => {
  it('describes the plan: MTU, bridge port and up in one link op, then the guard batch', () => {
    const { plumber } = setup();
    const tap = tapName('vm1', 'nic0');
    const plan = plumber.describe(spec(0), tap);
    expect(plan.linkOps).toEqual([{ op: 'set', name: tap, mtu: 1450, master: BR, up: true }]);
    expect(plumber.describe(spec(0, { bridge: undefined }), tap).linkOps).toEqual([{ op: 'set', name: tap, mtu: 1450, up: true }]);
    expect(plan.guard).toEqual({ ifname: tap, mode: 'bridge', mac: '0e:00:00:00:00:01', ipv4: '10.0.0.2' });
    expect(plan.nftScript).toBe(renderGuardAdd([plan.guard], { fresh: true }));
    expect(plumber.describe(spec(0, { bridge: undefined, antiSpoof: false }), tap).guard).toMatchObject({ mode: 'inet', antiSpoof: false });
  });

  it('plumbs a bridged NIC: tap, MTU, master, up, guard chain, DHCP, record finished', async () => {
    const { plumber, links, nft, dhcp, records } = setup();
    const nic = await plumber.plumb(spec(0));
    expect(nic.tap).toBe(tapName('vm1', 'nic0'));
    expect(await links.get(nic.tap)).toMatchObject({ kind: 'tap', mtu: 1450, master: BR, up: true });
    expect((await chains(nft, 'bridge')).get(nic.tap)).toBe(10);
    expect(dhcp.attached.get(nic.tap)).toEqual(nic);
    expect(await records.get('vm1/nic0')).toMatchObject({ phase: 'finished', tap: nic.tap });
    expect(links.log.slice(-2)).toEqual([`createTap ${nic.tap}`, `link set dev ${nic.tap} mtu 1450 master ${BR} up`]);
  });

  it('plumbs a routed NIC into the inet and arp tables', async () => {
    const { plumber, links, nft } = setup();
    const nic = await plumber.plumb(spec(1, { bridge: undefined }));
    expect(await links.get(nic.tap)).toMatchObject({ master: undefined, up: true });
    expect((await chains(nft, 'inet')).get(nic.tap)).toBe(8);
    expect((await chains(nft, 'arp')).get(nic.tap)).toBe(2);
  });

  it('is idempotent for the same spec and refuses another spec with NIC_EXISTS', async () => {
    const { plumber, nft } = setup();
    const a = await plumber.plumb(spec(0));
    const batches = nft.batches.length;
    expect(await plumber.plumb(spec(0, { mac: '0E:00:00:00:00:01' }))).toEqual(a);
    expect(nft.batches.length).toBe(batches);
    const err = await plumber.plumb(spec(0, { mtu: 9000 })).catch((e: unknown) => e);
    expect(isAppError(err, 'NIC_EXISTS')).toBe(true);
  });

  it('refuses a bad MAC before touching anything', async () => {
    const { plumber, links, records } = setup();
    const before = links.log.length;
    expect(isAppError(await plumber.plumb(spec(0, { mac: 'ff:ff:ff:ff:ff:ff' })).catch((e: unknown) => e), 'MAC_INVALID')).toBe(true);
    expect(links.log.length).toBe(before);
    expect(await records.list()).toEqual([]);
  });

  for (const [where, inject] of [
    ['tap creation', (l: FakeLinks) => l.failOn((s) => s.startsWith('createTap'))],
    ['MTU', (l: FakeLinks) => l.failOn((s) => s.includes(' mtu '))],
    ['bridge attach', (l: FakeLinks) => l.failOn((s) => s.includes(' master '))],
    ['the link batch', (l: FakeLinks) => l.failOn((s) => s.endsWith(' up'))],
  ] as const) {
    it(`reverts everything when ${where} fails`, async () => {
      const { plumber, links, nft, records, dhcp } = setup();
      inject(links);
      const err = await plumber.plumb(spec(0)).catch((e: unknown) => e);
      expect(isAppError(err, 'HOST_ERROR')).toBe(true);
      links.failOn(undefined);
      await nothingLeft(links, nft, tapName('vm1', 'nic0'));
      expect(await records.list()).toEqual([]);
      expect(dhcp.attached.size).toBe(0);
    });
  }

  it('reverts the guard and the tap when nft fails, and when the DHCP attach fails', async () => {
    const { plumber, links, nft, records, dhcp } = setup();
    nft.failOn((s) => s.includes('add rule'));
    expect(isAppError(await plumber.plumb(spec(0)).catch((e: unknown) => e), 'HOST_ERROR')).toBe(true);
    nft.failOn(undefined);
    await nothingLeft(links, nft, tapName('vm1', 'nic0'));
    dhcp.failAttachNext(true);
    expect(await plumber.plumb(spec(0)).catch((e: unknown) => (e as Error).message)).toBe('dhcp attach failed');
    await nothingLeft(links, nft, tapName('vm1', 'nic0'));
    expect(dhcp.calls.slice(-2)).toEqual([`attach ${tapName('vm1', 'nic0')}`, `detach ${tapName('vm1', 'nic0')}`]);
    expect(await records.list()).toEqual([]);
  });

  it('keeps the record unfinished when the undo fails too, and the sweep reports it', async () => {
    const { plumber, links, nft } = setup();
    nft.failOn(() => true);
    links.failOn((s) => s.startsWith('deleteTap'));
    await plumber.plumb(spec(0)).catch(() => undefined);
    nft.failOn(undefined);
    links.failOn(undefined);
    const report = await plumber.sweep({ alsoOwned: [BR] });
    expect(report.unfinished.map((r) => [r.id, r.phase, r.step])).toEqual([['vm1/nic0', 'started', 'guard']]);
    expect(report.orphanLinks).toEqual([]);
    // Plumbing again cleans the leftovers by name and finishes.
    expect((await plumber.plumb(spec(0))).tap).toBe(tapName('vm1', 'nic0'));
    expect((await plumber.sweep({ alsoOwned: [BR] })).unfinished).toEqual([]);
  });

  it('plumbs many NICs concurrently into distinct taps', async () => {
    const { plumber, links } = setup();
    const nics = await Promise.all(Array.from({ length: 40 }, (_, i) => plumber.plumb(spec(i))));
    expect(new Set(nics.map((n) => n.tap)).size).toBe(40);
    for (const n of nics) expect((await links.get(n.tap))?.up).toBe(true);
  });

  it('derives another tap name when the first is held by another NIC record', async () => {
    const { plumber, records } = setup();
    const taken = tapName('vm1', 'nic0');
    await records.put('other/nic', { id: 'other/nic', tap: taken, spec: spec(9, { vmId: 'other', nicId: 'nic' }), phase: 'finished' });
    expect((await plumber.plumb(spec(0))).tap).toBe(tapName('vm1', 'nic0', 1));
  });
});

describe('unplumb', () => {
  it('removes tap, guard, DHCP server and record; unknown ids are false', async () => {
    const { plumber, links, nft, dhcp, records } = setup();
    const a = await plumber.plumb(spec(0));
    const b = await plumber.plumb(spec(1));
    expect(await plumber.unplumb(a.id)).toBe(true);
    await nothingLeft(links, nft, a.tap);
    expect(dhcp.attached.has(a.tap)).toBe(false);
    expect(await records.get(a.id)).toBeUndefined();
    expect((await chains(nft, 'bridge')).get(b.tap)).toBe(10);
    expect(await links.get(BR)).toBeDefined();
    expect(await plumber.unplumb(a.id)).toBe(false);
    // The name is free again for a later plumb.
    expect((await plumber.plumb(spec(0))).tap).toBe(a.tap);
  });

  it('keeps the record in removing when a step fails, and finishes on retry', async () => {
    const { plumber, links, records } = setup();
    const a = await plumber.plumb(spec(0));
    links.failOn((s) => s.startsWith('link del group'));
    expect(isAppError(await plumber.unplumb(a.id).catch((e: unknown) => e), 'HOST_ERROR')).toBe(true);
    expect(await records.get(a.id)).toMatchObject({ phase: 'removing', error: expect.stringMatching(/^unplumb failed: .*injected failure: link del group/) });
    links.failOn(undefined);
    expect(await plumber.unplumb(a.id)).toBe(true);
    expect(await links.get(a.tap)).toBeUndefined();
  });
});

describe('crash and sweep', () => {
  it('a crash after "started" leaves a record the next process reports and repairs', async () => {
    const base = setup();
    // The first process dies while the link batch runs: the tap exists, nothing after it does.
    let reached!: () => void;
    const atLinkStep = new Promise<void>((r) => (reached = r));
    const dying: Links = {
      ...base.links,
      apply: () => {
        reached();
        return new Promise<void>(() => undefined);
      },
    };
    const first = createNicPlumber({ links: dying, nft: base.nft, records: base.records });
    void first.plumb(spec(0));
    await atLinkStep;
    const tap = tapName('vm1', 'nic0');
    expect(await base.links.get(tap)).toBeDefined();

    const second = createNicPlumber({ links: base.links, nft: base.nft, records: base.records });
    const report = await second.sweep({ alsoOwned: [BR] });
    expect(report.unfinished.map((r) => [r.phase, r.step, r.tap])).toEqual([['started', 'link', tap]]);
    expect(report.orphanLinks).toEqual([]);
    expect((await second.plumb(spec(0))).tap).toBe(tap);
    expect(await base.links.get(tap)).toMatchObject({ master: BR, up: true });
  });

  it('reports and removes our kernel objects that no record owns, and nothing else', async () => {
    const { plumber, links, nft } = setup();
    const kept = await plumber.plumb(spec(0));
    const orphanTap = tapName('gone', 'nic0');
    const orphanChainOnly = tapName('gone', 'nic1');
    await links.createTap(orphanTap);
    await links.apply([{ op: 'create-veth', name: 'nvvaaaaaaaaaa', peer: 'nvwaaaaaaaaaa' }]);
    links.seed({ name: 'vnet0', kind: 'tap' });
    await nft.apply(renderGuardAdd([{ ifname: orphanTap, mode: 'bridge', mac: '0e:00:00:00:00:99' }, { ifname: orphanChainOnly, mode: 'inet', mac: '0e:00:00:00:00:98' }]));

    const report = await plumber.sweep({ alsoOwned: [BR] });
    expect(report.orphanLinks.map((l) => l.name).sort()).toEqual([orphanTap, 'nvvaaaaaaaaaa', 'nvwaaaaaaaaaa'].sort());
    expect(report.orphanChains).toEqual([
      { family: 'bridge', chain: orphanTap },
      { family: 'inet', chain: orphanChainOnly },
      { family: 'arp', chain: orphanChainOnly },
    ]);
    expect(report.unfinished).toEqual([]);
    // Without alsoOwned the network's bridge is reported too: the caller says what else is owned.
    expect((await plumber.sweep()).orphanLinks.map((l) => l.name)).toContain(BR);

    await plumber.removeOrphans(report);
    const after = await plumber.sweep({ alsoOwned: [BR] });
    expect(after).toEqual({ orphanLinks: [], orphanChains: [], unfinished: [] });
    expect(await links.get('vnet0')).toBeDefined();
    expect(await links.get('eth0')).toBeDefined();
    expect((await chains(nft, 'bridge')).get(kept.tap)).toBe(10);
    // The orphan was the only chain in inet and arp: those tables went with it.
    expect(await nft.listTable('inet', 'nodevirt')).toBeUndefined();
    expect(await nft.listTable('arp', 'nodevirt')).toBeUndefined();
  });

  it('sweep removes a guard table a crash left with no chain', async () => {
    const { plumber, nft } = setup();
    const t = tapName('crashed', 'nic0');
    // Plumbed and unplumbed by a process that died before pruning: the table and its map are left.
    await nft.apply(renderGuardAdd([{ ifname: t, mode: 'bridge', mac: '0e:00:00:00:00:97' }]));
    await nft.apply(renderGuardRemove([t], ['bridge']));
    expect(await nft.listTable('bridge', 'nodevirt')).toBeDefined();
    expect(await plumber.sweep({ alsoOwned: [BR] })).toEqual({ orphanLinks: [], orphanChains: [], unfinished: [] });
    expect(await nft.listTable('bridge', 'nodevirt')).toBeUndefined();
  });
});

describe('guard tables', () => {
  const tables = async (nft: FakeNftables) => {
    const out: string[] = [];
    for (const f of ['bridge', 'inet', 'arp'] as const) if ((await nft.listTable(f, 'nodevirt')) !== undefined) out.push(f);
    return out;
  };

  it('go with the last NIC of their family, and a bridged NIC never creates inet or arp tables', async () => {
    const { plumber, nft } = setup();
    const a = await plumber.plumb(spec(0));
    const b = await plumber.plumb(spec(1));
    expect(await tables(nft)).toEqual(['bridge']);
    await plumber.unplumb(a.id);
    expect(await tables(nft)).toEqual(['bridge']);
    await plumber.unplumb(b.id);
    expect(await tables(nft)).toEqual([]);

    const r = await plumber.plumb(spec(2, { bridge: undefined }));
    const br = await plumber.plumb(spec(3));
    expect(await tables(nft)).toEqual(['bridge', 'inet', 'arp']);
    await plumber.unplumb(r.id);
    expect(await tables(nft)).toEqual(['bridge']);
    await plumber.unplumb(br.id);
    expect(await tables(nft)).toEqual([]);
  });

  it('stay while another plumber in the same namespace has a chain in them', async () => {
    const one = setup();
    const other = createNicPlumber({ links: one.links, nft: one.nft, records: store.sublevel<NicRecord>(`nics${space++}`) });
    const mine = await one.plumber.plumb(spec(0));
    const theirs = await other.plumb(spec(1));
    await one.plumber.unplumb(mine.id);
    expect((await chains(one.nft, 'bridge')).get(theirs.tap)).toBe(10);
    await other.unplumb(theirs.id);
    expect(await tables(one.nft)).toEqual([]);
  });

  it('a plumb racing the removal of the last NIC keeps its chain', async () => {
    const { plumber, nft } = setup();
    const a = await plumber.plumb(spec(0));
    const [, b] = await Promise.all([plumber.unplumb(a.id), plumber.plumb(spec(1))]);
    expect((await chains(nft, 'bridge')).get(b.tap)).toBe(10);
    await plumber.unplumb(b.id);
    expect(await tables(nft)).toEqual([]);
  });

  it('an opted-out NIC has no table to remove', async () => {
    const { plumber, nft } = setup();
    const a = await plumber.plumb(spec(0, { antiSpoof: false, serverGuard: false }));
    expect(await tables(nft)).toEqual([]);
    await plumber.unplumb(a.id);
    expect(await tables(nft)).toEqual([]);
  });
});

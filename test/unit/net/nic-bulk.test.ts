// Bulk NIC plumbing over the stateful fakes and a real store: one ip -batch and one nft -f per batch,
// all-or-nothing on a failure half-way (nothing left, the error names step and NIC), undo failures kept
// on the records, the sweep's clear error for an interrupted NIC, and bulk removal through one link group.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeLinks, type FakeLinks } from '../../../daemon/host/links-fake.js';
import { createFakeNftables, type FakeNftables } from '../../../daemon/host/nftables-fake.js';
import { AppError, isAppError } from '../../../daemon/lib/errors.js';
import { bridgeName, isOurs, tapName } from '../../../daemon/net/names.js';
import { parseGuardTable } from '../../../daemon/net/nft-rules.js';
import { createNicPlumber, type DhcpPort, type NicRecord, type NicSpec } from '../../../daemon/net/nic.js';
import { createStore, type Store } from '../../../daemon/store/store.js';

let dir: string;
let store: Store;
let space = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-nic-bulk-'));
  store = createStore({ stateDir: dir });
  await store.open();
});
afterAll(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const BR = bridgeName('bulk');

function setup() {
  const links = createFakeLinks();
  links.seed({ name: 'eth0', kind: undefined, up: true });
  links.seed({ name: BR, kind: 'bridge', up: true });
  const nft = createFakeNftables();
  const records = store.sublevel<NicRecord>(`bulk${space++}`);
  const attached = new Set<string>();
  let failAttach: string | undefined;
  const dhcp: DhcpPort = {
    attach(nic) {
      if (nic.id === failAttach) throw new Error(`dhcp attach ${nic.id} failed`);
      attached.add(nic.tap);
    },
    detach(tap) {
      attached.delete(tap);
    },
  };
  const plumber = createNicPlumber({ links, nft, records, dhcp });
  return { links, nft, records, attached, plumber, failAttachFor: (id: string | undefined) => (failAttach = id) };
}

const spec = (n: number, extra: Partial<NicSpec> = {}): NicSpec => ({
  vmId: `vm${n}`,
  nicId: 'nic0',
  mac: `0e:00:00:00:01:${(n + 1).toString(16).padStart(2, '0')}`,
  ipv4: `10.1.0.${n + 2}`,
  mtu: 1450,
  bridge: BR,
  ...extra,
});
const specs = (n: number) => Array.from({ length: n }, (_, i) => spec(i));

/** Our links (but the bridge), guard chains in any family, records: all must be empty after a revert. */
async function leftovers(links: FakeLinks, nft: FakeNftables, records?: { list(): Promise<unknown[]> }) {
  const taps = (await links.list(isOurs)).map((l) => l.name).filter((n) => n !== BR);
  const chains: string[] = [];
  for (const f of ['bridge', 'inet', 'arp'] as const) {
    const json = await nft.listTable(f, 'nodevirt');
    if (json !== undefined) chains.push(...parseGuardTable(f, json).chains.keys(), ...parseGuardTable(f, json).ports);
  }
  return { taps, chains, records: records ? (await records.list()).length : 0 };
}

describe('plumbMany', () => {
  it('plumbs a batch with one ip -batch and one nft -f, and records every NIC finished', async () => {
    const { plumber, links, nft, records, attached } = setup();
    const logBefore = links.log.length;
    const nics = await plumber.plumbMany([...specs(5), spec(5, { bridge: undefined })]);
    expect(nics.map((n) => n.id)).toEqual(['vm0/nic0', 'vm1/nic0', 'vm2/nic0', 'vm3/nic0', 'vm4/nic0', 'vm5/nic0']);
    const log = links.log.slice(logBefore);
    // Taps natively, then one batch with one line per NIC.
    expect(log.filter((l) => l.startsWith('createTap'))).toHaveLength(6);
    expect(log.slice(6)).toEqual(nics.map((n) => `link set dev ${n.tap} mtu 1450${n.bridge ? ` master ${BR}` : ''} up`));
    expect(nft.batches).toHaveLength(1);
    for (const n of nics) expect(await links.get(n.tap)).toMatchObject({ kind: 'tap', mtu: 1450, up: true, master: n.bridge });
    expect(parseGuardTable('bridge', (await nft.listTable('bridge', 'nodevirt'))!).chains.size).toBe(5);
    expect(parseGuardTable('inet', (await nft.listTable('inet', 'nodevirt'))!).chains.has(nics[5]!.tap)).toBe(true);
    expect(attached.size).toBe(6);
    expect((await records.list()).map(([, r]) => r.phase)).toEqual(Array(6).fill('finished'));
  });

  it('returns finished NICs as they are and plumbs only the new ones; refuses a NIC twice in one batch', async () => {
    const { plumber, nft } = setup();
    const [a] = await plumber.plumbMany([spec(0)]);
    const both = await plumber.plumbMany([spec(0), spec(1)]);
    expect(both[0]).toEqual(a);
    expect(nft.batches).toHaveLength(2);
    expect(nft.batches[1]).not.toContain(a!.tap);
    expect(isAppError(await plumber.plumbMany([spec(2), spec(2)]).catch((e: unknown) => e), 'VALIDATION_FAILED')).toBe(true);
    expect(isAppError(await plumber.plumbMany([spec(3), spec(0, { mtu: 9000 })]).catch((e: unknown) => e), 'NIC_EXISTS')).toBe(true);
    expect(await plumber.get('vm3/nic0')).toBeUndefined();
  });

  for (const [where, step, failing, inject] of [
    ['tap creation of the 3rd NIC', 'tap', 'vm2/nic0', (t: ReturnType<typeof setup>) => t.links.failOn((s) => s.startsWith('createTap') && s.includes(tapName('vm2', 'nic0')))],
    ['the link batch at the 4th NIC', 'link', 'vm3/nic0', (t: ReturnType<typeof setup>) => t.links.failOn((s) => s.includes(tapName('vm3', 'nic0')) && s.endsWith(' up'))],
    ['the guard batch', 'guard', undefined, (t: ReturnType<typeof setup>) => t.nft.failOn((s) => s.includes('add rule'))],
    ['the DHCP attach of the 5th NIC', 'dhcp', 'vm4/nic0', (t: ReturnType<typeof setup>) => t.failAttachFor('vm4/nic0')],
  ] as const) {
    it(`a failure half-way (${where}) leaves nothing and names the step and NIC`, async () => {
      const t = setup();
      inject(t);
      const err = await t.plumber.plumbMany(specs(6)).catch((e: unknown) => e);
      expect(isAppError(err, 'HOST_ERROR')).toBe(true);
      const e = err as AppError;
      expect(e.message).toMatch(new RegExp(`^plumb failed at step ${step}${failing ? ` \\(NIC ${failing}\\)` : ''}: `));
      expect(e.extra).toMatchObject({ failed: { id: failing, step }, undoErrors: [] });
      t.links.failOn(undefined);
      t.nft.failOn(undefined);
      expect(await leftovers(t.links, t.nft, { list: () => t.records.list() })).toEqual({ taps: [], chains: [], records: 0 });
      expect(t.attached.size).toBe(0);
      // The names are free again: the same batch plumbs once the fault is gone.
      t.failAttachFor(undefined);
      expect(await t.plumber.plumbMany(specs(6))).toHaveLength(6);
    });
  }

  it('keeps the records unfinished with the error when the undo fails too, and the sweep reports it', async () => {
    const { plumber, links, nft, records } = setup();
    nft.failOn(() => true);
    links.failOn((s) => s.startsWith('link del group'));
    const err = (await plumber.plumbMany(specs(3)).catch((e: unknown) => e)) as AppError;
    expect((err.extra?.undoErrors as string[]).join()).toMatch(/injected failure: link del group/);
    links.failOn(undefined);
    nft.failOn(undefined);
    const recs = (await records.list()).map(([, r]) => r);
    expect(recs).toHaveLength(3);
    for (const r of recs) {
      expect(r).toMatchObject({ phase: 'started', step: 'guard' });
      expect(r.error).toMatch(/^plumb failed at step guard: .*; undo failed: .*link del group/);
    }
    const report = await plumber.sweep({ alsoOwned: [BR] });
    expect(report.unfinished.map((r) => r.error)).toEqual(recs.map((r) => r.error));
    // The documented recovery: unplumb converges.
    expect(await plumber.unplumbMany(recs.map((r) => r.id))).toEqual([true, true, true]);
    expect(await leftovers(links, nft, { list: () => records.list() })).toEqual({ taps: [], chains: [], records: 0 });
  });
});

describe('unplumbMany', () => {
  it('removes a batch with one nft -f and one link group delete; unknown ids are false', async () => {
    const { plumber, links, nft, records, attached } = setup();
    const nics = await plumber.plumbMany(specs(4));
    const logBefore = links.log.length;
    const batches = nft.batches.length;
    expect(await plumber.unplumbMany([...nics.map((n) => n.id), 'nope/nic0'])).toEqual([true, true, true, true, false]);
    const log = links.log.slice(logBefore);
    expect(log.slice(0, 4)).toEqual(nics.map((n) => expect.stringMatching(new RegExp(`^link set dev ${n.tap} group \\d+$`))));
    expect(log.slice(4)).toEqual([expect.stringMatching(/^link del group \d+$/)]);
    // One batch for the chains, one that deletes the guard table the last NIC left empty.
    expect(nft.batches.length).toBe(batches + 2);
    expect(nft.batches.at(-1)).toBe('add table bridge nodevirt\ndelete table bridge nodevirt\n');
    expect(attached.size).toBe(0);
    expect(await leftovers(links, nft, { list: () => records.list() })).toEqual({ taps: [], chains: [], records: 0 });
    expect(await links.get(BR)).toBeDefined();
  });

  it('tolerates taps already gone (e.g. removed by a crash half-way)', async () => {
    const { plumber, links, nft, records } = setup();
    const nics = await plumber.plumbMany(specs(3));
    await links.deleteTap(nics[1]!.tap);
    expect(await plumber.unplumbMany(nics.map((n) => n.id))).toEqual([true, true, true]);
    expect(await leftovers(links, nft, { list: () => records.list() })).toEqual({ taps: [], chains: [], records: 0 });
  });

  it('leaves the NICs of other batches alone', async () => {
    const { plumber, links } = setup();
    const [a, b] = await plumber.plumbMany(specs(2));
    await plumber.unplumbMany([a!.id]);
    expect(await links.get(b!.tap)).toMatchObject({ up: true, master: BR });
  });
});

describe('sweep', () => {
  it('gives an interrupted NIC a clear error naming phase, step and the recovery', async () => {
    const { plumber, records } = setup();
    const [a] = await plumber.plumbMany([spec(0)]);
    await records.put(a!.id, { ...(await records.get(a!.id))!, phase: 'started', step: 'guard' });
    await records.put('vm9/nic0', { id: 'vm9/nic0', tap: 'nvtzzzzzzzzzz', spec: spec(9), phase: 'removing' });
    const report = await plumber.sweep({ alsoOwned: [BR] });
    expect(report.unfinished.map((r) => r.error)).toEqual([
      'NIC vm0/nic0 was interrupted (started at step guard); its kernel objects may be partial: unplumb it, or plumb it again, to clean up',
      'NIC vm9/nic0 was interrupted (removing); its kernel objects may be partial: unplumb it again to finish the removal',
    ]);
  });
});


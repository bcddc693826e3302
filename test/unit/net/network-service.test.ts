// The Networks service over the stateful link fake, the fake net host and a table-level nft fake, on a
// real store: idempotent PUT and generations, If-Match, dry runs that touch nothing, status per check,
// DELETE refused while NICs use the network, and no half-applied host state after a failure.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeLinks, type FakeLinks } from '../../../daemon/host/links-fake.js';
import type { Links } from '../../../daemon/host/links.js';
import type { Nftables } from '../../../daemon/host/nftables.js';
import { AppError, isAppError } from '../../../daemon/lib/errors.js';
import { bridgeName, tapName } from '../../../daemon/net/names.js';
import type { HostChange, HostChanges } from '../../../daemon/net/host-change.js';
import { createFakeNetHost, type FakeNetHost } from '../../../daemon/host/net-host-fake.js';
import { createNetworkService } from '../../../daemon/net/network-service.js';
import { createStore, type Store } from '../../../daemon/store/store.js';

let dir: string;
let store: Store;
let space = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-networks-'));
  store = createStore({ stateDir: dir });
  await store.open();
});
afterAll(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** Keeps whole tables (the NAT driver only ever replaces or deletes a table in one batch). */
function tableNft() {
  const tables = new Map<string, string[]>();
  const comments = new Map<string, string>();
  const batches: string[] = [];
  let fail: ((s: string) => boolean) | undefined;
  const nft: Nftables & { tables: typeof tables; batches: string[]; failOn(p: typeof fail): void } = {
    tables,
    batches,
    failOn(p) {
      fail = p;
    },
    async apply(script) {
      if (fail?.(script)) throw new AppError('HOST_ERROR', 'nft: injected failure');
      const next = new Map([...tables].map(([k, v]) => [k, [...v]]));
      for (const line of script.split('\n').filter(Boolean)) {
        const m = /^(add|delete) table (\w+) (\w+)(?: \{ comment "([^"]*)"; \})?$/.exec(line);
        if (m) {
          const k = `${m[2]} ${m[3]}`;
          if (m[1] === 'add' && m[4] !== undefined && !next.has(k)) comments.set(k, m[4]);
          if (m[1] === 'add') next.set(k, next.get(k) ?? []);
          else if (!next.delete(k)) throw new AppError('HOST_ERROR', `no table ${k}`);
          continue;
        }
        const t = /^add (?:chain|rule) (\w+) (\w+) /.exec(line);
        if (!t || !next.has(`${t[1]} ${t[2]}`)) throw new AppError('HOST_ERROR', `fake nft cannot apply: ${line}`);
        next.get(`${t[1]} ${t[2]}`)!.push(line);
      }
      tables.clear();
      for (const [k, v] of next) tables.set(k, v);
      batches.push(script);
    },
    async listTable(family, table) {
      const t = tables.get(`${family} ${table}`);
      return t === undefined ? undefined : JSON.stringify({ nftables: t });
    },
    async tableComment(family, table) {
      return tables.has(`${family} ${table}`) ? comments.get(`${family} ${table}`) : undefined;
    },
    async listTables() {
      return [...tables.keys()].map((k) => ({ family: k.split(' ')[0]!, name: k.split(' ')[1]! }));
    },
  };
  return nft;
}

/** Keeps host changes by id; applyWithRollback records the request and answers `next` (the fake host is left alone). */
function fakeHostChanges(next: { state: HostChange['state'] }) {
  const all = new Map<string, HostChange>();
  let n = 0;
  const hc: HostChanges & { all: typeof all } = {
    all,
    async applyWithRollback(req) {
      const id = `hc${n++}`;
      const c = { id, state: next.state, links: req.links, createdAt: '', deadline: Date.now() + (req.timeoutMs ?? 60_000), autoConfirm: req.autoConfirm ?? true, probes: [], applyPlan: ['link add name x type bridge'], restorePlan: [], checkpoint: { links: [], absent: [], routes: [] } } as HostChange;
      all.set(id, c);
      return c;
    },
    async confirm(id) {
      const c = all.get(id)!;
      if (c.state !== 'pending' && c.state !== 'confirmed') throw new AppError('HOST_CHANGE_CONFLICT', 'reverted');
      c.state = 'confirmed';
      return c;
    },
    async revert(id) {
      return all.get(id)!;
    },
    async get(id) {
      return all.get(id);
    },
    async list() {
      return [...all.values()];
    },
    async reconcile() {
      return [];
    },
    stop() {},
  };
  return hc;
}

function setup(opts: { nics?: Map<string, string[]>; hostChanges?: HostChanges; ownerByName?: Map<string, string> } = {}) {
  const links: FakeLinks = createFakeLinks();
  links.seed({ name: 'eth1', kind: undefined, up: true });
  links.seed({ name: 'eth2', kind: undefined, up: true });
  links.seed({ name: 'vmbr0', kind: 'bridge', up: true });
  const host: FakeNetHost = createFakeNetHost(links);
  const nft = tableNft();
  const nics = opts.nics ?? new Map<string, string[]>();
  const sub = `t${space++}`;
  const svc = createNetworkService({
    store: { sublevel: <V>(n: string) => store.sublevel<V>(`${sub}:${n}`) },
    adapters: { links, nft, host },
    nicsUsing: async (n) => nics.get(n) ?? [],
    now: () => new Date('2024-05-01T10:00:00Z'),
    ...(opts.hostChanges ? { hostChanges: opts.hostChanges } : {}),
    ...(opts.ownerByName ? { nicOwnerByName: async () => opts.ownerByName! } : {}),
  });
  return { links, host, nft, svc, nics };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return isAppError(e) ? e.code : String(e);
  }
  return 'no error';
}

describe('PUT', () => {
  it('creates a managed bridge network; the same PUT again changes nothing and keeps the generation', async () => {
    const { svc, links } = setup();
    const br = bridgeName('lan');
    const first = await svc.put('lan', { type: 'bridge', mtu: 9000, bridge: { uplinks: ['eth1'] } });
    expect(first).toMatchObject({ created: true, changed: true, dryRun: false });
    expect(first.network.generation).toBe(1);
    expect(first.network.status.ready).toBe(true);
    expect(await links.get(br)).toMatchObject({ kind: 'bridge', mtu: 9000, up: true });
    expect(await links.get('eth1')).toMatchObject({ master: br, mtu: 9000 });
    const steps = links.log.length;
    const again = await svc.put('lan', { type: 'bridge', mtu: 9000, bridge: { uplinks: ['eth1'] } });
    expect(again).toMatchObject({ created: false, changed: false, changes: [], diff: '(no changes)\n' });
    expect(again.network.generation).toBe(1);
    expect(links.log.length).toBe(steps);
  });

  it('moves the generation on a real change only, and repairs host drift without moving it', async () => {
    const { svc, links } = setup();
    await svc.put('lan', { type: 'bridge', bridge: { uplinks: ['eth1'] } });
    const moved = await svc.put('lan', { type: 'bridge', bridge: { uplinks: ['eth2'] } });
    expect(moved.network.generation).toBe(2);
    expect((await links.get('eth1'))?.master).toBeUndefined();
    expect((await links.get('eth2'))?.master).toBe(bridgeName('lan'));
    // Someone releases the uplink behind our back: status says so, the same PUT repairs it.
    await links.apply([{ op: 'set', name: 'eth2', master: null }]);
    const got = await svc.get('lan');
    expect(got.status.ready).toBe(false);
    expect(got.status.checks.find((c) => c.name === 'port:eth2')).toMatchObject({ ok: false });
    const repaired = await svc.put('lan', { type: 'bridge', bridge: { uplinks: ['eth2'] } });
    expect(repaired).toMatchObject({ changed: true, changes: [`~ ip link set dev eth2 mtu 1500 master ${bridgeName('lan')} up`] });
    expect(repaired.network.generation).toBe(2);
  });

  it('If-Match: the current ETag passes, a stale one or one on a missing network is PRECONDITION_FAILED', async () => {
    const { svc } = setup();
    expect(await code(svc.put('lan', { type: 'bridge' }, { ifMatch: '"1"' }))).toBe('PRECONDITION_FAILED');
    await svc.put('lan', { type: 'bridge' });
    await svc.put('lan', { type: 'bridge', mtu: 1400 }, { ifMatch: '"1"' });
    expect(await code(svc.put('lan', { type: 'bridge', mtu: 1300 }, { ifMatch: '"1"' }))).toBe('PRECONDITION_FAILED');
    expect((await svc.put('lan', { type: 'bridge', mtu: 1300 }, { ifMatch: '*' })).network.generation).toBe(3);
    expect(await code(svc.delete('lan', { ifMatch: '"2"' }))).toBe('PRECONDITION_FAILED');
  });

  it('dryRun returns the diff and touches neither the host nor the store', async () => {
    const { svc, links, host } = setup();
    const r = await svc.put('lan', { type: 'nat', nat: { subnet: '192.168.50.0/24' } }, { dryRun: true });
    expect(r.dryRun).toBe(true);
    expect(r.diff).toContain('+ ip addr add 192.168.50.1/24');
    expect(r.network.generation).toBe(0);
    expect(links.log).toEqual([]);
    expect(host.log).toEqual([]);
    expect(await code(svc.get('lan'))).toBe('NETWORK_NOT_FOUND');
  });

  it('a failure halfway is undone: no bridge, no address, no table, no record', async () => {
    const { svc, links, host, nft } = setup();
    nft.failOn(() => true);
    expect(await code(svc.put('n', { type: 'nat' }))).toBe('HOST_ERROR');
    expect(await links.get(bridgeName('n'))).toBeUndefined();
    // ip_forward was turned on before the nft step and is put back by the undo.
    expect(await host.getSysctl('net.ipv4.ip_forward')).toBe('0');
    expect(nft.tables.size).toBe(0);
    expect(await svc.list()).toEqual([]);
    nft.failOn(undefined);
    expect((await svc.put('n', { type: 'nat' })).network.status.ready).toBe(true);
  });

  it('refuses a missing uplink, an adopted bridge that is missing, and a type change', async () => {
    const { svc } = setup();
    expect(await code(svc.put('a', { type: 'bridge', bridge: { uplinks: ['nope'] } }))).toBe('NETWORK_INVALID');
    expect(await code(svc.put('b', { type: 'bridge', bridge: { name: 'nobr', managed: false } }))).toBe('NETWORK_INVALID');
    expect(await code(svc.put('c', { type: 'bridge', bridge: { managed: false } }))).toBe('NETWORK_INVALID');
    await svc.put('d', { type: 'bridge' });
    expect(await code(svc.put('d', { type: 'nat' }))).toBe('NETWORK_INVALID');
    expect(await code(svc.put('r', { type: 'routed', routed: { pool: '203.0.113.0/28' }, ipam: { subnet: '203.0.113.0/28' } }))).toBe('NETWORK_INVALID');
  });
});

describe('nat', () => {
  it('bridge with the gateway, ip_forward, masquerade table; forwards appear on refresh once the NIC has an IP; ports isolated on demand', async () => {
    const { svc, links, host, nft } = setup();
    const br = bridgeName('nat1');
    const spec = { type: 'nat' as const, nat: { isolation: true, forwards: [{ protocol: 'tcp' as const, hostPort: 2222, vm: 'vm1', nic: 'net0', vmPort: 22 }] } };
    const r = await svc.put('nat1', spec);
    expect(await links.get(br)).toMatchObject({ kind: 'bridge', up: true });
    expect((await host.addresses()).get(br)).toEqual(['10.0.2.1/24']);
    expect(await host.getSysctl('net.ipv4.ip_forward')).toBe('1');
    expect(nft.tables.get(`inet ${br}`)?.join('\n')).toContain('masquerade');
    // A NIC plumbed after the PUT is isolated by the refresh that also adds its forward.
    links.seed({ name: 'tapx', kind: 'tap', master: br, up: true });
    expect(r.network.status.checks.find((c) => c.name === 'forward:tcp/2222')).toMatchObject({ ok: false });
    const ip = await (await svc.ipam('nat1')).allocate('vm1/net0');
    expect(ip).toBe('10.0.2.2');
    expect(await svc.refresh('nat1')).toEqual([
      `~ nft table inet ${br}`,
      '    masquerade 10.0.2.0/24 out of any link but ' + br,
      '    forward tcp/2222 -> vm1/net0 10.0.2.2:22',
      '~ ip link set dev tapx type bridge_slave isolated on',
    ]);
    expect(await host.getPortIsolated('tapx')).toBe(true);
    expect(nft.tables.get(`inet ${br}`)?.join('\n')).toContain('dnat ip to 10.0.2.2:22');
    expect((await svc.get('nat1')).status.ready).toBe(true);
    expect(await svc.refresh('nat1')).toEqual([]);
    // Isolation off opens the port and changes nothing else.
    const off = await svc.put('nat1', { ...spec, nat: { ...spec.nat, isolation: false } });
    expect(off.changes).toEqual(['~ ip link set dev tapx type bridge_slave isolated off']);
    expect(await host.getPortIsolated('tapx')).toBe(false);
  });
});

describe('forward and floating-IP targets', () => {
  it('a forward names "<vm>/<nic>" while IPAM owners are "<vm id>/<nic>": the VM layer maps one to the other', async () => {
    const ownerByName = new Map<string, string>();
    const { svc, nft } = setup({ ownerByName });
    const br = bridgeName('nat2');
    await svc.put('nat2', { type: 'nat', nat: { forwards: [{ protocol: 'tcp', hostPort: 8080, vm: 'web', nic: 'net0', vmPort: 80 }] } });
    const ip = await (await svc.ipam('nat2')).allocate('5b1c7f3e-0000-4000-8000-000000000001/net0');
    // Without the mapping the owner is unknown: no DNAT (what the VM layer saw before it passed the mapping).
    await svc.refresh('nat2');
    expect(nft.tables.get(`inet ${br}`)?.join('\n')).not.toContain('dnat');
    ownerByName.set('web/net0', '5b1c7f3e-0000-4000-8000-000000000001/net0');
    await svc.refresh('nat2');
    expect(nft.tables.get(`inet ${br}`)?.join('\n')).toContain(`dnat ip to ${ip}:80`);
    // Status reports the forward by its name and no per-NIC check under the name form.
    const checks = (await svc.get('nat2')).status.checks;
    expect(checks.find((c) => c.name === 'forward:tcp/8080')).toMatchObject({ ok: true, message: `-> ${ip}:80` });
    expect(checks.some((c) => c.name.includes('web/net0') && c.name.startsWith('nic:'))).toBe(false);
  });
});

describe('crash and restart', () => {
  it('reconcile removes our-prefixed tables this daemon made that no network owns, and nobody else\'s', async () => {
    const links = createFakeLinks();
    links.seed({ name: 'eth1', up: true });
    const host = createFakeNetHost(links);
    const nft = tableNft();
    const sub = `t${space++}`;
    const substore = { sublevel: <V>(n: string) => store.sublevel<V>(`${sub}:${n}`) };
    const svc = createNetworkService({ store: substore, adapters: { links, nft, host } });
    await svc.put('kept', { type: 'nat', nat: { subnet: '10.9.1.0/24' } });
    await svc.put('lost', { type: 'nat', nat: { subnet: '10.9.2.0/24' } });
    // A crash between dropping the record and deleting the table: the table stays, no record names it.
    await store.sublevel(`${sub}:networks`).del('lost');
    const foreign = bridgeName('another-daemons-net');
    await nft.apply(`add table inet ${foreign} { comment "nodevirt:0123456789ab"; }\nadd table inet ${bridgeName('untagged')}\nadd table inet someone_else\n`);
    const before = [...nft.tables.keys()].sort();
    expect(before).toContain(`inet ${bridgeName('lost')}`);

    await svc.reconcile();
    expect([...nft.tables.keys()].sort()).toEqual(before.filter((k) => k !== `inet ${bridgeName('lost')}`));
    expect(await svc.sweepTables()).toEqual([]);
  });

  it('a daemon killed mid-apply leaves an intent; the next daemon rolls it forward on reconcile', async () => {
    const links = createFakeLinks();
    links.seed({ name: 'eth1', up: true });
    const host = createFakeNetHost(links);
    const nft = tableNft();
    const sub = `t${space++}`;
    const substore = { sublevel: <V>(n: string) => store.sublevel<V>(`${sub}:${n}`) };
    // The first daemon "dies" inside its second link step: that call never returns, no revert runs.
    let calls = 0;
    let reached: () => void = () => undefined;
    const died = new Promise<void>((r) => (reached = r));
    const dying: Links = {
      ...links,
      apply: (ops) => {
        if (++calls === 2) {
          reached();
          return new Promise<void>(() => undefined);
        }
        return links.apply(ops);
      },
    };
    const first = createNetworkService({ store: substore, adapters: { links: dying, nft, host } });
    void first.put('lan', { type: 'bridge', bridge: { uplinks: ['eth1'] } });
    await died;
    const br = bridgeName('lan');
    expect(await links.get(br)).toBeDefined();
    expect((await links.get('eth1'))?.master).toBeUndefined();

    const second = createNetworkService({ store: substore, adapters: { links, nft, host } });
    // The half-made bridge is owned (not an orphan for the NIC sweep) while its intent is pending.
    expect(await second.ownedLinks()).toEqual([br]);
    expect(await second.list()).toEqual([]);
    const res = await second.reconcile();
    expect(res).toEqual([{ name: 'lan', interrupted: true, changes: [`~ ip link set dev eth1 mtu 1500 master ${br} up`, `~ ip link set dev ${br} up`] }]);
    const got = await second.get('lan');
    expect(got).toMatchObject({ generation: 1, status: { ready: true } });
    expect(await second.reconcile()).toEqual([{ name: 'lan', interrupted: false, changes: [] }]);
  });

  it('after a host reboot (every link of ours gone) reconcile recreates the networks, and reports what it could not', async () => {
    const { svc, links, host, nft } = setup();
    await svc.put('lan', { type: 'bridge', bridge: { uplinks: ['eth1'] } });
    await svc.put('n', { type: 'nat' });
    await svc.put('gone', { type: 'bridge', bridge: { uplinks: ['eth2'] } });
    for (const b of [bridgeName('lan'), bridgeName('n'), bridgeName('gone')]) await links.apply([{ op: 'delete', name: b }]);
    await links.apply([{ op: 'delete', name: 'eth2' }]);
    nft.tables.clear();
    const res = await svc.reconcile();
    expect(res.map((r) => [r.name, r.error === undefined])).toEqual([
      ['gone', false],
      ['lan', true],
      ['n', true],
    ]);
    expect(res[0]!.error).toContain('uplink eth2 does not exist');
    expect(res[2]!.error).toBeUndefined();
    expect((await svc.get('lan')).status.ready).toBe(true);
    expect((await svc.get('n')).status.ready).toBe(true);
    expect((await host.addresses()).get(bridgeName('n'))).toEqual(['10.0.2.1/24']);
  });
});

describe('routed', () => {
  it('ip_forward at once; per NIC the gateway 169.254.1.1/32 on its tap and a /32 route, on refresh once the tap exists', async () => {
    const { svc, links, host } = setup();
    const r = await svc.put('rt', { type: 'routed', routed: { pool: '203.0.113.16/28' } });
    expect(r.changes).toEqual(['~ sysctl net.ipv4.ip_forward=1 (was 0)']);
    const ip = await (await svc.ipam('rt')).allocate('vm1/net0');
    expect(ip).toBe('203.0.113.17');
    expect((await svc.get('rt')).status.checks.find((c) => c.name === 'nic:vm1/net0')).toMatchObject({ ok: false });
    const tap = tapName('vm1', 'net0');
    links.seed({ name: tap, kind: 'tap', up: true });
    expect(await svc.refresh('rt')).toEqual([`+ ip addr add 169.254.1.1/32 dev ${tap}`, `+ ip route add 203.0.113.17/32 dev ${tap}`]);
    expect((await host.routes()).get('203.0.113.17/32')).toBe(tap);
    expect((await svc.get('rt')).status.ready).toBe(true);
    expect(await svc.refresh('rt')).toEqual([]);
    expect(await svc.nicAttachment('rt')).toEqual({
      mtu: 1500,
      bridge: undefined,
      isolated: false,
      ipam: {
        subnet: '203.0.113.16/28',
        gateway: '169.254.1.1',
        prefixLength: 32,
        dns: [],
        search: [],
        routes: [
          { destination: '169.254.1.1/32', gateway: '0.0.0.0' },
          { destination: '0.0.0.0/0', gateway: '169.254.1.1' },
        ],
      },
    });
  });
});

describe('routed floating IPs', () => {
  it('refuses floating IPs without an uplink, inside the pool, twice, or two per NIC, and on other network types', async () => {
    const { svc } = setup();
    const fip = (ip: string, vm = 'vm1') => ({ ip, vm, nic: 'net0' });
    expect(await code(svc.put('r', { type: 'routed', routed: { pool: '203.0.113.16/28', floatingIps: [fip('198.51.100.50')] } }))).toBe('NETWORK_INVALID');
    expect(await code(svc.put('r', { type: 'routed', routed: { pool: '203.0.113.16/28', uplink: 'eth1', floatingIps: [fip('203.0.113.20')] } }))).toBe('NETWORK_INVALID');
    expect(await code(svc.put('r', { type: 'routed', routed: { pool: '203.0.113.16/28', uplink: 'eth1', floatingIps: [fip('198.51.100.50'), fip('198.51.100.50', 'vm2')] } }))).toBe('NETWORK_INVALID');
    expect(await code(svc.put('r', { type: 'routed', routed: { pool: '203.0.113.16/28', uplink: 'eth1', floatingIps: [fip('198.51.100.50'), fip('198.51.100.51')] } }))).toBe('NETWORK_INVALID');
    await svc.put('n', { type: 'nat' });
    expect(await code(svc.floatingIpPut('n', '198.51.100.50', { vm: 'vm1', nic: 'net0' }))).toBe('NETWORK_INVALID');
    await svc.put('r', { type: 'routed', routed: { pool: '203.0.113.16/28', uplink: 'eth1' } });
    expect(await code(svc.floatingIpPut('r', '198.51.100.256', { vm: 'vm1', nic: 'net0' }))).toBe('NETWORK_INVALID');
    expect(await code(svc.floatingIp('r', '198.51.100.50'))).toBe('FLOATING_IP_NOT_FOUND');
    expect(await code(svc.floatingIpDelete('r', '198.51.100.50'))).toBe('FLOATING_IP_NOT_FOUND');
  });

  it('maps once the NIC has an address (table + /32 on the uplink), re-targets, and DELETE removes both', async () => {
    const { svc, links, host, nft } = setup();
    await svc.put('rt', { type: 'routed', routed: { pool: '203.0.113.16/28', uplink: 'eth1' } });
    const put = await svc.floatingIpPut('rt', '198.51.100.50', { vm: 'vm1', nic: 'net0' });
    // Stored at once, applied once the NIC has an address: nothing on the host yet, and status says why.
    expect(put).toMatchObject({ created: true, changed: true, changes: [] });
    expect(put.floatingIp).toMatchObject({ ready: false, nicAddress: undefined, message: 'vm1/net0 has no address on this network yet' });
    expect((await svc.get('rt')).generation).toBe(2);
    const ip1 = await (await svc.ipam('rt')).allocate('vm1/net0');
    links.seed({ name: tapName('vm1', 'net0'), kind: 'tap', up: true });
    const table = `inet ${bridgeName('rt')}`;
    const changes = await svc.refresh('rt');
    expect(changes).toContain(`+ nft table ${table}`);
    expect(changes).toContain('+ ip addr add 198.51.100.50/32 dev eth1');
    expect(nft.tables.get(table)).toEqual(expect.arrayContaining([
      `add rule ${table} prerouting ip daddr 198.51.100.50 counter dnat ip to ${ip1}`,
      `add rule ${table} postrouting ip saddr ${ip1} oifname "eth1" counter snat ip to 198.51.100.50`,
    ]));
    expect(await svc.floatingIps('rt')).toEqual([{ ip: '198.51.100.50', vm: 'vm1', nic: 'net0', nicAddress: ip1, ready: true, message: `198.51.100.50 -> ${ip1}: announced on eth1, nat table present` }]);
    // Re-target to another NIC: the rules follow, the address stays.
    const ip2 = await (await svc.ipam('rt')).allocate('vm2/net0');
    const moved = await svc.floatingIpPut('rt', '198.51.100.50', { vm: 'vm2', nic: 'net0' });
    expect(moved).toMatchObject({ created: false, changed: true, changes: [`~ nft table ${table}`, expect.stringContaining(`vm2/net0 ${ip2}`)] });
    await svc.floatingIpDelete('rt', '198.51.100.50');
    expect(nft.tables.has(table)).toBe(false);
    expect((await host.addresses()).get('eth1') ?? []).not.toContain('198.51.100.50/32');
    expect((await svc.get('rt')).spec.routed).toEqual({ pool: '203.0.113.16/28', uplink: 'eth1', floatingIps: [] });
  });

  it('deleting the network removes its floating addresses and table', async () => {
    const { svc, links, host, nft } = setup();
    await svc.put('rt', { type: 'routed', routed: { pool: '203.0.113.16/28', uplink: 'eth1', floatingIps: [{ ip: '198.51.100.50', vm: 'vm1', nic: 'net0' }] } });
    await (await svc.ipam('rt')).allocate('vm1/net0');
    links.seed({ name: tapName('vm1', 'net0'), kind: 'tap', up: true });
    await svc.refresh('rt');
    expect(nft.tables.size).toBe(1);
    await svc.delete('rt');
    expect(nft.tables.size).toBe(0);
    expect((await host.addresses()).get('eth1') ?? []).not.toContain('198.51.100.50/32');
  });
});

describe('bridge over the uplink that carries the host address', () => {
  it('is refused without host changes with rollback, and while the bridge already exists; status shows no host change', async () => {
    const { svc, host } = setup();
    await host.addAddress('eth1', '192.0.2.10/24');
    expect(await code(svc.put('vm', { type: 'bridge', bridge: { uplinks: ['eth1'] } }))).toBe('NETWORK_CONFLICT');
    expect(await code(svc.put('vm', { type: 'bridge', bridge: { uplinks: ['eth1', 'eth2'] } }))).toBe('NETWORK_CONFLICT');
    await host.addAddress('eth2', '198.51.100.10/24');
    expect(await code(svc.put('vm', { type: 'bridge', bridge: { uplinks: ['eth1', 'eth2'] } }))).toBe('NETWORK_INVALID');
    // Adopted bridges and VLAN ports never move an address.
    expect((await svc.put('a', { type: 'bridge', bridge: { name: 'vmbr0', managed: false } })).network.status.hostChange).toBeUndefined();
    expect(await code(svc.confirm('a'))).toBe('HOST_CHANGE_NOT_FOUND');
  });
});

describe('host changes behind a bridge network', () => {
  it('a pending change shows in status until confirmed; one reverted later drops the network it created at reconcile', async () => {
    const next = { state: 'pending' as HostChange['state'] };
    const hc = fakeHostChanges(next);
    const { svc, host } = setup({ hostChanges: hc });
    await host.addAddress('eth1', '192.0.2.10/24');
    const r = await svc.put('vm', { type: 'bridge', bridge: { uplinks: ['eth1'] } }, { autoConfirm: false, rollbackTimeoutMs: 5000 });
    expect(r.network.status.hostChange).toMatchObject({ id: 'hc0', state: 'pending' });
    expect(r.network.status.checks).toContainEqual({ name: 'host-change', ok: false, message: 'host change hc0 is pending' });
    expect((await svc.confirm('vm')).status).toMatchObject({ ready: true, hostChange: { state: 'confirmed' } });
    // A second network whose change the agent reverts after the daemon stored it.
    await host.addAddress('eth2', '198.51.100.10/24');
    await svc.put('vm2', { type: 'bridge', bridge: { uplinks: ['eth2'] } }, { autoConfirm: false });
    hc.all.get('hc1')!.state = 'reverted';
    expect(await code(svc.confirm('vm2'))).toBe('HOST_CHANGE_CONFLICT');
    const res = await svc.reconcile();
    expect(res.find((x) => x.name === 'vm2')?.error).toMatch(/host change hc1 was reverted: the network is dropped/);
    expect((await svc.list()).map((n) => n.name)).toEqual(['vm']);
  });

  it('a change reverted at once fails the PUT with HOST_CHANGE_CONFLICT and stores nothing', async () => {
    const hc = fakeHostChanges({ state: 'reverted' });
    const { svc, host } = setup({ hostChanges: hc });
    await host.addAddress('eth1', '192.0.2.10/24');
    expect(await code(svc.put('vm', { type: 'bridge', bridge: { uplinks: ['eth1'] } }))).toBe('HOST_CHANGE_CONFLICT');
    expect(await svc.list()).toEqual([]);
  });
});

describe('GET and DELETE', () => {
  it('lists networks sorted, DELETE is refused while NICs use it and then removes everything ours', async () => {
    const nics = new Map([['b', ['vm1/net0']]]);
    const { svc, links, nft } = setup({ nics });
    await svc.put('b', { type: 'nat' });
    await svc.put('a', { type: 'bridge', bridge: { name: 'vmbr0', managed: false } });
    expect((await svc.list()).map((n) => n.name)).toEqual(['a', 'b']);
    // Only what we created counts as ours for the NIC sweep; the adopted bridge never does.
    expect(await svc.ownedLinks()).toEqual([bridgeName('b')]);
    expect(await code(svc.delete('b'))).toBe('NETWORK_IN_USE');
    nics.clear();
    await svc.delete('b');
    expect(await links.get(bridgeName('b'))).toBeUndefined();
    expect(nft.tables.size).toBe(0);
    // The adopted bridge stays.
    await svc.delete('a');
    expect(await links.get('vmbr0')).toMatchObject({ kind: 'bridge' });
    expect(await svc.list()).toEqual([]);
    expect(await code(svc.delete('a'))).toBe('NETWORK_NOT_FOUND');
  });

  it('refuses to move a network that NICs use to another subnet', async () => {
    const nics = new Map([['n', ['vm1/net0']]]);
    const { svc } = setup({ nics });
    await svc.put('n', { type: 'nat' });
    expect(await code(svc.put('n', { type: 'nat', nat: { subnet: '10.0.3.0/24' } }))).toBe('NETWORK_IN_USE');
    expect((await svc.put('n', { type: 'nat', nat: { isolation: true } })).network.generation).toBe(2);
  });

  it('tells NICs how to attach', async () => {
    const { svc } = setup();
    await svc.put('lan', { type: 'bridge', mtu: 1450, ipam: { subnet: '192.168.10.0/24', dns: ['192.168.10.53'] } });
    expect(await svc.nicAttachment('lan')).toEqual({ mtu: 1450, bridge: bridgeName('lan'), isolated: false, ipam: { subnet: '192.168.10.0/24', gateway: '192.168.10.1', prefixLength: 24, dns: ['192.168.10.53'], search: [] } });
  });
});

// NIC plumbing against the real kernel in a fresh network namespace: two NICs on a bridge (links, MTU,
// master, guard chains), frames written into a tap through /dev/net/tun (python3 plays the VM) counted
// by the bridge and by each drop rule, unplumb leaving nothing, and a crash after "started" found by the sweep.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinks, type Links } from '../../daemon/host/links.js';
import { createNftables, type Nftables } from '../../daemon/host/nftables.js';
import { bridgeName, isOurs, tapName } from '../../daemon/net/names.js';
import { renderGuardAdd, renderGuardRemove } from '../../daemon/net/nft-rules.js';
import { createNicPlumber, type NicPlumber, type NicRecord, type NicSpec, type PlumbedNic } from '../../daemon/net/nic.js';
import { createStore, type KeySpace, type Store } from '../../daemon/store/store.js';
import { createTestNetns, ethFrame, netnsUnavailable, udpFrame, writeTapFrames, type TestNetns } from './helpers/netns.js';

// ---- frames ------------------------------------------------------------------------------------------

const mac = (s: string) => Buffer.from(s.split(':').map((h) => parseInt(h, 16)));
const ip4 = (s: string) => Buffer.from(s.split('.').map(Number));
const eth = ethFrame;
const udp4 = (srcMac: string, src: string, dst: string, sport: number, dport: number) => udpFrame({ srcMac, src, dst, sport, dport });

function arpReply(srcMac: string, senderIp: string): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(0x0800, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(2, 6);
  mac(srcMac).copy(a, 8);
  ip4(senderIp).copy(a, 14);
  ip4('10.50.0.1').copy(a, 24);
  return eth(srcMac, 0x0806, a);
}

function routerAdvert(srcMac: string): Buffer {
  const icmp = Buffer.alloc(16);
  icmp[0] = 134;
  const ip6 = Buffer.alloc(40);
  ip6[0] = 0x60;
  ip6.writeUInt16BE(icmp.length, 4);
  ip6[6] = 58;
  ip6[7] = 255;
  Buffer.from('fe800000000000000000000000000001', 'hex').copy(ip6, 8);
  Buffer.from('ff020000000000000000000000000001', 'hex').copy(ip6, 24);
  return eth(srcMac, 0x86dd, Buffer.concat([ip6, icmp]), '33:33:00:00:00:01');
}

function vlanTagged(srcMac: string): Buffer {
  const tag = Buffer.from([0x00, 0x05, 0x08, 0x00]);
  return eth(srcMac, 0x8100, Buffer.concat([tag, udp4(srcMac, '10.50.0.99', '10.50.0.255', 1, 2).subarray(14)]));
}

// ---- harness -----------------------------------------------------------------------------------------

const why = netnsUnavailable();
if (why !== undefined) {
  describe.skip(`nic plumbing (skipped: ${why})`, () => it('needs root', () => undefined));
} else {
  let ns: TestNetns;
  let links: Links;
  let nft: Nftables;
  let dir: string;
  let store: Store;
  let records: KeySpace<NicRecord>;
  let plumber: NicPlumber;
  let bridge: string;

  beforeAll(async () => {
    ns = createTestNetns('nic');
    links = createLinks({ netns: ns.name });
    nft = createNftables({ netns: ns.name });
    dir = await mkdtemp(join(tmpdir(), 'nodevirt-nic-sys-'));
    store = createStore({ stateDir: dir });
    await store.open();
    records = store.sublevel<NicRecord>('nics');
    plumber = createNicPlumber({ links, nft, records });
    bridge = bridgeName(`${ns.run}/net`);
    await links.apply([
      { op: 'create-bridge', name: bridge, mtu: 1400 },
      { op: 'set', name: bridge, up: true },
    ]);
  });
  afterAll(async () => {
    ns?.remove();
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const spec = (n: number): NicSpec => ({
    vmId: `${ns.run}-vm${n}`,
    nicId: 'nic0',
    mac: `0e:00:00:00:00:0${n}`,
    ipv4: `10.50.0.${10 + n}`,
    mtu: 1400,
    bridge,
  });

  const bridgeRx = () => {
    const [l] = JSON.parse(ns.exec('ip', ['-s', '-j', 'link', 'show', 'dev', bridge])) as Array<{ stats64: { rx: { packets: number } } }>;
    return l!.stats64.rx.packets;
  };
  /** Packets counted by each rule of a NIC's chain, keyed by a short label of the rule. */
  const ruleCounters = (tap: string): Record<string, number> => {
    const doc = JSON.parse(ns.exec('nft', ['-j', 'list', 'chain', 'bridge', 'nodevirt', tap])) as {
      nftables: Array<{ rule?: { expr: Array<Record<string, unknown>> } }>;
    };
    const out: Record<string, number> = {};
    for (const item of doc.nftables) {
      if (!item.rule) continue;
      const counter = item.rule.expr.find((e) => 'counter' in e) as { counter: { packets: number } } | undefined;
      const m = item.rule.expr.find((e) => 'match' in e) as { match: { left: Record<string, { protocol?: string; field?: string }> } } | undefined;
      const left = m ? Object.values(m.match.left)[0] : undefined;
      const label = left ? `${left.protocol}.${left.field}` : 'other';
      if (counter) out[label] = (out[label] ?? 0) + counter.counter.packets;
    }
    return out;
  };

  describe('nic plumbing in a netns', () => {
    let a: PlumbedNic;
    let b: PlumbedNic;

    it('plumbs two NICs on a bridge: taps up with MTU and master, one guard chain each', async () => {
      [a, b] = await Promise.all([plumber.plumb(spec(1)), plumber.plumb(spec(2))]);
      for (const nic of [a, b]) {
        expect(nic.tap).toMatch(/^nvt[a-z2-7]{10}$/);
        expect(await links.get(nic.tap)).toMatchObject({ kind: 'tap', mtu: 1400, master: bridge, up: true });
        const chain = ns.exec('nft', ['list', 'chain', 'bridge', 'nodevirt', nic.tap]);
        expect(chain).toContain(`ether saddr != ${nic.mac}`);
        expect(chain).toContain(`ip saddr != ${nic.ipv4}`);
      }
      expect(ns.exec('nft', ['list', 'map', 'bridge', 'nodevirt', 'ports'])).toMatch(new RegExp(`"${a.tap}" : jump ${a.tap}`));
      expect((await records.get(a.id))?.phase).toBe('finished');
    });

    it('passes the VM\'s own frames and drops spoofed ones, DHCP server replies, RAs and VLAN tags', () => {
      const before = bridgeRx();
      const good = [udp4(a.mac, a.ipv4!, '10.50.0.255', 5000, 5001), udp4(a.mac, '0.0.0.0', '255.255.255.255', 68, 67), arpReply(a.mac, a.ipv4!)];
      const bad = {
        'ether.saddr': udp4('0e:00:00:00:00:ee', a.ipv4!, '10.50.0.255', 5000, 5001),
        'ip.saddr': udp4(a.mac, '10.50.0.99', '10.50.0.255', 5000, 5001),
        'arp.saddr ip': arpReply(a.mac, '10.50.0.98'),
        'udp.sport': udp4(a.mac, a.ipv4!, '10.50.0.255', 67, 68),
        'icmpv6.type': routerAdvert(a.mac),
        'ether.type': vlanTagged(a.mac),
      };
      writeTapFrames(ns.name, a.tap, [...good, ...Object.values(bad)]);

      const counts = ruleCounters(a.tap);
      expect(counts['ether.saddr']).toBe(1);
      expect(counts['ether.type']).toBe(1);
      expect(counts['ip.saddr']).toBe(1);
      expect(counts['udp.sport']).toBe(1);
      expect(counts['icmpv6.type']).toBe(1);
      // The ARP sender-IP rule's left side is the arp payload field 'saddr ip'.
      expect(Object.entries(counts).filter(([k]) => k.startsWith('arp.')).reduce((s, [, v]) => s + v, 0)).toBe(1);
      // The DHCP DISCOVER stays on the tap (its own server's packet socket reads it there); the other two good
      // frames reached the bridge; the other NIC's chain saw nothing.
      expect(counts['udp.dport']).toBe(1);
      expect(bridgeRx() - before).toBe(good.length - 1);
      expect(Object.values(ruleCounters(b.tap)).reduce((s, v) => s + v, 0)).toBe(0);
    });

    it('a process killed after recording "started" is reported by the sweep, and the next plumb repairs it', async () => {
      let reached!: () => void;
      const atLink = new Promise<void>((r) => (reached = r));
      // Stands in for kill -9 between two kernel steps: the link step never returns, nothing runs after it.
      const frozen = createNicPlumber({
        links: { ...links, apply: () => (reached(), new Promise<void>(() => undefined)) },
        nft,
        records,
      });
      void frozen.plumb(spec(3));
      await atLink;

      const restarted = createNicPlumber({ links, nft, records });
      const report = await restarted.sweep({ alsoOwned: [bridge] });
      const tap3 = tapName(spec(3).vmId, 'nic0');
      expect(report.unfinished.map((r) => [r.tap, r.phase, r.step])).toEqual([[tap3, 'started', 'link']]);
      expect(await links.get(tap3)).toMatchObject({ kind: 'tap', up: false, master: undefined });
      expect(report.orphanLinks).toEqual([]);

      // A tap and a chain nobody records (a crash before the record was written, or an old daemon's).
      const ghost = tapName(`${ns.run}-ghost`, 'nic0');
      await links.createTap(ghost, { owner: 0 });
      const withGhost = await restarted.sweep({ alsoOwned: [bridge] });
      expect(withGhost.orphanLinks).toEqual([{ name: ghost, kind: 'tap' }]);
      await restarted.removeOrphans(withGhost);
      expect(await links.get(ghost)).toBeUndefined();

      const repaired = await restarted.plumb(spec(3));
      expect(await links.get(repaired.tap)).toMatchObject({ master: bridge, up: true });
      expect(await restarted.unplumb(repaired.id)).toBe(true);
    });

    it('the sweep removes a guard table a crash left with no chain, and no one else\'s table', async () => {
      const ghost = tapName(`${ns.run}-crashed`, 'nic0');
      // Plumbed and unplumbed by a process killed before it could drop the then empty table.
      await nft.apply(renderGuardAdd([{ ifname: ghost, mode: 'inet', mac: '0e:00:00:00:00:42', ipv4: '10.50.0.42' }], { fresh: true }));
      await nft.apply(renderGuardRemove([ghost], ['inet', 'arp']));
      ns.exec('nft', ['add', 'table', 'inet', 'someone_else']);
      const tables = () => ns.exec('nft', ['list', 'tables']).split('\n').filter(Boolean).sort();
      expect(tables()).toEqual(expect.arrayContaining(['table arp nodevirt', 'table inet nodevirt', 'table inet someone_else']));
      expect(await plumber.sweep({ alsoOwned: [bridge] })).toMatchObject({ orphanLinks: [], orphanChains: [] });
      expect(tables().filter((t) => !t.endsWith('bridge nodevirt'))).toEqual(['table inet someone_else']);
      ns.exec('nft', ['delete', 'table', 'inet', 'someone_else']);
    });

    it('unplumb leaves nothing of ours but the bridge', async () => {
      expect(await plumber.unplumb(a.id)).toBe(true);
      expect(await plumber.unplumb(b.id)).toBe(true);
      expect((await links.list(isOurs)).map((l) => l.name)).toEqual([bridge]);
      // The guard tables went with the last NIC.
      expect(ns.exec('nft', ['list', 'tables']).split('\n').filter((l) => / nodevirt$/.test(l))).toEqual([]);
      expect(await plumber.sweep({ alsoOwned: [bridge] })).toEqual({ orphanLinks: [], orphanChains: [], unfinished: [] });
      expect(await records.list()).toEqual([]);
    });
  });
}

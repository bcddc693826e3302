// Anti-spoofing and the DHCP-server guard end to end, per network type: networks made by the network
// service, NICs plumbed by nic.ts with the attachment and IP the service hands out, and a VM stand-in
// writing frames into its real tap. Forged MAC, forged IP and a rogue DHCPOFFER never arrive; the
// legitimate datagrams do; the VM's DHCP requests stay on the tap (for its own server: no LAN DHCP sees
// them, no ICMP port unreachable comes back); the guard's drop counters account for every frame that did not.
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes, randomInt } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinks } from '../../daemon/host/links.js';
import { createNftables } from '../../daemon/host/nftables.js';
import { createNetHost } from '../../daemon/host/net-host.js';
import type { NetworkSpec } from '../../daemon/net/network-model.js';
import { createNetworkService, type NetworkService } from '../../daemon/net/network-service.js';
import { createNicPlumber, type NicPlumber, type NicRecord, type PlumbedNic } from '../../daemon/net/nic.js';
import { createStore, type Store } from '../../daemon/store/store.js';
import {
  addNs,
  delNs,
  dhcpOfferPayload,
  inNs,
  ipn,
  macOf,
  netnsUnavailable,
  receiveUdp,
  udpFrame,
  vethBetween,
  writeTapFrames,
} from './helpers/netns.js';

const why = netnsUnavailable();
const run = randomBytes(3).toString('hex');
const HOST = `nvg${run}h`;
const LAN = `nvg${run}l`;
const made: string[] = [];
// One random 10.X.0.0/16 per run (X in 200..249), a /24 of it per network.
const X = randomInt(200, 250);

/** Packets counted by the drop rules of one NIC's guard chain. */
function dropped(family: 'bridge' | 'inet', tap: string): number {
  const doc = JSON.parse(inNs(HOST, 'nft', '-j', 'list', 'chain', family, 'nodevirt', tap)) as { nftables: Array<{ rule?: { expr: Array<Record<string, unknown>> } }> };
  let n = 0;
  for (const item of doc.nftables) {
    const expr = item.rule?.expr ?? [];
    if (!expr.some((e) => 'drop' in e)) continue;
    const c = expr.find((e) => 'counter' in e) as { counter: { packets: number } } | undefined;
    n += c?.counter.packets ?? 0;
  }
  return n;
}

interface Case {
  type: string;
  spec: NetworkSpec;
  /** Where the receiver runs and the datagrams go (IP and the next hop's MAC). */
  receiverNs: string;
  dst: () => { ip: string; mac: string };
  family: 'bridge' | 'inet';
  /** Ports the receiver listens on (the bridge case also listens for the VM's DHCP requests on the LAN). */
  ports: number[];
}

/** ICMP destination-unreachable messages a namespace has sent (/proc/net/snmp). */
function icmpUnreachSent(ns: string): number {
  const rows = inNs(ns, 'cat', '/proc/net/snmp').split('\n').filter((l) => l.startsWith('Icmp:'));
  const [names, values] = rows.map((r) => r.split(/\s+/).slice(1));
  return Number(values![names!.indexOf('OutDestUnreachs')]);
}

if (why !== undefined) {
  describe.skip(`anti-spoofing through the network service (skipped: ${why})`, () => it('needs root', () => undefined));
} else {
  let dir: string;
  let store: Store;
  let svc: NetworkService;
  let plumber: NicPlumber;
  const nics = new Map<string, PlumbedNic>();

  beforeAll(async () => {
    addNs(HOST, made);
    addNs(LAN, made);
    // Reverse-path filtering off, so a forged source is dropped by our guard or not at all.
    for (const ns of [HOST, LAN]) for (const k of ['all', 'default']) inNs(ns, 'sysctl', '-qw', `net.ipv4.conf.${k}.rp_filter=0`);
    // The bridge network's LAN: its router (the IPAM gateway) lives in LAN, behind the uplink.
    vethBetween({ ns: HOST, name: 'up0' }, { ns: LAN, name: 'lan0', cidr: `10.${X}.1.1/24` });
    dir = await mkdtemp(join(tmpdir(), 'nodevirt-antispoof-'));
    store = createStore({ stateDir: dir });
    await store.open();
    const links = createLinks({ netns: HOST });
    const nft = createNftables({ netns: HOST });
    svc = createNetworkService({ store, adapters: { links, nft, host: createNetHost({ netns: HOST }) } });
    plumber = createNicPlumber({ links, nft, records: store.sublevel<NicRecord>('nics') });
  });

  afterAll(async () => {
    for (const n of nics.values()) await plumber.unplumb(n.id).catch(() => undefined);
    delNs(made);
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const cases: Case[] = [
    {
      type: 'bridge with IPAM',
      spec: { type: 'bridge', bridge: { managed: true, uplinks: ['up0'] }, ipam: { subnet: `10.${X}.1.0/24`, gateway: `10.${X}.1.1` } },
      receiverNs: LAN,
      dst: () => ({ ip: `10.${X}.1.1`, mac: macOf(LAN, 'lan0') }),
      family: 'bridge',
      ports: [5555, 68, 67],
    },
    {
      type: 'nat',
      spec: { type: 'nat', nat: { subnet: `10.${X}.2.0/24` } },
      receiverNs: HOST,
      dst: () => ({ ip: `10.${X}.2.1`, mac: '' }),
      family: 'bridge',
      ports: [5555, 68],
    },
    {
      type: 'routed',
      spec: { type: 'routed', routed: { pool: `10.${X}.3.16/28` } },
      receiverNs: HOST,
      dst: () => ({ ip: '169.254.1.1', mac: '' }),
      family: 'inet',
      ports: [5555, 68],
    },
  ];

  describe('anti-spoofing through the network service (real kernel, private netns)', () => {
    cases.forEach((c, i) => {
      it(`${c.type}: forged MAC, forged IP and a DHCPOFFER from the VM are dropped; its own datagrams arrive`, async () => {
        const name = `g${i}`;
        await svc.put(name, c.spec);
        const att = await svc.nicAttachment(name);
        const vmId = `${run}-vm${i}`;
        const ip = await (await svc.ipam(name)).allocate(`${vmId}/net0`);
        const mac = `0e:5a:${X.toString(16)}:00:00:0${i + 1}`;
        const nic = await plumber.plumb({ vmId, nicId: 'net0', mac, ipv4: ip, mtu: att.mtu, ...(att.bridge === undefined ? {} : { bridge: att.bridge }) });
        nics.set(name, nic);
        // Routed: the host's gateway address and the /32 route come with the network's refresh.
        await svc.refresh(name);
        const d = c.dst();
        // Bridged to the host's own bridge (NAT) or the host end of the tap (routed): that link's MAC.
        const dstMac = d.mac !== '' ? d.mac : macOf(HOST, att.bridge ?? nic.tap);

        const rx = receiveUdp(c.receiverNs, c.ports);
        try {
          await rx.ready;
          const mark = (s: string) => Buffer.from(`${s}-${run}`);
          const to = { dstMac, dst: d.ip, sport: 5000, dport: 5555 };
          const frames = {
            legit: udpFrame({ ...to, srcMac: mac, src: ip, payload: mark('legit') }),
            forgedMac: udpFrame({ ...to, srcMac: '0e:66:66:66:66:66', src: ip, payload: mark('forged-mac') }),
            forgedIp: udpFrame({ ...to, srcMac: mac, src: `10.${X}.9.99`, payload: mark('forged-ip') }),
            // A rogue DHCP server on the VM, broadcasting an OFFER to every client of the segment.
            offer: udpFrame({ srcMac: mac, src: ip, dst: '255.255.255.255', sport: 67, dport: 68, payload: dhcpOfferPayload(`10.${X}.9.50`, '0e:77:77:77:77:77') }),
            // The same broadcast to port 68 from an ordinary port arrives: without the guard the OFFER would have.
            legit68: udpFrame({ srcMac: mac, src: ip, dst: '255.255.255.255', sport: 5000, dport: 68, payload: mark('legit-68') }),
            // The VM's own DHCP traffic is for its server on the tap (whose packet socket sees it before any
            // hook): a DISCOVER must not reach the LAN, and a renewal unicast to the gateway must not reach the
            // host stack, which would answer it with ICMP port unreachable.
            discover: udpFrame({ srcMac: mac, src: '0.0.0.0', dst: '255.255.255.255', sport: 68, dport: 67, payload: mark('discover') }),
            renew: udpFrame({ srcMac: mac, dstMac, src: ip, dst: d.ip, sport: 68, dport: 67, payload: mark('renew') }),
            end: udpFrame({ ...to, srcMac: mac, src: ip, payload: mark('end') }),
            end68: udpFrame({ srcMac: mac, src: ip, dst: '255.255.255.255', sport: 5000, dport: 68, payload: mark('end-68') }),
          };
          const before = dropped(c.family, nic.tap);
          const unreachBefore = icmpUnreachSent(c.receiverNs);
          writeTapFrames(HOST, nic.tap, [frames.legit, frames.forgedMac, frames.forgedIp, frames.offer, frames.legit68, frames.discover, frames.renew, frames.end, frames.end68]);
          // Frames of one tap are handled in order: once both ports' "end" is in, everything before was decided.
          await Promise.all([rx.until(mark('end')), rx.until(mark('end-68'))]);
          const seen = rx.got.map((g) => `${g.port} ${g.from} ${g.payload.subarray(0, 4).toString('hex') === '02010600' ? 'DHCPOFFER' : g.payload.toString()}`);
          // Two sockets: the receiver's reading order across them is its own, so compare as a set.
          expect(seen.sort()).toEqual([`5555 ${ip} end-${run}`, `5555 ${ip} legit-${run}`, `68 ${ip} end-68-${run}`, `68 ${ip} legit-68-${run}`]);
          expect(dropped(c.family, nic.tap) - before).toBe(5);
          expect(icmpUnreachSent(c.receiverNs) - unreachBefore).toBe(0);
        } finally {
          rx.stop();
        }
      });
    });

    it('the NICs unplumb and the networks delete without leaving a guard table or a network table', async () => {
      for (const [name, n] of nics) {
        expect(await plumber.unplumb(n.id)).toBe(true);
        await (await svc.ipam(name)).release(`${n.vmId}/net0`);
        await svc.delete(name);
      }
      nics.clear();
      expect(inNs(HOST, 'nft', 'list', 'tables')).toBe('');
      expect(ipn(HOST, '-o', 'link', 'show').split('\n').filter((l) => /^\d+: nv[a-z][a-z2-7]{10}[@:]/.test(l))).toEqual([]);
    });
  });
}

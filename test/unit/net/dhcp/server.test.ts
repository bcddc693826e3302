// Server semantics per RFC 2131: one reply per message type and REQUEST state, what is ignored, reply
// addressing (4.1), option order and fitting, events, and the per-interface throttles.
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { formatIpv4 } from '../../../../daemon/net/dhcp/addr.js';
import { decodeDhcp, messageTypeOf, type DhcpMessage } from '../../../../daemon/net/dhcp/codec.js';
import { decodeClasslessRoutes, decodeDomainSearch, MSG, OPT } from '../../../../daemon/net/dhcp/options.js';
import { createDhcpServerRegistry } from '../../../../daemon/net/dhcp/registry.js';
import { createDhcpServer, type DhcpReply } from '../../../../daemon/net/dhcp/server.js';
import { IP, IP_BYTES, MAC, MAC_BYTES, OTHER_MAC_BYTES, SERVER_IP, SERVER_IP_BYTES, opt, raw, testServer, type RawMessage } from './helpers.js';

function msg(m: RawMessage): DhcpMessage {
  const r = decodeDhcp(raw(m));
  if (!r.ok) throw new Error(r.reason);
  return r.message;
}

function replyOf(r: DhcpReply | null): DhcpMessage {
  expect(r).not.toBeNull();
  const d = decodeDhcp(r!.bytes);
  if (!d.ok) throw new Error(d.reason);
  return d.message;
}

const discover = (extra: number[] = [], m: RawMessage = {}) => msg({ options: [...opt(53, MSG.DISCOVER), ...extra, 255], ...m });
const request = (extra: number[], m: RawMessage = {}) => msg({ options: [...opt(53, MSG.REQUEST), ...extra, 255], ...m });

describe('DISCOVER -> OFFER', () => {
  it('offers the one IP with the RFC 2131 table 3 fields and the mandatory options', () => {
    const { server, events, now } = testServer();
    const req = discover([], { xid: 42, flags: 0x8000, secs: 9 });
    const out = server.handle(req)!;
    const o = replyOf(out);
    expect(o).toMatchObject({ op: 2, htype: 1, hlen: 6, hops: 0, xid: 42, secs: 0, flags: 0x8000, ciaddr: 0, siaddr: 0, giaddr: 0 });
    expect(formatIpv4(o.yiaddr)).toBe(IP);
    expect([...o.chaddr.subarray(0, 6)]).toEqual(MAC_BYTES);
    expect(messageTypeOf(o)).toBe(MSG.OFFER);
    expect([...o.options.get(OPT.SERVER_ID)!]).toEqual(SERVER_IP_BYTES);
    expect([...o.options.get(OPT.LEASE_TIME)!]).toEqual([0, 1, 0x51, 0x80]);
    expect([...o.options.get(OPT.RENEWAL_T1)!]).toEqual([0, 0, 0xa8, 0xc0]);
    expect([...o.options.get(OPT.REBINDING_T2)!]).toEqual([0, 1, 0x27, 0x50]);
    expect([...o.options.get(OPT.SUBNET_MASK)!]).toEqual([255, 255, 255, 0]);
    expect([...o.options.get(OPT.BROADCAST)!]).toEqual([192, 168, 100, 255]);
    expect(Buffer.from(o.options.get(OPT.HOSTNAME)!).toString()).toBe('web1');
    expect(out.bytes.length).toBeGreaterThanOrEqual(300);
    expect(events).toEqual([{ type: 'offer', mac: MAC, ip: IP, at: now }]);
  });

  it('puts requested options in the client order right after the message type, then the rest', () => {
    const { server } = testServer();
    const o = replyOf(server.handle(discover(opt(55, 15, 6, 3, 1, 99, 12))));
    const keys = [...o.options.keys()];
    expect(keys.slice(0, 6)).toEqual([53, 15, 6, 3, 1, 12]);
    expect(keys).toEqual(expect.arrayContaining([54, 51, 58, 59, 28, 26]));
  });

  it('sends option 3 next to 121 and adds the default route to 121 (RFC 3442 clients ignore 3)', () => {
    const { server } = testServer({ routes: [{ destination: '10.0.0.0/8', gateway: '192.168.100.254' }], search: ['vm.example', 'example'] });
    const o = replyOf(server.handle(discover(opt(55, 121, 3, 119))));
    expect([...o.options.keys()].slice(0, 4)).toEqual([53, 121, 3, 119]);
    expect(decodeClasslessRoutes(o.options.get(121))!.map((r) => `${formatIpv4(r.destination)}/${r.prefixLength} ${formatIpv4(r.gateway)}`)).toEqual([
      '10.0.0.0/8 192.168.100.254',
      '0.0.0.0/0 192.168.100.1',
    ]);
    expect([...o.options.get(3)!]).toEqual(SERVER_IP_BYTES);
    expect(decodeDomainSearch(o.options.get(119))).toEqual(['vm.example', 'example']);
  });

  it('echoes the client identifier (RFC 6842) unless it is shorter than RFC 2132 allows', () => {
    const { server } = testServer();
    expect([...replyOf(server.handle(discover(opt(61, 1, ...MAC_BYTES)))).options.get(61)!]).toEqual([1, ...MAC_BYTES]);
    expect(replyOf(server.handle(discover(opt(61)))).options.has(61)).toBe(false);
    const long = new Array<number>(255).fill(7);
    expect(replyOf(server.handle(discover(opt(61, ...long)))).options.get(61)!.length).toBe(255);
  });
});

describe('REQUEST in each RFC 2131 state', () => {
  const sid = opt(54, ...SERVER_IP_BYTES);
  const reqIp = (b: number[]) => opt(50, ...b);

  it('SELECTING: our server id and our IP -> ACK', () => {
    const { server, events } = testServer();
    const a = replyOf(server.handle(request([...sid, ...reqIp(IP_BYTES)])));
    expect(messageTypeOf(a)).toBe(MSG.ACK);
    expect(formatIpv4(a.yiaddr)).toBe(IP);
    expect(a.options.has(OPT.LEASE_TIME)).toBe(true);
    expect(events.map((e) => e.type)).toEqual(['ack']);
  });

  it('SELECTING: our server id but another IP -> NAK; another server id -> silence', () => {
    const { server, events } = testServer();
    const n = replyOf(server.handle(request([...sid, ...reqIp([192, 168, 100, 11])])));
    expect(messageTypeOf(n)).toBe(MSG.NAK);
    expect([n.yiaddr, n.ciaddr]).toEqual([0, 0]);
    expect([...n.options.keys()]).toEqual([53, 54]);
    expect(server.handle(request([...opt(54, 192, 168, 100, 2), ...reqIp(IP_BYTES)]))).toBeNull();
    expect(server.handle(request([...opt(54, 1, 2, 3), ...reqIp(IP_BYTES)]))).toBeNull();
    expect(events.map((e) => [e.type, e.ip])).toEqual([['nak', '192.168.100.11']]);
  });

  it('INIT-REBOOT: requested IP ours -> ACK, else NAK (broadcast)', () => {
    const { server } = testServer();
    expect(messageTypeOf(replyOf(server.handle(request(reqIp(IP_BYTES)))))).toBe(MSG.ACK);
    const nak = server.handle(request(reqIp([10, 0, 0, 5])))!;
    expect(messageTypeOf(replyOf(nak))).toBe(MSG.NAK);
    expect(nak.to).toMatchObject({ ip: 0xffffffff, broadcast: true, port: 68 });
  });

  it('RENEWING/REBINDING: ciaddr ours -> ACK unicast to ciaddr with ciaddr echoed, else NAK', () => {
    const { server } = testServer();
    const ack = server.handle(request([], { ciaddr: IP_BYTES }))!;
    const a = replyOf(ack);
    expect(messageTypeOf(a)).toBe(MSG.ACK);
    expect(formatIpv4(a.ciaddr)).toBe(IP);
    expect(ack.to).toMatchObject({ ip: a.ciaddr, broadcast: false, port: 68 });
    expect(messageTypeOf(replyOf(server.handle(request([], { ciaddr: [192, 168, 100, 99] }))))).toBe(MSG.NAK);
  });

  it('a REQUEST that fits no state (no server id, no requested IP, no ciaddr) is ignored', () => {
    const { server } = testServer();
    expect(server.handle(request([]))).toBeNull();
  });
});

describe('DECLINE, RELEASE, INFORM', () => {
  it('DECLINE of our IP is recorded, emitted and logged once; nothing is sent', () => {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }));
    const { server, events } = testServer({ logger });
    const decline = msg({ options: [...opt(53, MSG.DECLINE), ...opt(50, ...IP_BYTES), ...opt(54, ...SERVER_IP_BYTES), 255] });
    expect(server.handle(decline)).toBeNull();
    expect(server.handle(decline)).toBeNull();
    expect(events.map((e) => e.type)).toEqual(['decline', 'decline']);
    expect(server.stats()).toMatchObject({ declines: 2 });
    expect(lines.filter((l) => l.includes('declined'))).toHaveLength(1);
  });

  it('RELEASE of our IP is recorded and emitted; a RELEASE for another address is ignored', () => {
    const { server, events } = testServer();
    expect(server.handle(msg({ ciaddr: IP_BYTES, options: [...opt(53, MSG.RELEASE), ...opt(54, ...SERVER_IP_BYTES), 255] }))).toBeNull();
    expect(server.handle(msg({ ciaddr: [1, 1, 1, 1], options: [...opt(53, MSG.RELEASE), 255] }))).toBeNull();
    expect(events.map((e) => e.type)).toEqual(['release']);
    expect(server.stats().releases).toBe(1);
  });

  it('INFORM -> ACK without yiaddr and without any lease time, unicast to ciaddr', () => {
    const { server, events } = testServer();
    const out = server.handle(msg({ ciaddr: [192, 168, 100, 50], options: [...opt(53, MSG.INFORM), ...opt(55, 51, 58, 59, 1, 6), 255] }))!;
    const a = replyOf(out);
    expect(messageTypeOf(a)).toBe(MSG.ACK);
    expect(a.yiaddr).toBe(0);
    expect(formatIpv4(a.ciaddr)).toBe('192.168.100.50');
    expect([51, 58, 59].some((c) => a.options.has(c))).toBe(false);
    expect([...a.options.keys()].slice(0, 3)).toEqual([53, 1, 6]);
    expect(out.to).toMatchObject({ ip: a.ciaddr, port: 68, broadcast: false });
    expect(events.map((e) => [e.type, e.ip])).toEqual([['inform', '192.168.100.50']]);
  });
});

describe('ignored silently', () => {
  it('another MAC, a BOOTREPLY, wrong htype/hlen, no or unknown message type', () => {
    const { server, events } = testServer();
    expect(server.handle(discover([], { chaddr: OTHER_MAC_BYTES }))).toBeNull();
    expect(server.handle(discover([], { op: 2 }))).toBeNull();
    expect(server.handle(discover([], { htype: 6 }))).toBeNull();
    expect(server.handle(discover([], { hlen: 16 }))).toBeNull();
    expect(server.handle(msg({ options: [255] }))).toBeNull();
    expect(server.handle(msg({ options: [...opt(53, 9), 255] }))).toBeNull();
    expect(server.handle(msg({ options: [...opt(53, 1, 1), 255] }))).toBeNull();
    expect(events).toEqual([]);
    expect(server.stats()).toMatchObject({ received: 7, ignored: 7, replied: 0, errors: 0 });
  });
});

describe('reply addressing (RFC 2131 4.1)', () => {
  it('unicasts to chaddr/yiaddr without the broadcast flag, broadcasts with it', () => {
    const { server } = testServer();
    expect(server.handle(discover())!.to).toEqual({ ip: 0xc0a8640a, mac: 0x525400123456, port: 68, broadcast: false, viaRelay: false });
    expect(server.handle(discover([], { flags: 0x8000 }))!.to).toEqual({ ip: 0xffffffff, mac: 0xffffffffffff, port: 68, broadcast: true, viaRelay: false });
  });

  it('replies to the relay at giaddr:67 and sets the broadcast bit on a relayed NAK', () => {
    const { server } = testServer();
    const relayed = server.handle(discover([], { giaddr: [10, 1, 2, 3], hops: 1 }))!;
    expect(relayed.to).toMatchObject({ ip: 0x0a010203, port: 67, viaRelay: true });
    expect(replyOf(relayed).giaddr).toBe(0x0a010203);
    const nak = server.handle(request(opt(50, 9, 9, 9, 9), { giaddr: [10, 1, 2, 3] }))!;
    expect(replyOf(nak).flags & 0x8000).toBe(0x8000);
  });
});

describe('maximum message size (57)', () => {
  const big = { search: Array.from({ length: 12 }, (_, i) => `zone${i}.sub${i}.example${i}.org`), routes: Array.from({ length: 30 }, (_, i) => ({ destination: `10.${i}.0.0/16`, gateway: '192.168.100.254' })) };

  it('without 57 the reply stays within 576 octets of IP datagram, using overload and shedding optional options', () => {
    const { server } = testServer(big);
    const out = server.handle(discover(opt(55, 1, 3, 6, 121, 119)))!;
    expect(out.bytes.length).toBeLessThanOrEqual(548);
    const o = replyOf(out);
    for (const c of [53, 54, 51, 1, 3]) expect(o.options.has(c)).toBe(true);
  });

  it('57 is clamped to 576..MTU: 0 behaves like 576, 65535 like the MTU', () => {
    const { server } = testServer({ ...big, mtu: 1500 });
    expect(server.handle(discover(opt(57, 0, 0)))!.bytes.length).toBeLessThanOrEqual(548);
    const large = server.handle(discover(opt(57, 0xff, 0xff)))!;
    expect(large.bytes.length).toBeGreaterThan(548);
    expect(large.bytes.length).toBeLessThanOrEqual(1500 - 28);
    expect(decodeClasslessRoutes(replyOf(large).options.get(121))).toHaveLength(31);
  });
});

describe('throttles', () => {
  it('the token bucket drops a flood and refills with time, per server', () => {
    const a = testServer({ rateLimit: { ratePerSec: 10, burst: 5 } });
    const b = testServer({ rateLimit: { ratePerSec: 10, burst: 5 } });
    const bytes = raw({ options: [...opt(53, 1), 255] });
    const answered = Array.from({ length: 50 }, () => a.server.handleDatagram(bytes)).filter((r) => r !== null).length;
    expect(answered).toBe(5);
    expect(a.server.stats().throttled).toBe(45);
    expect(b.server.handleDatagram(bytes)).not.toBeNull();
    a.tick(1000);
    expect(Array.from({ length: 50 }, () => a.server.handleDatagram(bytes)).filter((r) => r !== null).length).toBe(5);
  });

  it('bad packets are logged at most once per interval, with the suppressed count', () => {
    const lines: Array<{ reason: string; suppressed: number }> = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c))), cb()) }));
    const t = testServer({ logger, logIntervalMs: 10_000 });
    for (let i = 0; i < 100; i++) t.server.handleDatagram(new Uint8Array(10));
    t.tick(10_000);
    t.server.handleDatagram(raw({ cookie: [1, 2, 3, 4] }));
    expect(lines.map((l) => [l.reason, l.suppressed])).toEqual([
      ['too-short', 0],
      ['bad-cookie', 99],
    ]);
    expect(t.server.stats().malformed).toBe(101);
  });
});

describe('configuration and registry', () => {
  it('rejects invalid configuration with CONFIG_INVALID', () => {
    const base = { mac: MAC, ip: IP, prefixLength: 24, serverIp: SERVER_IP };
    for (const bad of [{ mac: 'zz' }, { ip: '1.2.3' }, { prefixLength: 0 }, { mtu: 100 }, { leaseSeconds: 0 }, { dns: ['x'] }, { routes: [{ destination: '10.0.0.0', gateway: '1.1.1.1' }] }, { hostname: '' }]) {
      expect(() => createDhcpServer({ ...base, ...bad })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    }
  });

  it('an infinite lease sends 0xffffffff and no T1/T2', () => {
    const { server } = testServer({ leaseSeconds: 0xffffffff });
    const o = replyOf(server.handle(discover()));
    expect([...o.options.get(51)!]).toEqual([255, 255, 255, 255]);
    expect(o.options.has(58) || o.options.has(59)).toBe(false);
  });

  it('the registry adds, finds (by string, key or chaddr), refuses duplicates and removes', () => {
    const reg = createDhcpServerRegistry();
    const { server } = testServer();
    reg.add(server);
    expect(reg.lookup('52-54-00-12-34-56')).toBe(server);
    expect(reg.lookup(server.macKey)).toBe(server);
    expect(reg.lookupChaddr(Uint8Array.from([...MAC_BYTES, 0, 0]))).toBe(server);
    expect(reg.lookupChaddr(Uint8Array.from(OTHER_MAC_BYTES))).toBeUndefined();
    expect(() => reg.add(testServer().server)).toThrow(expect.objectContaining({ code: 'CONFLICT' }));
    expect(reg.remove(MAC)).toBe(true);
    expect(reg.remove(MAC)).toBe(false);
    expect(reg.size).toBe(0);
  });

  it('a throwing event listener does not cost the client its reply', () => {
    const { server } = testServer({
      onEvent: () => {
        throw new Error('listener bug');
      },
    });
    expect(server.handle(discover())).not.toBeNull();
  });
});

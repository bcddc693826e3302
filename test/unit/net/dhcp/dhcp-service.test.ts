// The DHCP service's interface lifecycle against a stateful fake link table and fake packet sockets:
// open when the link exists, wait for it, close on deletion, reopen on re-creation, detach, events.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseMac } from '../../../../daemon/net/dhcp/addr.js';
import { decodeDhcp, messageTypeOf } from '../../../../daemon/net/dhcp/codec.js';
import { createDhcpService, type DhcpInterfaceConfig, type LinkInfo } from '../../../../daemon/net/dhcp/dhcp-service.js';
import { buildFrame, parseFrame } from '../../../../daemon/net/dhcp/frame.js';
import { MSG } from '../../../../daemon/net/dhcp/options.js';
import type { OpenPacketSocket, PacketSocketError } from '../../../../daemon/net/dhcp/packet-transport.js';
import { createDhcpServerRegistry } from '../../../../daemon/net/dhcp/registry.js';
import type { DhcpEvent } from '../../../../daemon/net/dhcp/server.js';
import { IP, MAC, SERVER_IP, opt, raw } from './helpers.js';

interface FakeSock {
  ifname: string;
  ifindex: number;
  sent: Uint8Array[];
  closed: boolean;
  deliver(f: Uint8Array): void;
  fail(code: string): void;
}

/** Links by name, and packet sockets that, like the kernel's, only bind to a link that exists. */
function fakeKernel() {
  const links = new Map<string, LinkInfo>();
  const sockets: FakeSock[] = [];
  let nextIndex = 10;
  const open: OpenPacketSocket = (ifname, filter, onFrame) => {
    const l = links.get(ifname);
    if (l === undefined) throw Object.assign(new Error(`no such device ${ifname}`), { code: 'ENODEV' });
    const s: FakeSock = {
      ifname,
      ifindex: l.ifindex,
      sent: [],
      closed: false,
      deliver: (f) => {
        if (!s.closed) onFrame(f);
      },
      fail: (code) => filter.onError?.(Object.assign(new Error(code), { code }) as PacketSocketError),
    };
    sockets.push(s);
    return { ifindex: s.ifindex, send: (f) => void s.sent.push(f), close: () => void (s.closed = true) };
  };
  return {
    open,
    sockets,
    link: (n: string) => links.get(n),
    addLink(name: string, mac = 'fe:54:00:00:00:01') {
      links.set(name, { ifindex: nextIndex++, mac });
    },
    delLink(name: string) {
      links.delete(name);
    },
    live: () => sockets.filter((s) => !s.closed),
  };
}

const cfg = (ifname: string, over: Partial<DhcpInterfaceConfig> = {}): DhcpInterfaceConfig => ({
  ifname,
  mac: MAC,
  ip: IP,
  prefixLength: 24,
  serverIp: SERVER_IP,
  router: SERVER_IP,
  ...over,
});

const discover = () =>
  buildFrame({
    srcMac: parseMac(MAC)!,
    dstMac: 0xffffffffffff,
    srcIp: 0,
    dstIp: 0xffffffff,
    srcPort: 68,
    dstPort: 67,
    payload: raw({ options: [...opt(53, MSG.DISCOVER), 255] }),
  });

afterEach(() => {
  vi.useRealTimers();
});

describe('dhcp service', () => {
  it('does nothing until started, then serves an existing link from its own MAC', () => {
    const k = fakeKernel();
    k.addLink('nvdtap0', 'fe:54:00:aa:bb:cc');
    const svc = createDhcpService({ openPacketSocket: k.open, link: k.link });
    svc.attach(cfg('nvdtap0'));
    expect(k.sockets).toHaveLength(0);
    svc.start();
    expect(k.live().map((s) => s.ifname)).toEqual(['nvdtap0']);
    k.sockets[0]!.deliver(discover());
    const p = parseFrame(k.sockets[0]!.sent[0]!);
    expect(p.ok && p.frame.srcMac).toBe(parseMac('fe:54:00:aa:bb:cc'));
    const d = p.ok ? decodeDhcp(p.frame.payload) : undefined;
    expect(d?.ok && messageTypeOf(d.message)).toBe(MSG.OFFER);
    expect(svc.status()).toEqual([expect.objectContaining({ ifname: 'nvdtap0', mac: MAC, ip: IP, open: true, ifindex: 10 })]);
    svc.stop();
    expect(k.live()).toHaveLength(0);
  });

  it('waits for a missing link on its poll timer and opens it once it appears', () => {
    vi.useFakeTimers();
    const k = fakeKernel();
    const svc = createDhcpService({ openPacketSocket: k.open, link: k.link, pollMs: 500 });
    svc.start();
    svc.attach(cfg('nvdtap1'));
    expect(svc.status()[0]!.open).toBe(false);
    vi.advanceTimersByTime(2000);
    expect(k.sockets).toHaveLength(0);
    k.addLink('nvdtap1');
    vi.advanceTimersByTime(500);
    expect(k.live().map((s) => s.ifname)).toEqual(['nvdtap1']);
    svc.stop();
  });

  it('linkChanged opens at once without waiting for the timer', () => {
    const k = fakeKernel();
    const svc = createDhcpService({ openPacketSocket: k.open, link: k.link, pollMs: 3_600_000 });
    svc.start();
    svc.attach(cfg('nvdtap2'));
    k.addLink('nvdtap2');
    svc.linkChanged('nvdtap2');
    expect(k.live()).toHaveLength(1);
    svc.stop();
  });

  it('closes the socket when the link is deleted, keeps it when the link only went down, reopens a re-created link', () => {
    vi.useFakeTimers();
    const k = fakeKernel();
    k.addLink('nvdtap3');
    const svc = createDhcpService({ openPacketSocket: k.open, link: k.link, pollMs: 500 });
    svc.attach(cfg('nvdtap3'));
    svc.start();
    const first = k.sockets[0]!;
    first.fail('ENETDOWN'); // link down, still there
    expect(first.closed).toBe(false);
    k.delLink('nvdtap3');
    first.fail('ENETDOWN');
    expect(first.closed).toBe(true);
    expect(svc.status()[0]!.open).toBe(false);
    k.addLink('nvdtap3'); // same name, new ifindex
    vi.advanceTimersByTime(500);
    expect(k.live()).toHaveLength(1);
    expect(k.live()[0]!.ifindex).not.toBe(first.ifindex);
    // Deleted and re-created between two errors: the stale socket is swapped for one on the new link.
    const second = k.live()[0]!;
    k.delLink('nvdtap3');
    k.addLink('nvdtap3');
    second.fail('ENETDOWN');
    expect(second.closed).toBe(true);
    expect(k.live()).toHaveLength(1);
    svc.stop();
  });

  it('a failing open is retried on the next poll and not logged every time', () => {
    vi.useFakeTimers();
    const k = fakeKernel();
    k.addLink('nvdtap4');
    let fails = 3;
    const warn = vi.fn();
    const logger = { warn, info: () => {}, debug: () => {}, error: () => {}, child: () => logger } as never;
    const open: OpenPacketSocket = (i, f, cb) => {
      if (fails-- > 0) throw Object.assign(new Error('Operation not permitted'), { code: 'EPERM' });
      return k.open(i, f, cb);
    };
    const svc = createDhcpService({ openPacketSocket: open, link: k.link, pollMs: 100, logger });
    svc.attach(cfg('nvdtap4'));
    svc.start();
    vi.advanceTimersByTime(250);
    expect(k.live()).toHaveLength(0);
    expect(warn).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(100);
    expect(k.live()).toHaveLength(1);
    svc.stop();
  });

  it('detach closes the socket and frees the MAC in the shared registry; attach refuses duplicates', () => {
    const k = fakeKernel();
    k.addLink('nvdtap5');
    const registry = createDhcpServerRegistry();
    const svc = createDhcpService({ openPacketSocket: k.open, link: k.link, registry });
    svc.start();
    svc.attach(cfg('nvdtap5'));
    expect(registry.lookup(MAC)).toBeDefined();
    expect(() => svc.attach(cfg('nvdtap5', { mac: '52:54:00:00:00:99' }))).toThrow(/already has a DHCP server/);
    expect(() => svc.attach(cfg('nvdtap6'))).toThrow(/already registered/);
    expect(() => svc.attach(cfg('bad/name'))).toThrow(/not an interface name/);
    expect(svc.detach('nvdtap5')).toBe(true);
    expect(k.live()).toHaveLength(0);
    expect(registry.size).toBe(0);
    expect(svc.detach('nvdtap5')).toBe(false);
    svc.stop();
  });

  it('sends lease events to the sink with the interface name', () => {
    const k = fakeKernel();
    k.addLink('nvdtap7');
    const events: Array<[string, DhcpEvent]> = [];
    const svc = createDhcpService({ openPacketSocket: k.open, link: k.link, leases: { record: (i, e) => events.push([i, e]) }, now: () => 1234 });
    svc.attach(cfg('nvdtap7'));
    svc.start();
    k.sockets[0]!.deliver(discover());
    expect(events).toEqual([['nvdtap7', { type: 'offer', mac: MAC, ip: IP, at: 1234 }]]);
    svc.stop();
  });
});

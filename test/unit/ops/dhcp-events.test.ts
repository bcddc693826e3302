// The DHCP service publishes what changes a guest's address (ack, nak, decline, release) to the event log,
// and a slow event subscriber never slows or breaks answering packets.
import { describe, expect, it } from 'vitest';
import { parseMac } from '../../../daemon/net/dhcp/addr.js';
import { createDhcpService, type LinkInfo } from '../../../daemon/net/dhcp/dhcp-service.js';
import { buildFrame } from '../../../daemon/net/dhcp/frame.js';
import { MSG } from '../../../daemon/net/dhcp/options.js';
import type { OpenPacketSocket } from '../../../daemon/net/dhcp/packet-transport.js';
import { createEventLog } from '../../../daemon/ops/event-log.js';
import { IP, IP_BYTES, MAC, SERVER_IP, SERVER_IP_BYTES, opt, raw } from '../net/dhcp/helpers.js';

/** One link and the packet socket bound to it: frames go in through deliver(), replies are counted. */
function oneLink(ifname: string) {
  const links = new Map<string, LinkInfo>([[ifname, { ifindex: 7, mac: 'fe:54:00:00:00:01' }]]);
  let deliver: ((f: Uint8Array) => void) | undefined;
  const sent: Uint8Array[] = [];
  const open: OpenPacketSocket = (name, _filter, onFrame) => {
    if (!links.has(name)) throw Object.assign(new Error('no such device'), { code: 'ENODEV' });
    deliver = onFrame;
    return { ifindex: 7, send: (f) => void sent.push(f), close: () => undefined };
  };
  return { open, link: (n: string) => links.get(n), deliver: (f: Uint8Array) => deliver!(f), sent };
}

const frame = (options: number[], ciaddr: number[] = [0, 0, 0, 0]) =>
  buildFrame({
    srcMac: parseMac(MAC)!,
    dstMac: 0xffffffffffff,
    srcIp: 0,
    dstIp: 0xffffffff,
    srcPort: 68,
    dstPort: 67,
    payload: raw({ ciaddr, options: [...options, 255] }),
  });

const discover = () => frame(opt(53, MSG.DISCOVER));
const request = (ip: number[]) => frame([...opt(53, MSG.REQUEST), ...opt(50, ...ip), ...opt(54, ...SERVER_IP_BYTES)]);
const decline = () => frame([...opt(53, MSG.DECLINE), ...opt(50, ...IP_BYTES), ...opt(54, ...SERVER_IP_BYTES)]);
const release = () => frame([...opt(53, MSG.RELEASE), ...opt(54, ...SERVER_IP_BYTES)], IP_BYTES);

function serve(ifname: string, events: ReturnType<typeof createEventLog>) {
  const k = oneLink(ifname);
  const svc = createDhcpService({ openPacketSocket: k.open, link: k.link, events, pollMs: 60_000 });
  svc.start();
  svc.attach({ ifname, mac: MAC, ip: IP, prefixLength: 24, serverIp: SERVER_IP, router: SERVER_IP });
  return { svc, k };
}

describe('DHCP events', () => {
  it('publishes dhcp.ack, dhcp.nak, dhcp.decline and dhcp.release with interface, mac and ip; offers are not events', async () => {
    const log = createEventLog();
    const sub = log.subscribe({ types: ['dhcp.'] });
    const { svc, k } = serve('nvtapev1', log);
    try {
      k.deliver(discover());
      k.deliver(request(IP_BYTES));
      k.deliver(request([192, 168, 100, 99]));
      k.deliver(decline());
      k.deliver(release());
      expect(k.sent.length).toBe(3); // offer, ack, nak
      const got = [];
      for (let i = 0; i < 4; i++) got.push(await sub.next());
      expect(got.map((e) => [e?.type, e?.subject, e?.data])).toEqual([
        ['dhcp.ack', 'interfaces/nvtapev1', { interface: 'nvtapev1', mac: MAC, ip: IP }],
        ['dhcp.nak', 'interfaces/nvtapev1', { interface: 'nvtapev1', mac: MAC, ip: '192.168.100.99' }],
        ['dhcp.decline', 'interfaces/nvtapev1', { interface: 'nvtapev1', mac: MAC, ip: IP }],
        ['dhcp.release', 'interfaces/nvtapev1', { interface: 'nvtapev1', mac: MAC, ip: IP }],
      ]);
    } finally {
      svc.stop();
      sub.close();
    }
  });

  it('a subscriber that never reads is dropped while every request is still answered', () => {
    const log = createEventLog({ maxQueued: 10 });
    const stuck = log.subscribe();
    const { svc, k } = serve('nvtapev2', log);
    try {
      // Under the default per-interface rate limit (burst 200).
      for (let i = 0; i < 150; i++) k.deliver(request(IP_BYTES));
      expect(k.sent.length).toBe(150);
      expect(stuck.dropped).toBe(true);
      expect(log.subscriberCount()).toBe(0);
      expect(log.lastId()).toMatch(/-150$/);
    } finally {
      svc.stop();
    }
  });

  it('a sink that throws costs nothing on the packet path', () => {
    const k = oneLink('nvtapev3');
    const svc = createDhcpService({ openPacketSocket: k.open, link: k.link, events: { publish: () => { throw new Error('sink down'); } }, pollMs: 60_000 });
    svc.start();
    svc.attach({ ifname: 'nvtapev3', mac: MAC, ip: IP, prefixLength: 24, serverIp: SERVER_IP, router: SERVER_IP });
    try {
      k.deliver(request(IP_BYTES));
      k.deliver(request(IP_BYTES));
      expect(k.sent.length).toBe(2);
    } finally {
      svc.stop();
    }
  });
});

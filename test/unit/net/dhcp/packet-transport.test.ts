// Packet transport wiring with an in-memory packet socket standing in for host/native.ts: frames in,
// reply frames out, the chaddr/source-MAC rule, and the exception boundary.
import { describe, expect, it } from 'vitest';
import { parseMac } from '../../../../daemon/net/dhcp/addr.js';
import { decodeDhcp, messageTypeOf } from '../../../../daemon/net/dhcp/codec.js';
import { buildFrame, parseFrame } from '../../../../daemon/net/dhcp/frame.js';
import { MSG } from '../../../../daemon/net/dhcp/options.js';
import { createPacketTransport, type OpenPacketSocket } from '../../../../daemon/net/dhcp/packet-transport.js';
import type { DhcpServer } from '../../../../daemon/net/dhcp/server.js';
import { opt, raw, testServer } from './helpers.js';

const GUEST = parseMac('52:54:00:12:34:56')!;
const HOST = 'fe:54:00:00:00:01';

function fakeSocket() {
  const sent: Uint8Array[] = [];
  let deliver: ((f: Uint8Array) => void) | undefined;
  let closed = false;
  const open: OpenPacketSocket = (ifname, filter, onFrame) => {
    expect([ifname, filter.udpDstPort]).toEqual(['tap-test', 67]);
    deliver = onFrame;
    return { send: (f) => sent.push(f), close: () => (closed = true) };
  };
  return { open, sent, deliver: (f: Uint8Array) => deliver!(f), isClosed: () => closed };
}

const frameFrom = (srcMac: number, payload: Uint8Array) =>
  buildFrame({ srcMac, dstMac: 0xffffffffffff, srcIp: 0, dstIp: 0xffffffff, srcPort: 68, dstPort: 67, payload });

function start(server: DhcpServer) {
  const sock = fakeSocket();
  const t = createPacketTransport({ ifname: 'tap-test', server, hostMac: HOST, openPacketSocket: sock.open });
  t.start();
  return { sock, t };
}

describe('packet transport', () => {
  it('answers a DISCOVER frame with an OFFER frame from the host MAC and server IP to the guest', () => {
    const { server } = testServer();
    const { sock, t } = start(server);
    sock.deliver(frameFrom(GUEST, raw({ options: [...opt(53, MSG.DISCOVER), 255] })));
    expect(sock.sent).toHaveLength(1);
    const p = parseFrame(sock.sent[0]!, { verifyUdpChecksum: true });
    expect(p.ok).toBe(true);
    if (!p.ok) return;
    expect(p.frame).toMatchObject({ srcMac: parseMac(HOST), dstMac: GUEST, srcIp: 0xc0a86401, dstIp: 0xc0a8640a, srcPort: 67, dstPort: 68 });
    const d = decodeDhcp(p.frame.payload);
    expect(d.ok && messageTypeOf(d.message)).toBe(MSG.OFFER);
    t.stop();
    expect(sock.isClosed()).toBe(true);
  });

  it('ignores a frame whose chaddr is not its source MAC, and relayed requests on the tap', () => {
    const { server } = testServer();
    const { sock } = start(server);
    sock.deliver(frameFrom(parseMac('52:54:00:aa:bb:cc')!, raw({ options: [...opt(53, MSG.DISCOVER), 255] })));
    sock.deliver(frameFrom(GUEST, raw({ giaddr: [10, 0, 0, 1], options: [...opt(53, MSG.DISCOVER), 255] })));
    expect(sock.sent).toHaveLength(0);
    expect(server.stats().malformed).toBe(2);
  });

  it('survives a send that throws and keeps answering', () => {
    const { server } = testServer();
    let calls = 0;
    const open: OpenPacketSocket = (_i, _f, onFrame) => {
      deliver = onFrame;
      return {
        send: () => {
          calls++;
          throw new Error('ENOBUFS');
        },
        close: () => {},
      };
    };
    let deliver: ((f: Uint8Array) => void) | undefined;
    createPacketTransport({ ifname: 'tap-test', server, hostMac: HOST, openPacketSocket: open }).start();
    const f = frameFrom(GUEST, raw({ options: [...opt(53, MSG.DISCOVER), 255] }));
    expect(() => deliver!(f)).not.toThrow();
    expect(() => deliver!(f)).not.toThrow();
    expect(calls).toBe(2);
  });
});

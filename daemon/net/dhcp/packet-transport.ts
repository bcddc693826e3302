// The per-tap transport: whole Ethernet frames in from a packet socket (host/native.ts), reply frames
// out. handleFrame is the pure step; the socket opener is injected so this file never imports native/.
import type { Logger } from '../../lib/logger.js';
import { errorMessage } from '../../lib/errors.js';
import { parseMac, readMac } from './addr.js';
import { decodeDhcp } from './codec.js';
import { buildFrame, parseFrame } from './frame.js';
import { DHCP_CLIENT_PORT, DHCP_SERVER_PORT, type DhcpServer } from './server.js';

/** What host/native.ts openPacketSocket returns. */
export interface PacketSocket {
  send(frame: Uint8Array): void;
  close(): void;
  /** The kernel ifindex the socket is bound to: tells a recreated link of the same name apart. */
  readonly ifindex?: number;
}

/** An error the socket reports asynchronously, e.g. ENETDOWN when its link goes down or is deleted. */
export type PacketSocketError = Error & { code?: string };

export type OpenPacketSocket = (
  ifname: string,
  filter: { udpDstPort: number; onError?: (err: PacketSocketError) => void },
  onFrame: (frame: Uint8Array) => void,
) => PacketSocket;

/**
 * One frame from the guest to at most one frame back. Frames whose chaddr differs from the Ethernet
 * source are ignored: on a tap the source MAC is what the guest really uses, and answering a chaddr it
 * does not own would let one guest obtain (or probe) configuration meant for another.
 */
export function handleFrame(server: DhcpServer, frame: Uint8Array, hostMac: number, at: number): Uint8Array | null {
  if (!server.admit(at)) return null;
  const parsed = parseFrame(frame);
  if (!parsed.ok) {
    server.noteBadPacket(parsed.reason, at);
    return null;
  }
  const f = parsed.frame;
  if (f.dstPort !== DHCP_SERVER_PORT) {
    server.noteBadPacket('not-dhcp-port', at);
    return null;
  }
  const decoded = decodeDhcp(f.payload);
  if (!decoded.ok) {
    server.noteBadPacket(decoded.reason, at);
    return null;
  }
  if (readMac(decoded.message.chaddr, 0) !== f.srcMac) {
    server.noteBadPacket('chaddr-not-source-mac', at);
    return null;
  }
  const reply = server.handle(decoded.message, at);
  if (reply === null) return null;
  if (reply.to.viaRelay) {
    // A guest on a tap claiming to be a relay: nothing legitimate does that on this link.
    server.noteBadPacket('relayed-on-tap', at);
    return null;
  }
  return buildFrame({
    srcMac: hostMac,
    dstMac: reply.to.mac,
    srcIp: server.serverIpU32,
    dstIp: reply.to.ip,
    srcPort: DHCP_SERVER_PORT,
    dstPort: DHCP_CLIENT_PORT,
    payload: reply.bytes,
  });
}

export interface PacketTransportOptions {
  ifname: string;
  server: DhcpServer;
  /** Source MAC of our replies: the host side of the tap (or bridge) the guest sees as the server. */
  hostMac: string;
  openPacketSocket: OpenPacketSocket;
  /** Asynchronous socket errors (link down or deleted); without it they are logged. */
  onError?: (err: PacketSocketError) => void;
  logger?: Logger;
  now?: () => number;
}

export interface PacketTransport {
  /** Opens the socket; throws what openPacketSocket throws (ENODEV for a missing link). */
  start(): void;
  stop(): void;
  /** The bound socket's ifindex while started (undefined if the opener does not say). */
  readonly ifindex: number | undefined;
}

export function createPacketTransport(opts: PacketTransportOptions): PacketTransport {
  const hostMac = parseMac(opts.hostMac);
  if (hostMac === undefined) throw new Error(`packet transport: hostMac '${opts.hostMac}' is not a MAC`);
  const now = opts.now ?? Date.now;
  let sock: PacketSocket | undefined;
  let failures = 0;
  return {
    start() {
      if (sock !== undefined) return;
      const onError = opts.onError ?? ((err: PacketSocketError) => opts.logger?.warn({ ifname: opts.ifname, err: err.message }, 'dhcp: packet socket error'));
      const s = opts.openPacketSocket(opts.ifname, { udpDstPort: DHCP_SERVER_PORT, onError }, (frame) => {
        try {
          const out = handleFrame(opts.server, frame, hostMac, now());
          if (out !== null) s.send(out);
        } catch (e) {
          // The boundary: count, log the first and then every 1000th, keep serving.
          if (failures++ % 1000 === 0) {
            opts.logger?.error({ ifname: opts.ifname, err: errorMessage(e), failures }, 'dhcp: frame handling failed');
          }
        }
      });
      sock = s;
    },
    stop() {
      sock?.close();
      sock = undefined;
    },
    get ifindex() {
      return sock?.ifindex;
    },
  };
}

// Ethernet II / IPv4 / UDP framing for the per-tap packet transport: strict parse of what a guest sends,
// and the reply frame we write back (both checksums computed). Pure; no sockets here.
import { readMac, readU16, readU32, writeMac, writeU16, writeU32 } from './addr.js';

export const ETH_HLEN = 14;
const ETHERTYPE_IPV4 = 0x0800;
const IPPROTO_UDP = 17;
const IP_HLEN = 20;
const UDP_HLEN = 8;

export interface UdpFrame {
  srcMac: number;
  dstMac: number;
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  /** View into the frame: the UDP payload exactly as long as the UDP length says. */
  payload: Uint8Array;
}

export type FrameError =
  | 'short'
  | 'not-ipv4'
  | 'bad-ip-header'
  | 'bad-ip-checksum'
  | 'fragment'
  | 'not-udp'
  | 'bad-udp-length'
  | 'bad-udp-checksum';

export type FrameParseResult = { ok: true; frame: UdpFrame } | { ok: false; reason: FrameError };

/** RFC 1071 ones' complement sum of `len` octets at `off`, folded but not complemented. */
function sum16(buf: Uint8Array, off: number, len: number, acc: number): number {
  let s = acc;
  const end = off + (len & ~1);
  for (let i = off; i < end; i += 2) s += (buf[i]! << 8) | buf[i + 1]!;
  if (len & 1) s += buf[off + len - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function udpChecksum(buf: Uint8Array, ipOff: number, udpOff: number, udpLen: number): number {
  let s = sum16(buf, ipOff + 12, 8, 0); // source and destination addresses
  s += IPPROTO_UDP + udpLen;
  s = sum16(buf, udpOff, udpLen, s);
  const c = ~s & 0xffff;
  return c === 0 ? 0xffff : c;
}

/**
 * Parses a whole Ethernet frame as IPv4/UDP. Every length must agree: IHL within the total length,
 * the total length within the frame (Ethernet padding after it is allowed), and the UDP length equal
 * to the IP payload. Fragments are rejected: no DHCP client fragments, and reassembly would be state.
 * The UDP checksum is only verified on request: a guest with virtio checksum offload hands the tap
 * frames whose UDP checksum is still partial, and those are valid packets.
 */
export function parseFrame(buf: Uint8Array, opts: { verifyUdpChecksum?: boolean } = {}): FrameParseResult {
  if (buf.length < ETH_HLEN + IP_HLEN + UDP_HLEN) return { ok: false, reason: 'short' };
  if (readU16(buf, 12) !== ETHERTYPE_IPV4) return { ok: false, reason: 'not-ipv4' };
  const ip = ETH_HLEN;
  const vihl = buf[ip]!;
  const ihl = (vihl & 15) * 4;
  if (vihl >>> 4 !== 4 || ihl < IP_HLEN) return { ok: false, reason: 'bad-ip-header' };
  const totalLen = readU16(buf, ip + 2);
  if (totalLen < ihl + UDP_HLEN || ip + totalLen > buf.length) return { ok: false, reason: 'bad-ip-header' };
  if (sum16(buf, ip, ihl, 0) !== 0xffff) return { ok: false, reason: 'bad-ip-checksum' };
  if ((readU16(buf, ip + 6) & 0x3fff) !== 0) return { ok: false, reason: 'fragment' };
  if (buf[ip + 9] !== IPPROTO_UDP) return { ok: false, reason: 'not-udp' };
  const udp = ip + ihl;
  const udpLen = readU16(buf, udp + 4);
  if (udpLen !== totalLen - ihl) return { ok: false, reason: 'bad-udp-length' };
  if (opts.verifyUdpChecksum === true && readU16(buf, udp + 6) !== 0) {
    const saved = readU16(buf, udp + 6);
    // Checksum over the datagram including its own checksum field must come out as all ones.
    let s = sum16(buf, ip + 12, 8, 0) + IPPROTO_UDP + udpLen;
    s = sum16(buf, udp, udpLen, s);
    if (s !== 0xffff && !(saved === 0xffff && s === 0)) return { ok: false, reason: 'bad-udp-checksum' };
  }
  return {
    ok: true,
    frame: {
      dstMac: readMac(buf, 0),
      srcMac: readMac(buf, 6),
      srcIp: readU32(buf, ip + 12),
      dstIp: readU32(buf, ip + 16),
      srcPort: readU16(buf, udp),
      dstPort: readU16(buf, udp + 2),
      payload: buf.subarray(udp + UDP_HLEN, udp + udpLen),
    },
  };
}

export interface FrameSpec {
  srcMac: number;
  dstMac: number;
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
  ttl?: number;
}

/** Builds Ethernet + IPv4 (no options, DF clear, id 0) + UDP around `payload`, checksums filled in. */
export function buildFrame(spec: FrameSpec): Uint8Array {
  const udpLen = UDP_HLEN + spec.payload.length;
  const totalLen = IP_HLEN + udpLen;
  const b = new Uint8Array(ETH_HLEN + totalLen);
  writeMac(b, 0, spec.dstMac);
  writeMac(b, 6, spec.srcMac);
  writeU16(b, 12, ETHERTYPE_IPV4);
  const ip = ETH_HLEN;
  b[ip] = 0x45;
  writeU16(b, ip + 2, totalLen);
  b[ip + 8] = spec.ttl ?? 64;
  b[ip + 9] = IPPROTO_UDP;
  writeU32(b, ip + 12, spec.srcIp);
  writeU32(b, ip + 16, spec.dstIp);
  writeU16(b, ip + 10, ~sum16(b, ip, IP_HLEN, 0) & 0xffff);
  const udp = ip + IP_HLEN;
  writeU16(b, udp, spec.srcPort);
  writeU16(b, udp + 2, spec.dstPort);
  writeU16(b, udp + 4, udpLen);
  b.set(spec.payload, udp + UDP_HLEN);
  writeU16(b, udp + 6, udpChecksum(b, ip, udp, udpLen));
  return b;
}

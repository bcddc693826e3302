// Ethernet/IPv4/UDP framing: checksums against an independent computation and a textbook vector, and
// every length inconsistency the parser must refuse.
import { describe, expect, it } from 'vitest';
import { parseIpv4, parseMac } from '../../../../daemon/net/dhcp/addr.js';
import { buildFrame, parseFrame } from '../../../../daemon/net/dhcp/frame.js';

function onesSum(bytes: number[]): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) s += (bytes[i]! << 8) + (bytes[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

const spec = {
  srcMac: parseMac('fe:54:00:00:00:01')!,
  dstMac: parseMac('52:54:00:12:34:56')!,
  srcIp: parseIpv4('192.168.100.1')!,
  dstIp: parseIpv4('192.168.100.10')!,
  srcPort: 67,
  dstPort: 68,
  payload: Uint8Array.from({ length: 301 }, (_, i) => (i * 7) & 255),
};

describe('buildFrame', () => {
  it('lays out Ethernet, IPv4 and UDP headers and valid checksums', () => {
    const f = buildFrame(spec);
    expect(f.length).toBe(14 + 20 + 8 + 301);
    expect(Buffer.from(f.subarray(0, 14)).toString('hex')).toBe('525400123456' + 'fe5400000001' + '0800');
    const ip = [...f.subarray(14, 34)];
    expect(ip[0]).toBe(0x45);
    expect((ip[2]! << 8) | ip[3]!).toBe(20 + 8 + 301);
    expect(ip[9]).toBe(17);
    expect(onesSum(ip)).toBe(0xffff);
    const udp = [...f.subarray(34)];
    const pseudo = [...f.subarray(26, 34), 0, 17, (udp.length >>> 8) & 255, udp.length & 255];
    expect(onesSum([...pseudo, ...udp])).toBe(0xffff);
  });

  it('round-trips through parseFrame, including UDP checksum verification', () => {
    const r = parseFrame(buildFrame(spec), { verifyUdpChecksum: true });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const { payload, ...rest } = r.frame;
    expect(rest).toEqual({ srcMac: spec.srcMac, dstMac: spec.dstMac, srcIp: spec.srcIp, dstIp: spec.dstIp, srcPort: 67, dstPort: 68 });
    expect(Buffer.from(payload)).toEqual(Buffer.from(spec.payload));
  });
});

describe('parseFrame', () => {
  it('accepts the textbook IPv4 header (checksum 0xb861) when lengths agree', () => {
    // 192.168.0.1 -> 192.168.0.199, total length 0x73, DF, TTL 64, UDP: the common RFC 1071 worked example.
    const hdr = [0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 192, 168, 0, 1, 192, 168, 0, 199];
    const udpLen = 0x73 - 20;
    const frame = new Uint8Array(14 + 0x73);
    frame.set([8, 0], 12);
    frame.set(hdr, 14);
    frame.set([0, 68, 0, 67, udpLen >>> 8, udpLen & 255, 0, 0], 34);
    const r = parseFrame(frame);
    expect(r.ok && r.frame.payload.length).toBe(udpLen - 8);
  });

  const good = buildFrame(spec);
  const mutate = (f: (b: Uint8Array) => void, fixIpChecksum = true) => {
    const b = Uint8Array.from(good);
    f(b);
    if (fixIpChecksum) {
      b[24] = 0;
      b[25] = 0;
      const c = ~onesSum([...b.subarray(14, 14 + (b[14]! & 15) * 4)]) & 0xffff;
      b[24] = c >>> 8;
      b[25] = c & 255;
    }
    return parseFrame(b);
  };

  it('refuses frames that are too short, not IPv4, or not UDP', () => {
    expect(parseFrame(good.subarray(0, 41))).toEqual({ ok: false, reason: 'short' });
    expect(mutate((b) => (b[12] = 0x86), false)).toEqual({ ok: false, reason: 'not-ipv4' });
    expect(mutate((b) => (b[23] = 6))).toEqual({ ok: false, reason: 'not-udp' });
  });

  it('refuses inconsistent IHL, total length and UDP length', () => {
    expect(mutate((b) => (b[14] = 0x44))).toEqual({ ok: false, reason: 'bad-ip-header' });
    expect(mutate((b) => (b[14] = 0x65))).toEqual({ ok: false, reason: 'bad-ip-header' });
    // A 60-octet header is self-consistent, but then the UDP length no longer matches the IP payload.
    expect(mutate((b) => (b[14] = 0x4f))).toEqual({ ok: false, reason: 'bad-udp-length' });
    expect(mutate((b) => (b[16] = 0xff))).toEqual({ ok: false, reason: 'bad-ip-header' });
    expect(mutate((b) => ((b[16] = 0), (b[17] = 27)))).toEqual({ ok: false, reason: 'bad-ip-header' });
    expect(mutate((b) => (b[39] = b[39]! ^ 1))).toEqual({ ok: false, reason: 'bad-udp-length' });
  });

  it('refuses a bad IP header checksum and fragments', () => {
    expect(mutate((b) => (b[24] = b[24]! ^ 0xff), false)).toEqual({ ok: false, reason: 'bad-ip-checksum' });
    expect(mutate((b) => (b[20] = 0x20))).toEqual({ ok: false, reason: 'fragment' });
    expect(mutate((b) => (b[21] = 1))).toEqual({ ok: false, reason: 'fragment' });
  });

  it('accepts Ethernet padding after the IP packet and a partial UDP checksum unless asked to verify', () => {
    const padded = new Uint8Array(good.length + 20);
    padded.set(good);
    expect(parseFrame(padded).ok).toBe(true);
    const partial = Uint8Array.from(good);
    partial[41] = partial[41]! ^ 0x55;
    expect(parseFrame(partial).ok).toBe(true);
    expect(parseFrame(partial, { verifyUdpChecksum: true })).toEqual({ ok: false, reason: 'bad-udp-checksum' });
  });
});

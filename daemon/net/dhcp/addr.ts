// IPv4 and MAC address conversions for the DHCP core. Addresses travel as unsigned 32-bit numbers and
// MACs as 48-bit numbers (exact in a double), so the per-packet path compares integers, not strings.

/** Parses dotted-quad IPv4 strictly (four decimal octets, no leading '+', no spaces); undefined if invalid. */
export function parseIpv4(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    v = v * 256 + n;
  }
  return v;
}

export function formatIpv4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Netmask as a u32 for a prefix length 0..32. */
export function prefixToMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/** Parses 'aa:bb:cc:dd:ee:ff' (or '-' separated, any case) into a 48-bit number; undefined if invalid. */
export function parseMac(s: string): number | undefined {
  const m = /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i.exec(s);
  if (!m) return undefined;
  let v = 0;
  for (let i = 1; i <= 6; i++) v = v * 256 + parseInt(m[i]!, 16);
  return v;
}

export function formatMac(v: number): string {
  let out = '';
  for (let i = 5; i >= 0; i--) {
    const b = Math.floor(v / 2 ** (8 * i)) % 256;
    out += (i === 5 ? '' : ':') + (b < 16 ? '0' : '') + b.toString(16);
  }
  return out;
}

/** Reads 6 bytes at `off` as a 48-bit MAC number. */
export function readMac(buf: Uint8Array, off: number): number {
  return (
    (buf[off]! * 0x10000 + buf[off + 1]! * 0x100 + buf[off + 2]!) * 0x1000000 +
    (buf[off + 3]! * 0x10000 + buf[off + 4]! * 0x100 + buf[off + 5]!)
  );
}

export function writeMac(buf: Uint8Array, off: number, mac: number): void {
  const hi = Math.floor(mac / 0x1000000);
  const lo = mac % 0x1000000;
  buf[off] = (hi >>> 16) & 255;
  buf[off + 1] = (hi >>> 8) & 255;
  buf[off + 2] = hi & 255;
  buf[off + 3] = (lo >>> 16) & 255;
  buf[off + 4] = (lo >>> 8) & 255;
  buf[off + 5] = lo & 255;
}

export const BROADCAST_MAC = 0xffffffffffff;
export const BROADCAST_IP = 0xffffffff;

export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
}

export function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 24) & 255;
  buf[off + 1] = (v >>> 16) & 255;
  buf[off + 2] = (v >>> 8) & 255;
  buf[off + 3] = v & 255;
}

export function readU16(buf: Uint8Array, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

export function writeU16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 8) & 255;
  buf[off + 1] = v & 255;
}

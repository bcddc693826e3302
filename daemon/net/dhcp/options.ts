// DHCPv4 option codes and value codecs (RFC 2132, RFC 3442 classless routes, RFC 3397 domain search).
// Pure functions; decoders return undefined for malformed input instead of throwing (input is hostile).
import { AppError } from '../../lib/errors.js';
import { prefixToMask, readU16, readU32, writeU16, writeU32 } from './addr.js';

export const OPT = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  INTERFACE_MTU: 26,
  BROADCAST: 28,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAM_REQUEST_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_T1: 58,
  REBINDING_T2: 59,
  VENDOR_CLASS: 60,
  CLIENT_ID: 61,
  DOMAIN_SEARCH: 119,
  CLASSLESS_ROUTES: 121,
  END: 255,
} as const;

export const MSG = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

export type MessageType = (typeof MSG)[keyof typeof MSG];

export function encodeU8(v: number): Uint8Array {
  return Uint8Array.of(v & 255);
}

export function encodeU16(v: number): Uint8Array {
  const b = new Uint8Array(2);
  writeU16(b, 0, v);
  return b;
}

export function encodeU32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  writeU32(b, 0, v);
  return b;
}

export function decodeU8(b: Uint8Array | undefined): number | undefined {
  return b !== undefined && b.length === 1 ? b[0] : undefined;
}

export function decodeU16(b: Uint8Array | undefined): number | undefined {
  return b !== undefined && b.length === 2 ? readU16(b, 0) : undefined;
}

export function decodeU32(b: Uint8Array | undefined): number | undefined {
  return b !== undefined && b.length === 4 ? readU32(b, 0) : undefined;
}

export function encodeIpList(ips: readonly number[]): Uint8Array {
  const b = new Uint8Array(ips.length * 4);
  for (let i = 0; i < ips.length; i++) writeU32(b, i * 4, ips[i]!);
  return b;
}

export function decodeIpList(b: Uint8Array | undefined): number[] | undefined {
  if (b === undefined || b.length === 0 || b.length % 4 !== 0) return undefined;
  const out: number[] = [];
  for (let i = 0; i < b.length; i += 4) out.push(readU32(b, i));
  return out;
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function encodeText(s: string): Uint8Array {
  return utf8.encode(s);
}

/**
 * Client-supplied text (hostname, message). Some clients NUL-terminate it, so trailing NULs are
 * dropped; an embedded NUL or invalid UTF-8 makes it unusable (undefined) rather than something
 * that could be logged or stored in a misleading form.
 */
export function decodeText(b: Uint8Array | undefined): string | undefined {
  if (b === undefined) return undefined;
  let end = b.length;
  while (end > 0 && b[end - 1] === 0) end--;
  const body = b.subarray(0, end);
  if (body.includes(0)) return undefined;
  try {
    return strictUtf8.decode(body);
  } catch {
    return undefined;
  }
}

/** One RFC 3442 route: destination network (u32, host bits ignored), its prefix length, the router. */
export interface ClasslessRoute {
  destination: number;
  prefixLength: number;
  gateway: number;
}

/** RFC 3442: width octet, the ceil(width/8) significant destination octets, then the router. */
export function encodeClasslessRoutes(routes: readonly ClasslessRoute[]): Uint8Array {
  let size = 0;
  for (const r of routes) {
    if (!Number.isInteger(r.prefixLength) || r.prefixLength < 0 || r.prefixLength > 32) {
      throw new AppError('CONFIG_INVALID', `route prefix length ${r.prefixLength} is not 0..32`);
    }
    size += 1 + Math.ceil(r.prefixLength / 8) + 4;
  }
  const b = new Uint8Array(size);
  let o = 0;
  for (const r of routes) {
    const sig = Math.ceil(r.prefixLength / 8);
    const dst = (r.destination & prefixToMask(r.prefixLength)) >>> 0;
    b[o++] = r.prefixLength;
    for (let i = 0; i < sig; i++) b[o++] = (dst >>> (24 - 8 * i)) & 255;
    writeU32(b, o, r.gateway);
    o += 4;
  }
  return b;
}

/** Undefined when a width exceeds 32 or the data ends inside a route (RFC 3442: ignore the option). */
export function decodeClasslessRoutes(b: Uint8Array | undefined): ClasslessRoute[] | undefined {
  if (b === undefined || b.length < 5) return undefined;
  const out: ClasslessRoute[] = [];
  let o = 0;
  while (o < b.length) {
    const width = b[o++]!;
    if (width > 32) return undefined;
    const sig = (width + 7) >>> 3;
    if (o + sig + 4 > b.length) return undefined;
    let dst = 0;
    for (let i = 0; i < 4; i++) dst = dst * 256 + (i < sig ? b[o + i]! : 0);
    o += sig;
    out.push({ destination: (dst & prefixToMask(width)) >>> 0, prefixLength: width, gateway: readU32(b, o) });
    o += 4;
  }
  return out;
}

function splitLabels(name: string): string[] {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  if (trimmed === '') return [];
  const labels = trimmed.split('.');
  let wire = 1;
  for (const l of labels) {
    // RFC 1035 label rules; we also insist on ASCII since names are written into a byte format.
    if (l.length < 1 || l.length > 63 || !/^[\x21-\x7e]+$/.test(l)) {
      throw new AppError('CONFIG_INVALID', `invalid domain name '${name}' in the search list`);
    }
    wire += l.length + 1;
  }
  if (wire > 255) throw new AppError('CONFIG_INVALID', `domain name '${name}' is longer than 255 octets`);
  return labels;
}

/** RFC 3397 search list in DNS wire format, with RFC 1035 suffix compression across the names. */
export function encodeDomainSearch(names: readonly string[]): Uint8Array {
  const parts: number[] = [];
  const seen = new Map<string, number>();
  for (const name of names) {
    const labels = splitLabels(name);
    let pointer = -1;
    for (let i = 0; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.').toLowerCase();
      const at = seen.get(suffix);
      if (at !== undefined) {
        pointer = at;
        break;
      }
      if (parts.length < 0x4000) seen.set(suffix, parts.length);
      const l = labels[i]!;
      parts.push(l.length);
      for (let k = 0; k < l.length; k++) parts.push(l.charCodeAt(k));
    }
    if (pointer >= 0) parts.push(0xc0 | (pointer >>> 8), pointer & 255);
    else parts.push(0);
  }
  return Uint8Array.from(parts);
}

/** Bound on compression pointers followed per name; the backward-only rule already forbids loops. */
const MAX_POINTER_HOPS = 64;

/**
 * Tolerant but bounded decode of an RFC 3397 list. Each pointer must target an offset strictly before
 * the run it interrupts, so every jump moves backwards and loops are impossible. Undefined on
 * truncation, reserved label types, names over 255 octets, or forward/looping pointers.
 */
export function decodeDomainSearch(b: Uint8Array | undefined): string[] | undefined {
  if (b === undefined) return undefined;
  const names: string[] = [];
  let pos = 0;
  while (pos < b.length) {
    let cur = pos;
    let runStart = pos;
    let next = -1;
    let hops = 0;
    let wire = 1;
    let name = '';
    for (;;) {
      if (cur >= b.length) return undefined;
      const len = b[cur]!;
      if (len === 0) {
        if (next < 0) next = cur + 1;
        break;
      }
      if ((len & 0xc0) === 0xc0) {
        if (cur + 1 >= b.length) return undefined;
        const target = ((len & 0x3f) << 8) | b[cur + 1]!;
        if (target >= runStart || ++hops > MAX_POINTER_HOPS) return undefined;
        if (next < 0) next = cur + 2;
        cur = runStart = target;
        continue;
      }
      if ((len & 0xc0) !== 0) return undefined;
      if (cur + 1 + len > b.length) return undefined;
      wire += len + 1;
      if (wire > 255) return undefined;
      let label = '';
      for (let k = 0; k < len; k++) label += String.fromCharCode(b[cur + 1 + k]!);
      name += (name === '' ? '' : '.') + label;
      cur += 1 + len;
    }
    names.push(name);
    pos = next;
  }
  return names;
}

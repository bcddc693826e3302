// DHCPv4 message decode/encode (RFC 2131 layout, RFC 3396 long options, option 52 overload). Pure and
// bounded: decode is one linear pass per field and never throws on hostile bytes; it returns a reason.
import { readU16, readU32, writeU16, writeU32 } from './addr.js';
import { OPT } from './options.js';

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
export const HTYPE_ETHERNET = 1;
export const FLAG_BROADCAST = 0x8000;
/** The fixed BOOTP header plus the magic cookie. */
export const DHCP_FIXED_LEN = 240;
/** RFC 2131: every client accepts 576-octet IP datagrams, i.e. 548 octets of DHCP after IP+UDP headers. */
export const DHCP_MIN_MAX_SIZE = 548;
/** Largest UDP payload an IPv4 datagram can carry. */
export const MAX_UDP_PAYLOAD = 65507;
/** Replies are padded to the BOOTP minimum, which some old clients and relays still enforce. */
const BOOTP_MIN_LEN = 300;

const SNAME_OFF = 44;
const FILE_OFF = 108;
const COOKIE_OFF = 236;
const COOKIE = 0x63825363;

export interface DhcpMessage {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  giaddr: number;
  /** 16 bytes; the first `hlen` are the hardware address. */
  chaddr: Uint8Array;
  /** 64 bytes; all zero when the field carried options (overload). */
  sname: Uint8Array;
  /** 128 bytes; all zero when the field carried options (overload). */
  file: Uint8Array;
  /**
   * Options in first-appearance order, each instance of a code concatenated (RFC 3396). Never holds
   * PAD, END or OVERLOAD (52): those are framing, handled here. Decoded values are views into the
   * input buffer: a transport that reuses its receive buffer must be done with the message first.
   */
  options: Map<number, Uint8Array>;
}

export type DecodeError = 'too-short' | 'too-long' | 'bad-cookie' | 'option-overrun';
export type DecodeResult = { ok: true; message: DhcpMessage } | { ok: false; reason: DecodeError };

const ZERO_SNAME = new Uint8Array(64);
const ZERO_FILE = new Uint8Array(128);

/**
 * Walks one options area. Repeated codes are collected in `multi` and concatenated once at the end,
 * keeping the whole decode linear however many instances a hostile client sends.
 */
function walkOptions(
  buf: Uint8Array,
  start: number,
  end: number,
  skipOverload: boolean,
  opts: Map<number, Uint8Array>,
  multi: Map<number, Uint8Array[]>,
): boolean {
  let i = start;
  while (i < end) {
    const code = buf[i]!;
    if (code === OPT.PAD) {
      i++;
      continue;
    }
    if (code === OPT.END) return true;
    if (i + 1 >= end) return false;
    const len = buf[i + 1]!;
    const vStart = i + 2;
    if (vStart + len > end) return false;
    i = vStart + len;
    // An overload option inside sname/file is ignored: the fields are parsed once, never recursively.
    if (skipOverload && code === OPT.OVERLOAD) continue;
    const value = buf.subarray(vStart, vStart + len);
    const prev = opts.get(code);
    if (prev === undefined) {
      opts.set(code, value);
    } else {
      const list = multi.get(code);
      if (list === undefined) multi.set(code, [prev, value]);
      else list.push(value);
    }
  }
  // A missing END is tolerated: the area simply ends at its boundary.
  return true;
}

export function decodeDhcp(buf: Uint8Array): DecodeResult {
  if (buf.length < DHCP_FIXED_LEN) return { ok: false, reason: 'too-short' };
  if (buf.length > MAX_UDP_PAYLOAD) return { ok: false, reason: 'too-long' };
  if (readU32(buf, COOKIE_OFF) !== COOKIE) return { ok: false, reason: 'bad-cookie' };
  const options = new Map<number, Uint8Array>();
  const multi = new Map<number, Uint8Array[]>();
  if (!walkOptions(buf, DHCP_FIXED_LEN, buf.length, false, options, multi)) {
    return { ok: false, reason: 'option-overrun' };
  }
  // Overload is read from the options field alone (before sname/file are walked), per RFC 2131.
  let overload = 0;
  const ov = options.get(OPT.OVERLOAD);
  if (ov !== undefined && !multi.has(OPT.OVERLOAD) && ov.length === 1 && ov[0]! >= 1 && ov[0]! <= 3) overload = ov[0]!;
  options.delete(OPT.OVERLOAD);
  multi.delete(OPT.OVERLOAD);
  // RFC 3396 concatenation order: options field, then file, then sname.
  if (overload & 1 && !walkOptions(buf, FILE_OFF, COOKIE_OFF, true, options, multi)) {
    return { ok: false, reason: 'option-overrun' };
  }
  if (overload & 2 && !walkOptions(buf, SNAME_OFF, FILE_OFF, true, options, multi)) {
    return { ok: false, reason: 'option-overrun' };
  }
  for (const [code, parts] of multi) {
    let total = 0;
    for (const p of parts) total += p.length;
    const joined = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      joined.set(p, o);
      o += p.length;
    }
    options.set(code, joined);
  }
  return {
    ok: true,
    message: {
      op: buf[0]!,
      htype: buf[1]!,
      hlen: buf[2]!,
      hops: buf[3]!,
      xid: readU32(buf, 4),
      secs: readU16(buf, 8),
      flags: readU16(buf, 10),
      ciaddr: readU32(buf, 12),
      yiaddr: readU32(buf, 16),
      siaddr: readU32(buf, 20),
      giaddr: readU32(buf, 24),
      chaddr: buf.subarray(28, 44),
      sname: overload & 2 ? ZERO_SNAME : buf.subarray(SNAME_OFF, FILE_OFF),
      file: overload & 1 ? ZERO_FILE : buf.subarray(FILE_OFF, COOKIE_OFF),
      options,
    },
  };
}

/** Octets an option of `len` data octets takes once split into <=255-octet instances (RFC 3396). */
function optionWireSize(len: number): number {
  return len === 0 ? 2 : len + 2 * Math.ceil(len / 255);
}

// One encode at a time (the event loop is single-threaded); the result is copied out of it.
const scratch = new Uint8Array(MAX_UDP_PAYLOAD);

/**
 * Encodes `msg` into at most `maxSize` octets (the client's maximum DHCP message size). Options go in
 * map order; if they do not fit the options field, file and then sname are used via option 52
 * (then largest first, so the order is no longer the map's).
 * Returns undefined when even that is not enough, so the caller can drop optional options.
 */
export function encodeDhcp(msg: DhcpMessage, maxSize: number = DHCP_MIN_MAX_SIZE): Uint8Array | undefined {
  const limit = Math.min(Math.max(maxSize, DHCP_MIN_MAX_SIZE), MAX_UDP_PAYLOAD);
  const b = scratch;
  b.fill(0, 0, DHCP_FIXED_LEN);
  b[0] = msg.op;
  b[1] = msg.htype;
  b[2] = msg.hlen;
  b[3] = msg.hops;
  writeU32(b, 4, msg.xid);
  writeU16(b, 8, msg.secs);
  writeU16(b, 10, msg.flags);
  writeU32(b, 12, msg.ciaddr);
  writeU32(b, 16, msg.yiaddr);
  writeU32(b, 20, msg.siaddr);
  writeU32(b, 24, msg.giaddr);
  b.set(msg.chaddr.subarray(0, 16), 28);
  b.set(msg.sname.subarray(0, 64), SNAME_OFF);
  b.set(msg.file.subarray(0, 128), FILE_OFF);
  writeU32(b, COOKIE_OFF, COOKIE);

  let need = 1;
  for (const v of msg.options.values()) need += optionWireSize(v.length);
  let end: number;
  if (DHCP_FIXED_LEN + need <= limit) {
    let o = DHCP_FIXED_LEN;
    for (const [code, v] of msg.options) o = writeInstances(b, o, code, v, 0, v.length);
    b[o++] = OPT.END;
    end = o;
  } else {
    const placed = placeOverloaded(b, msg.options, limit);
    if (placed < 0) return undefined;
    end = placed;
  }
  if (end < BOOTP_MIN_LEN) {
    b.fill(0, end, BOOTP_MIN_LEN);
    end = BOOTP_MIN_LEN;
  }
  return b.slice(0, end);
}

function writeInstances(b: Uint8Array, o: number, code: number, v: Uint8Array, from: number, to: number): number {
  if (from === to) {
    b[o++] = code;
    b[o++] = 0;
    return o;
  }
  for (let s = from; s < to; s += 255) {
    const n = Math.min(255, to - s);
    b[o++] = code;
    b[o++] = n;
    b.set(v.subarray(s, s + n), o);
    o += n;
  }
  return o;
}

/**
 * Placement over the options field, file and sname (the order a decoder concatenates them in): the
 * largest options first, each <=255-octet instance into the first area with room that is not before
 * the area of the option's previous instance, so split options still concatenate in order. Each used
 * area gets its END. Returns the end of the options field, or -1 if the options do not fit.
 */
function placeOverloaded(b: Uint8Array, options: Map<number, Uint8Array>, limit: number): number {
  // Cursor and last usable octet (the END slot excluded) for options field, file, sname.
  const cur = [DHCP_FIXED_LEN + 3, FILE_OFF, SNAME_OFF];
  const stop = [limit - 1, COOKIE_OFF - 1, FILE_OFF - 1];
  const bySize = [...options].sort((x, y) => y[1].length - x[1].length);
  for (const [code, v] of bySize) {
    const count = v.length === 0 ? 1 : Math.ceil(v.length / 255);
    let area = 0;
    for (let k = 0; k < count; k++) {
      const from = k * 255;
      const to = Math.min(v.length, from + 255);
      const size = 2 + (to - from);
      while (area < 3 && cur[area]! + size > stop[area]!) area++;
      if (area === 3) return -1;
      cur[area] = writeInstances(b, cur[area]!, code, v, from, to);
    }
  }
  b[DHCP_FIXED_LEN] = OPT.OVERLOAD;
  b[DHCP_FIXED_LEN + 1] = 1;
  b[DHCP_FIXED_LEN + 2] = (cur[1] !== FILE_OFF ? 1 : 0) | (cur[2] !== SNAME_OFF ? 2 : 0);
  // An area that carries options carries nothing else: END, then PAD to its end.
  if (cur[1] !== FILE_OFF) {
    b[cur[1]!] = OPT.END;
    b.fill(0, cur[1]! + 1, COOKIE_OFF);
  }
  if (cur[2] !== SNAME_OFF) {
    b[cur[2]!] = OPT.END;
    b.fill(0, cur[2]! + 1, FILE_OFF);
  }
  b[cur[0]!] = OPT.END;
  return cur[0]! + 1;
}

/** The message type (option 53), or undefined when absent or malformed. */
export function messageTypeOf(msg: DhcpMessage): number | undefined {
  const v = msg.options.get(OPT.MESSAGE_TYPE);
  return v !== undefined && v.length === 1 ? v[0] : undefined;
}

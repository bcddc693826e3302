// Message codec: RFC 2131 fixed layout, RFC 3396 concatenation and splitting, option 52 overload (and
// its non-recursion), and hand-built DISCOVERs shaped like busybox udhcpc's and ISC dhclient's.
import { describe, expect, it } from 'vitest';
import { decodeDhcp, encodeDhcp, messageTypeOf, type DhcpMessage } from '../../../../daemon/net/dhcp/codec.js';
import { decodeDomainSearch, OPT } from '../../../../daemon/net/dhcp/options.js';
import { MAC_BYTES, ascii, hex, opt, raw } from './helpers.js';

function decoded(b: Uint8Array): DhcpMessage {
  const r = decodeDhcp(b);
  if (!r.ok) throw new Error(`decode failed: ${r.reason}`);
  return r.message;
}

describe('RFC 2131 fixed fields', () => {
  it('reads every header field from its RFC 2131 offset', () => {
    const m = decoded(
      raw({
        op: 1,
        hops: 2,
        xid: 0xdeadbeef,
        secs: 7,
        flags: 0x8000,
        ciaddr: [1, 2, 3, 4],
        yiaddr: [5, 6, 7, 8],
        siaddr: [9, 10, 11, 12],
        giaddr: [13, 14, 15, 16],
        sname: ascii('srv'),
        file: ascii('boot.img'),
        options: [...opt(53, 1), 255],
      }),
    );
    expect(m).toMatchObject({ op: 1, htype: 1, hlen: 6, hops: 2, xid: 0xdeadbeef, secs: 7, flags: 0x8000 });
    expect([m.ciaddr, m.yiaddr, m.siaddr, m.giaddr]).toEqual([0x01020304, 0x05060708, 0x090a0b0c, 0x0d0e0f10]);
    expect([...m.chaddr.subarray(0, 6)]).toEqual(MAC_BYTES);
    expect(Buffer.from(m.sname.subarray(0, 3)).toString()).toBe('srv');
    expect(Buffer.from(m.file.subarray(0, 8)).toString()).toBe('boot.img');
    expect(messageTypeOf(m)).toBe(1);
  });

  it('refuses messages shorter than 240 octets, a wrong magic cookie, and datagrams over 65507', () => {
    expect(decodeDhcp(new Uint8Array(239))).toEqual({ ok: false, reason: 'too-short' });
    expect(decodeDhcp(raw({ cookie: [99, 130, 83, 98], options: [255] }))).toEqual({ ok: false, reason: 'bad-cookie' });
    expect(decodeDhcp(new Uint8Array(65508))).toEqual({ ok: false, reason: 'too-long' });
  });

  it('refuses an option whose length runs past the buffer, tolerates a missing END', () => {
    expect(decodeDhcp(raw({ options: [53, 1, 1, 12, 10, 65] }))).toEqual({ ok: false, reason: 'option-overrun' });
    expect(decodeDhcp(raw({ options: [53, 1, 1, 12] }))).toEqual({ ok: false, reason: 'option-overrun' });
    expect(messageTypeOf(decoded(raw({ options: [...opt(53, 3)] })))).toBe(3);
  });

  it('skips PAD floods and stops at END (bytes after END are ignored)', () => {
    const m = decoded(raw({ options: [...new Array<number>(1000).fill(0), ...opt(53, 1), 255, 12, 200] }));
    expect([...m.options.keys()]).toEqual([53]);
  });
});

describe('RFC 3396 long options', () => {
  it('concatenates split instances in order, also when other options sit between them', () => {
    const m = decoded(raw({ options: [...opt(12, ...ascii('ab')), ...opt(53, 1), ...opt(12, ...ascii('cd')), ...opt(12), 255] }));
    expect(Buffer.from(m.options.get(12)!).toString()).toBe('abcd');
    expect([...m.options.keys()]).toEqual([12, 53]);
  });

  it('decodes the RFC 3397 example, which splits option 119 into three 9-octet instances', () => {
    const data = [3, ...ascii('eng'), 5, ...ascii('apple'), 3, ...ascii('com'), 0, 9, ...ascii('marketing'), 0xc0, 0x04];
    const options = [...opt(119, ...data.slice(0, 9)), ...opt(119, ...data.slice(9, 18)), ...opt(119, ...data.slice(18)), 255];
    const m = decoded(raw({ options }));
    expect(decodeDomainSearch(m.options.get(119))).toEqual(['eng.apple.com', 'marketing.apple.com']);
  });

  it('splits an option over 255 octets into 255-octet instances on encode, and joins them on decode', () => {
    const long = Uint8Array.from({ length: 600 }, (_, i) => i & 255);
    const msg = decoded(raw({ options: [...opt(53, 2), 255] }));
    msg.options.set(OPT.DOMAIN_SEARCH, long);
    const bytes = encodeDhcp(msg, 1500)!;
    // After 53 (240..242): instances of 255, 255 and 90 octets, each with its own code and length.
    expect([bytes[243], bytes[244], bytes[243 + 257], bytes[244 + 257], bytes[243 + 514], bytes[244 + 514]]).toEqual([119, 255, 119, 255, 119, 90]);
    expect(hex(decoded(bytes).options.get(OPT.DOMAIN_SEARCH)!)).toBe(hex(long));
  });
});

describe('option 52 overload', () => {
  it('reads options from file then sname when 52 says both, concatenating in RFC 3396 order', () => {
    const file = [...opt(12, ...ascii('fi')), 255];
    const sname = [...opt(12, ...ascii('sn')), ...opt(15, ...ascii('dom')), 255];
    const m = decoded(raw({ options: [...opt(52, 3), ...opt(12, ...ascii('op')), ...opt(53, 1), 255], file, sname }));
    expect(Buffer.from(m.options.get(12)!).toString()).toBe('opfisn');
    expect(Buffer.from(m.options.get(15)!).toString()).toBe('dom');
    expect(m.options.has(52)).toBe(false);
    // Fields that carried options are not also reported as a server name / boot file.
    expect(m.sname.every((x) => x === 0) && m.file.every((x) => x === 0)).toBe(true);
  });

  it('ignores an option 52 inside sname or file: the fields are parsed once, never recursively', () => {
    // file says "sname is overloaded too", but only the options field may say so.
    const file = [...opt(52, 2), ...opt(15, ...ascii('f')), 255];
    const sname = [...opt(15, ...ascii('s')), 255];
    const m = decoded(raw({ options: [...opt(52, 1), ...opt(53, 1), 255], file, sname }));
    expect(Buffer.from(m.options.get(15)!).toString()).toBe('f');
    expect(Buffer.from(m.sname.subarray(0, 3))).toEqual(Buffer.from(sname.slice(0, 3)));
  });

  it('ignores malformed overload values and keeps sname/file as plain fields', () => {
    for (const v of [[0], [4], [1, 1], []]) {
      const m = decoded(raw({ options: [...opt(52, ...v), ...opt(53, 1), 255], file: [...opt(15, 65), 255] }));
      expect(m.options.has(15)).toBe(false);
      expect(m.file[0]).toBe(15);
    }
  });

  it('an overrun inside an overloaded field rejects the message', () => {
    expect(decodeDhcp(raw({ options: [...opt(52, 2), 255], sname: [15, 200, 1] })).ok).toBe(false);
  });

  it('encode spills into file and sname when the options field is full, and decode gets them back', () => {
    const msg = decoded(raw({ options: [255] }));
    msg.options = new Map<number, Uint8Array>([
      [53, Uint8Array.of(5)],
      [54, Uint8Array.of(10, 0, 0, 1)],
      [12, new Uint8Array(250).fill(104)],
      [15, new Uint8Array(100).fill(100)],
      [56, new Uint8Array(50).fill(109)],
      [66, new Uint8Array(40).fill(116)],
    ]);
    const bytes = encodeDhcp(msg, 548)!;
    expect(bytes.length).toBeLessThanOrEqual(548);
    expect([bytes[240], bytes[241], bytes[242]]).toEqual([52, 1, 3]);
    const back = decoded(bytes);
    // Overloaded placement goes largest first, so only the set of options is preserved, not their order.
    expect([...back.options.keys()].sort((x, y) => x - y)).toEqual([12, 15, 53, 54, 56, 66]);
    for (const [k, v] of msg.options) expect(hex(back.options.get(k)!)).toBe(hex(v));
  });

  it('encode reports options that cannot fit even with overload', () => {
    const msg = decoded(raw({ options: [255] }));
    msg.options.set(12, new Uint8Array(255));
    msg.options.set(15, new Uint8Array(255));
    msg.options.set(56, new Uint8Array(255));
    expect(encodeDhcp(msg, 548)).toBeUndefined();
    expect(encodeDhcp(msg, 1500)).toBeDefined();
  });
});

describe('captured-shape DISCOVERs (hand-built from the fields each client sends)', () => {
  it('busybox udhcpc: client id 01+MAC, max size 576, vendor class, short PRL, padded to 300', () => {
    const b = raw({
      xid: 0x5f2c7a11,
      options: [
        ...opt(53, 1),
        ...opt(61, 1, ...MAC_BYTES),
        ...opt(57, 0x02, 0x40),
        ...opt(60, ...ascii('udhcp 1.36.1')),
        ...opt(55, 1, 3, 6, 12, 15, 28, 42),
        255,
      ],
      padTo: 300,
    });
    const m = decoded(b);
    expect(messageTypeOf(m)).toBe(1);
    expect([...m.options.keys()]).toEqual([53, 61, 57, 60, 55]);
    expect([...m.options.get(55)!]).toEqual([1, 3, 6, 12, 15, 28, 42]);
    expect(encodeDhcp(m, 548)).toEqual(b);
  });

  it('ISC dhclient: requested address from the old lease, hostname, long PRL incl. 119 and 121, secs set', () => {
    const b = raw({
      xid: 0x1b0c4a77,
      secs: 3,
      options: [
        ...opt(53, 1),
        ...opt(50, 192, 168, 100, 10),
        ...opt(12, ...ascii('web1')),
        ...opt(55, 1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42),
        255,
      ],
      padTo: 300,
    });
    const m = decoded(b);
    expect(m.secs).toBe(3);
    expect([...m.options.get(50)!]).toEqual([192, 168, 100, 10]);
    expect(encodeDhcp(m, 548)).toEqual(b);
  });
});

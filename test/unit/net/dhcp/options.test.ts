// Option value codecs against the RFC text: RFC 3442 destination descriptors, RFC 3397's example list,
// RFC 2132 fixed-size options, and the hostile shapes (pointer loops, truncation) the decoders must refuse.
import { describe, expect, it } from 'vitest';
import { parseIpv4 } from '../../../../daemon/net/dhcp/addr.js';
import {
  decodeClasslessRoutes,
  decodeDomainSearch,
  decodeText,
  decodeU16,
  decodeU32,
  encodeClasslessRoutes,
  encodeDomainSearch,
  encodeIpList,
  encodeU32,
} from '../../../../daemon/net/dhcp/options.js';
import { ascii, hex } from './helpers.js';

const ip = (s: string) => parseIpv4(s)!;

describe('RFC 3442 classless static routes (121)', () => {
  // The destination-descriptor table of RFC 3442 section 3, each followed here by router 10.0.0.1.
  const rfcTable: Array<[string, number, number[]]> = [
    ['0.0.0.0', 0, [0]],
    ['10.0.0.0', 8, [8, 10]],
    ['10.0.0.0', 24, [24, 10, 0, 0]],
    ['10.17.0.0', 16, [16, 10, 17]],
    ['10.27.129.0', 24, [24, 10, 27, 129]],
    ['10.229.0.128', 25, [25, 10, 229, 0, 128]],
    ['10.198.122.47', 32, [32, 10, 198, 122, 47]],
  ];
  for (const [dst, len, descriptor] of rfcTable) {
    it(`encodes ${dst}/${len} as ${descriptor.join('.')}`, () => {
      const route = { destination: ip(dst), prefixLength: len, gateway: ip('10.0.0.1') };
      const bytes = encodeClasslessRoutes([route]);
      expect([...bytes]).toEqual([...descriptor, 10, 0, 0, 1]);
      expect(decodeClasslessRoutes(bytes)).toEqual([route]);
    });
  }

  it('concatenates routes and decodes them back in order', () => {
    const routes = rfcTable.map(([d, l]) => ({ destination: ip(d), prefixLength: l, gateway: ip('192.168.1.254') }));
    const bytes = encodeClasslessRoutes(routes);
    expect(bytes.length).toBe(rfcTable.reduce((n, [, , d]) => n + d.length + 4, 0));
    expect(decodeClasslessRoutes(bytes)).toEqual(routes);
  });

  it('drops host bits of the destination (only significant octets are sent, masked)', () => {
    const bytes = encodeClasslessRoutes([{ destination: ip('10.229.0.255'), prefixLength: 25, gateway: ip('10.0.0.1') }]);
    expect([...bytes]).toEqual([25, 10, 229, 0, 128, 10, 0, 0, 1]);
  });

  it('rejects a width over 32, truncated routes and data shorter than the 5-octet minimum', () => {
    expect(decodeClasslessRoutes(Uint8Array.of(33, 10, 0, 0, 0, 0, 10, 0, 0, 1))).toBeUndefined();
    expect(decodeClasslessRoutes(Uint8Array.of(24, 10, 0, 0, 10, 0, 0))).toBeUndefined();
    expect(decodeClasslessRoutes(Uint8Array.of(0, 10, 0, 0))).toBeUndefined();
    expect(decodeClasslessRoutes(Uint8Array.of(0, 10, 0, 0, 1, 8))).toBeUndefined();
  });

  it('refuses to encode a prefix length outside 0..32', () => {
    expect(() => encodeClasslessRoutes([{ destination: 0, prefixLength: 33, gateway: 0 }])).toThrow(/prefix length/);
  });
});

describe('RFC 3397 domain search (119)', () => {
  // RFC 3397 section 4's example: "eng.apple.com." and "marketing.apple.com.", the second name
  // compressed to a pointer at offset 4 ("apple.com").
  const rfcExample = [3, ...ascii('eng'), 5, ...ascii('apple'), 3, ...ascii('com'), 0, 9, ...ascii('marketing'), 0xc0, 0x04];

  it('encodes the RFC example byte for byte, with compression', () => {
    expect(hex(encodeDomainSearch(['eng.apple.com.', 'marketing.apple.com.']))).toBe(hex(rfcExample));
    expect(hex(encodeDomainSearch(['eng.apple.com', 'marketing.apple.com']))).toBe(hex(rfcExample));
  });

  it('decodes the RFC example', () => {
    expect(decodeDomainSearch(Uint8Array.from(rfcExample))).toEqual(['eng.apple.com', 'marketing.apple.com']);
  });

  it('compresses case-insensitively and whole names to a single pointer', () => {
    const bytes = encodeDomainSearch(['a.example.com', 'b.EXAMPLE.com', 'example.com']);
    // a.example.com = 1+1+1+7+1+3+1 = 15; b + pointer = 4; example.com = pointer to offset 2.
    expect(bytes.length).toBe(15 + 4 + 2);
    expect(decodeDomainSearch(bytes)).toEqual(['a.example.com', 'b.EXAMPLE.com', 'example.com'].map((n) => n.replace('EXAMPLE', 'example')));
  });

  it('rejects pointer loops, forward pointers and self pointers', () => {
    expect(decodeDomainSearch(Uint8Array.of(0xc0, 0x00))).toBeUndefined();
    expect(decodeDomainSearch(Uint8Array.of(1, 97, 0xc0, 0x00))).toBeUndefined();
    expect(decodeDomainSearch(Uint8Array.of(0xc0, 0x02, 1, 97, 0))).toBeUndefined();
    // Two names pointing at each other: the second jump would go forward of where the first landed.
    expect(decodeDomainSearch(Uint8Array.of(1, 97, 0xc0, 0x04, 1, 98, 0xc0, 0x00))).toBeUndefined();
  });

  it('rejects truncation, reserved label types and names over 255 octets', () => {
    expect(decodeDomainSearch(Uint8Array.of(3, 97, 98))).toBeUndefined();
    expect(decodeDomainSearch(Uint8Array.of(1, 97))).toBeUndefined();
    expect(decodeDomainSearch(Uint8Array.of(0xc0))).toBeUndefined();
    expect(decodeDomainSearch(Uint8Array.of(0x40, 0))).toBeUndefined();
    const long: number[] = [];
    for (let i = 0; i < 5; i++) long.push(63, ...new Array<number>(63).fill(97));
    long.push(0);
    expect(decodeDomainSearch(Uint8Array.from(long))).toBeUndefined();
  });

  it('refuses invalid names on encode', () => {
    expect(() => encodeDomainSearch(['a..b'])).toThrow(/invalid domain name/);
    expect(() => encodeDomainSearch(['x'.repeat(64) + '.com'])).toThrow(/invalid domain name/);
    expect(() => encodeDomainSearch([Array.from({ length: 5 }, () => 'y'.repeat(60)).join('.')])).toThrow(/255/);
  });
});

describe('RFC 2132 fixed-size options', () => {
  it('subnet mask, lease time and address lists have the RFC 2132 byte forms', () => {
    // RFC 2132 3.3: subnet mask is 4 octets; 9.2: lease time a 32-bit unsigned count of seconds.
    expect(hex(encodeU32(ip('255.255.255.0')))).toBe('ffffff00');
    expect(hex(encodeU32(86400))).toBe('00015180');
    expect(hex(encodeIpList([ip('10.0.0.1'), ip('10.0.0.2')]))).toBe('0a0000010a000002');
  });

  it('fixed-size decoders refuse any other length', () => {
    expect(decodeU32(Uint8Array.of(1, 2, 3))).toBeUndefined();
    expect(decodeU32(Uint8Array.of(0, 1, 0x51, 0x80))).toBe(86400);
    expect(decodeU16(Uint8Array.of(0x05, 0xdc))).toBe(1500);
    expect(decodeU16(Uint8Array.of(0x05))).toBeUndefined();
    expect(decodeU16(undefined)).toBeUndefined();
  });

  it('client text: trailing NULs dropped, embedded NUL or invalid UTF-8 refused', () => {
    expect(decodeText(Uint8Array.from([...ascii('host'), 0, 0]))).toBe('host');
    expect(decodeText(Uint8Array.from([...ascii('ho'), 0, ...ascii('st')]))).toBeUndefined();
    expect(decodeText(Uint8Array.of(0x68, 0xff, 0xfe))).toBeUndefined();
    expect(decodeText(Uint8Array.of(0xc3, 0xa9))).toBe('é');
  });
});

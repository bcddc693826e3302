// The Links contract against the stateful fake, plus the fake's own fault injection and the pure renderer.
import { describe, expect, it } from 'vitest';
import { createFakeLinks } from '../../../daemon/host/links-fake.js';
import { parseIpLinks, renderIpBatch } from '../../../daemon/host/links.js';
import { isAppError } from '../../../daemon/lib/errors.js';
import { linksContract } from '../../contract/host-links.contract.js';

const fake = createFakeLinks();
linksContract('fake', () => ({ links: fake, run: 'unit' }));

describe('renderIpBatch', () => {
  it('renders one ip -batch line per op', () => {
    expect(
      renderIpBatch([
        { op: 'create-bridge', name: 'nvbaaaaaaaaaa', mtu: 9000 },
        { op: 'create-veth', name: 'nvvaaaaaaaaaa', peer: 'nvwaaaaaaaaaa' },
        { op: 'set', name: 'nvtaaaaaaaaaa', mtu: 1400, master: 'nvbaaaaaaaaaa', up: true },
        { op: 'set', name: 'nvtaaaaaaaaaa', master: null, up: false },
        { op: 'delete', name: 'nvbaaaaaaaaaa' },
      ]),
    ).toBe(
      [
        'link add name nvbaaaaaaaaaa mtu 9000 type bridge',
        'link add name nvvaaaaaaaaaa type veth peer name nvwaaaaaaaaaa',
        'link set dev nvtaaaaaaaaaa mtu 1400 master nvbaaaaaaaaaa up',
        'link set dev nvtaaaaaaaaaa nomaster down',
        'link del dev nvbaaaaaaaaaa',
        '',
      ].join('\n'),
    );
  });

  it('refuses names and values that could break the batch (bugs, thrown as Error)', () => {
    expect(() => renderIpBatch([{ op: 'delete', name: 'a b' }])).toThrow(/bad interface name/);
    expect(() => renderIpBatch([{ op: 'delete', name: 'x\nlink del dev eth0' }])).toThrow();
    expect(() => renderIpBatch([{ op: 'delete', name: 'sixteen-chars-xx' }])).toThrow();
    expect(() => renderIpBatch([{ op: 'set', name: 'nvt', mtu: 10 }])).toThrow(/MTU/);
    expect(() => renderIpBatch([{ op: 'set', name: 'nvt' }])).toThrow(/changes nothing/);
  });
});

describe('parseIpLinks', () => {
  it('reads taps (kind tun/type tap), bridges, ports and flags', () => {
    const links = parseIpLinks(
      JSON.stringify([
        { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK', 'UP'], mtu: 65536, address: '00:00:00:00:00:00' },
        { ifindex: 5, ifname: 'nvtx', flags: ['BROADCAST', 'UP'], mtu: 1400, master: 'nvbx', address: 'aa:bb:cc:dd:ee:ff', linkinfo: { info_kind: 'tun', info_data: { type: 'tap' } } },
      ]),
    );
    expect(links).toEqual([
      { name: 'lo', ifindex: 1, kind: undefined, mtu: 65536, master: undefined, up: true, mac: '00:00:00:00:00:00' },
      { name: 'nvtx', ifindex: 5, kind: 'tap', mtu: 1400, master: 'nvbx', up: true, mac: 'aa:bb:cc:dd:ee:ff' },
    ]);
  });
});

describe('fake links', () => {
  it('injects failures and logs every step', async () => {
    const f = createFakeLinks();
    f.failOn((s) => s.includes('master'));
    await f.createTap('nvtaaaaaaaaaa');
    const err = await f.apply([{ op: 'create-bridge', name: 'nvbaaaaaaaaaa' }, { op: 'set', name: 'nvtaaaaaaaaaa', master: 'nvbaaaaaaaaaa' }]).catch((e: unknown) => e);
    expect(isAppError(err, 'HOST_ERROR') && err.extra?.failedIndex).toBe(1);
    expect(f.log).toEqual(['createTap nvtaaaaaaaaaa', 'link add name nvbaaaaaaaaaa type bridge', 'link set dev nvtaaaaaaaaaa master nvbaaaaaaaaaa']);
    f.setBusy('nvtaaaaaaaaaa', true);
    const busy = await f.deleteTap('nvtaaaaaaaaaa').catch((e: unknown) => e);
    expect(isAppError(busy, 'HOST_ERROR') && busy.extra?.errno).toBe('EBUSY');
  });
});

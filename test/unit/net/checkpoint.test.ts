// The checkpoint parser and the restore / bridge-over-uplink plans, on `ip -json` output captured from a
// real namespace (iproute2 6.1): an uplink with two addresses, a default, a static and a link route.
import { describe, expect, it } from 'vitest';
import { bridgeOverUplinkPlan, parseCheckpoint, renderHostBatch, renderHostOp, restorePlan } from '../../../daemon/net/checkpoint.js';

const ADDR = JSON.stringify([
  { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK'], mtu: 65536, addr_info: [] },
  { ifindex: 2, link: 'up0', ifname: 'peer0', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], mtu: 1500, addr_info: [{ family: 'inet6', local: 'fe80::70cd:73ff:fe17:669e', prefixlen: 64, scope: 'link' }] },
  {
    ifindex: 3, link: 'peer0', ifname: 'up0', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], mtu: 1400, operstate: 'UP',
    addr_info: [
      { family: 'inet', local: '10.9.0.2', prefixlen: 24, broadcast: '10.9.0.255', scope: 'global', label: 'up0' },
      { family: 'inet', local: '10.9.1.2', prefixlen: 25, scope: 'global', label: 'up0' },
      { family: 'inet6', local: 'fe80::d4bf:a9ff:fef0:55c', prefixlen: 64, scope: 'link' },
    ],
  },
  { ifindex: 4, ifname: 'br9', flags: ['BROADCAST', 'MULTICAST'], mtu: 1500, operstate: 'DOWN', addr_info: [] },
  { ifindex: 6, link: 'p2', ifname: 'p1', flags: ['BROADCAST', 'MULTICAST', 'M-DOWN'], mtu: 1500, master: 'br9', addr_info: [] },
]);
const ROUTES = JSON.stringify([
  { dst: 'default', gateway: '10.9.0.1', dev: 'up0', flags: [] },
  { dst: '10.7.0.0/16', dev: 'up0', scope: 'link', flags: [] },
  { dst: '10.8.0.0/16', gateway: '10.9.0.1', dev: 'up0', protocol: 'static', prefsrc: '10.9.0.2', metric: 50, flags: [] },
  { dst: '10.9.0.0/24', dev: 'up0', protocol: 'kernel', scope: 'link', prefsrc: '10.9.0.2', flags: [] },
  { dst: '10.9.1.0/25', dev: 'up0', protocol: 'kernel', scope: 'link', prefsrc: '10.9.1.2', flags: [] },
  { dst: '10.6.0.0/16', dev: 'br9', scope: 'link', flags: [] },
  { type: 'blackhole', dst: '10.5.0.0/16', flags: [] },
]);

describe('parseCheckpoint', () => {
  it('keeps IPv4 addresses with broadcast, MTU, state and master of the links asked for, and their routes', () => {
    const cp = parseCheckpoint(['up0', 'p1', 'nvbnew'], ADDR, ROUTES);
    expect(cp.absent).toEqual(['nvbnew']);
    expect(cp.links).toEqual([
      { name: 'up0', mtu: 1400, up: true, addresses: [{ cidr: '10.9.0.2/24', broadcast: '10.9.0.255' }, { cidr: '10.9.1.2/25' }] },
      { name: 'p1', mtu: 1500, up: false, master: 'br9', addresses: [] },
    ]);
    // br9's route is not ours to restore (br9 was not asked for); the blackhole has no device.
    expect(cp.routes.map((r) => r.dst)).toEqual(['default', '10.7.0.0/16', '10.8.0.0/16', '10.9.0.0/24', '10.9.1.0/25']);
    expect(cp.routes[2]).toEqual({ dst: '10.8.0.0/16', dev: 'up0', gateway: '10.9.0.1', protocol: 'static', metric: 50, prefsrc: '10.9.0.2' });
    expect(cp.defaultGateway).toBe('10.9.0.1');
  });

  it('finds the default gateway even when its device is not in the checkpoint, lowest metric first', () => {
    const routes = JSON.stringify([
      { dst: 'default', gateway: '192.0.2.1', dev: 'eth9', metric: 200 },
      { dst: 'default', gateway: '192.0.2.254', dev: 'eth8', metric: 100 },
    ]);
    const cp = parseCheckpoint(['up0'], ADDR, routes);
    expect(cp.routes).toEqual([]);
    expect(cp.defaultGateway).toBe('192.0.2.254');
    expect(parseCheckpoint(['up0'], ADDR, '[]').defaultGateway).toBeUndefined();
  });

  it('refuses a link name that could smuggle a batch line', () => {
    expect(() => parseCheckpoint(['up0\nlink del dev eth0'], ADDR, ROUTES)).toThrow(/bad interface name/);
  });
});

describe('restorePlan', () => {
  it('deletes new links, resets masters, flushes and re-adds addresses, then re-adds non-kernel routes', () => {
    const cp = parseCheckpoint(['nvbnew', 'up0', 'p1'], ADDR, ROUTES);
    expect(renderHostBatch(restorePlan(cp)).split('\n')).toEqual([
      'link del dev nvbnew',
      'link set dev up0 nomaster',
      'link set dev p1 nomaster',
      'link set dev up0 mtu 1400 up',
      'link set dev p1 mtu 1500 master br9 down',
      'route flush table main dev up0',
      'addr flush dev up0',
      'addr add 10.9.0.2/24 broadcast 10.9.0.255 dev up0',
      'addr add 10.9.1.2/25 dev up0',
      'route flush table main dev p1',
      'addr flush dev p1',
      'route replace default via 10.9.0.1 dev up0',
      'route replace 10.7.0.0/16 dev up0 scope link',
      'route replace 10.8.0.0/16 via 10.9.0.1 dev up0 proto static metric 50 src 10.9.0.2',
      '',
    ]);
  });
});

describe('bridgeOverUplinkPlan', () => {
  it('moves addresses and routes from the uplink to a new bridge with the uplink as its port', () => {
    const cp = parseCheckpoint(['up0', 'nvbnew'], ADDR, ROUTES);
    expect(bridgeOverUplinkPlan(cp, 'up0', 'nvbnew').map(renderHostOp)).toEqual([
      'link add name nvbnew mtu 1400 type bridge',
      'addr del 10.9.0.2/24 dev up0',
      'addr del 10.9.1.2/25 dev up0',
      'link set dev up0 master nvbnew up',
      'link set dev nvbnew up',
      'addr add 10.9.0.2/24 broadcast 10.9.0.255 dev nvbnew',
      'addr add 10.9.1.2/25 dev nvbnew',
      'route replace default via 10.9.0.1 dev nvbnew',
      'route replace 10.7.0.0/16 dev nvbnew scope link',
      'route replace 10.8.0.0/16 via 10.9.0.1 dev nvbnew proto static metric 50 src 10.9.0.2',
    ]);
  });

  it('refuses a missing uplink and an existing bridge', () => {
    const cp = parseCheckpoint(['up0', 'br9'], ADDR, ROUTES);
    expect(() => bridgeOverUplinkPlan(cp, 'eth7', 'nvbnew')).toThrow(/uplink eth7/);
    expect(() => bridgeOverUplinkPlan(cp, 'up0', 'br9')).toThrow(/already exists/);
  });
});

describe('renderHostOp', () => {
  it('refuses values that are not addresses, CIDRs or words', () => {
    expect(() => renderHostOp({ op: 'addr-add', dev: 'up0', cidr: '10.0.0.1/33' })).toThrow(/bad CIDR/);
    expect(() => renderHostOp({ op: 'addr-add', dev: 'up0', cidr: '10.0.0.1/24\nlink del dev up0' })).toThrow(/bad CIDR/);
    expect(() => renderHostOp({ op: 'route-replace', route: { dst: 'default', dev: 'up0', gateway: '10.0.0.256' } })).toThrow(/bad IPv4/);
    expect(() => renderHostOp({ op: 'route-replace', route: { dst: 'default', dev: 'up0', protocol: 'static mtu 9000' } })).toThrow(/bad protocol/);
    expect(() => renderHostOp({ op: 'route-del', route: { dst: 'default', dev: 'up0', metric: -1 } })).toThrow(/bad metric/);
  });
});

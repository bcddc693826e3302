// The pure parts of the vmbr0 move for bridge networks: which uplinks carry the host's addresses, and the
// host-change plan (bridgeOverUplinkPlan plus the network's MTU and STP) rendered as `ip -batch` lines.
import { describe, expect, it } from 'vitest';
import { renderHostOp, type Checkpoint } from '../../../daemon/net/checkpoint.js';
import { addressedUplinks, bridgeMovePlan } from '../../../daemon/net/network-bridge.js';
import { emptyHostState, normaliseSpec } from '../../../daemon/net/network-model.js';

const cp: Checkpoint = {
  links: [{ name: 'eth0', mtu: 1500, up: true, addresses: [{ cidr: '192.0.2.10/24', broadcast: '192.0.2.255' }] }],
  absent: ['nvbx'],
  routes: [
    { dst: '192.0.2.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '192.0.2.10' },
    { dst: 'default', dev: 'eth0', gateway: '192.0.2.1' },
  ],
  defaultGateway: '192.0.2.1',
};

describe('bridgeMovePlan', () => {
  it('creates the bridge with the network MTU and STP, moves addresses and non-kernel routes', () => {
    const spec = normaliseSpec({ type: 'bridge', mtu: 9000, bridge: { uplinks: ['eth0'], stp: true } });
    expect(bridgeMovePlan(cp, 'eth0', 'nvbx', spec).map(renderHostOp)).toEqual([
      'link add name nvbx mtu 9000 type bridge',
      'link set dev nvbx type bridge stp_state 1',
      'addr del 192.0.2.10/24 dev eth0',
      'link set dev eth0 mtu 9000',
      'link set dev eth0 master nvbx up',
      'link set dev nvbx up',
      'addr add 192.0.2.10/24 broadcast 192.0.2.255 dev nvbx',
      'route replace default via 192.0.2.1 dev nvbx',
    ]);
  });
});

describe('addressedUplinks', () => {
  const host = emptyHostState();
  host.links.set('eth0', { name: 'eth0', ifindex: 2, kind: undefined, mtu: 1500, master: undefined, up: true, mac: '' });
  host.links.set('eth1', { name: 'eth1', ifindex: 3, kind: undefined, mtu: 1500, master: undefined, up: true, mac: '' });
  host.addresses.set('eth0', ['192.0.2.10/24']);
  it('names managed-bridge uplinks with addresses that are not yet ports; never with a VLAN or an adopted bridge', () => {
    expect(addressedUplinks('n', normaliseSpec({ type: 'bridge', bridge: { uplinks: ['eth0', 'eth1'] } }), host)).toEqual(['eth0']);
    expect(addressedUplinks('n', normaliseSpec({ type: 'bridge', bridge: { uplinks: ['eth1'] } }), host)).toEqual([]);
    expect(addressedUplinks('n', normaliseSpec({ type: 'bridge', vlan: 10, bridge: { uplinks: ['eth0'] } }), host)).toEqual([]);
    expect(addressedUplinks('n', normaliseSpec({ type: 'bridge', bridge: { name: 'br0', managed: false } }), host)).toEqual([]);
  });
});

// The pure half of networks: spec defaults and validation, and the plans each driver composes from a
// described host state (bridge, VLAN, NAT), with their diff text and undo.
import { describe, expect, it } from 'vitest';
import { isAppError } from '../../../daemon/lib/errors.js';
import { bridgeName } from '../../../daemon/net/names.js';
import { planNetwork } from '../../../daemon/net/network-drivers.js';
import { createDhcpServer } from '../../../daemon/net/dhcp/server.js';
import { bridgeDriver, vlanLinkName } from '../../../daemon/net/network-bridge.js';
import { routedDriver } from '../../../daemon/net/network-routed.js';
import { dhcpOffer, emptyHostState, normaliseSpec, undoOf, type HostState, type NetworkSpec } from '../../../daemon/net/network-model.js';
import { natDriver, renderNatTable } from '../../../daemon/net/network-nat.js';

function host(links: Array<{ name: string; kind?: string; master?: string; mtu?: number; up?: boolean }>): HostState {
  const h = emptyHostState();
  for (const [i, l] of links.entries()) h.links.set(l.name, { name: l.name, ifindex: i + 1, kind: l.kind, mtu: l.mtu ?? 1500, master: l.master, up: l.up ?? true, mac: '' });
  return h;
}

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return isAppError(e) ? e.code : String(e);
  }
  return 'no error';
};

describe('normaliseSpec', () => {
  it('fills defaults: mtu 1500, managed bridge, STP off, NAT on 10.0.2.0/24 with .1 as gateway and IPAM from it', () => {
    const n = normaliseSpec({ type: 'nat' });
    expect(n.mtu).toBe(1500);
    expect(n.bridge).toEqual({ name: undefined, managed: true, uplinks: [], stp: false });
    expect(n.nat).toEqual({ subnet: '10.0.2.0/24', gateway: '10.0.2.1', uplink: undefined, isolation: false, forwards: [] });
    expect(n.ipam).toEqual({ subnet: '10.0.2.0/24', gateway: '10.0.2.1', dns: [], search: [], reserved: [] });
  });

  it('refuses inconsistent specs with NETWORK_INVALID', () => {
    const bad: NetworkSpec[] = [
      { type: 'bridge', mtu: 100 },
      { type: 'bridge', ipam: { subnet: '10.0.0.1/24' } },
      { type: 'bridge', ipam: { subnet: '10.0.0.0/24', gateway: '10.0.1.1' } },
      { type: 'bridge', nat: {} },
      { type: 'nat', nat: { subnet: '10.0.0.0/31' } },
      { type: 'nat', nat: { forwards: [{ protocol: 'tcp', hostPort: 80, vm: 'a', nic: 'n', vmPort: 80 }, { protocol: 'tcp', hostPort: 80, vm: 'b', nic: 'n', vmPort: 81 }] } },
      { type: 'nat', ipam: { subnet: '10.9.0.0/24' } },
      { type: 'routed' },
      { type: 'routed', routed: { pool: '203.0.113.1/28' } },
      { type: 'bridge', vlan: 4095 },
    ];
    for (const s of bad) expect(code(() => normaliseSpec(s)), JSON.stringify(s)).toBe('NETWORK_INVALID');
  });
});

describe('bridge plans', () => {
  it('creates a managed bridge with our name, enslaves the uplink with the MTU, brings it up; the diff reads like ip', () => {
    const desired = normaliseSpec({ type: 'bridge', mtu: 9000, bridge: { uplinks: ['eth1'] } });
    const { changes, diff } = planNetwork({ name: 'lan', desired, previous: undefined, host: host([{ name: 'eth1', up: false }]), nicAddresses: new Map() });
    const br = bridgeName('lan');
    expect(changes.map((c) => c.kind)).toEqual(['link', 'link', 'link']);
    expect(diff).toBe(`+ ip link add name ${br} mtu 9000 type bridge\n~ ip link set dev eth1 mtu 9000 master ${br} up\n~ ip link set dev ${br} up\n`);
    // The uplink's undo puts back what it was (down, mtu 1500, no master).
    expect(undoOf(changes[1]!)).toEqual([{ kind: 'link', op: { op: 'set', name: 'eth1', master: null, mtu: 1500, up: false }, undo: [] }]);
  });

  it('plans nothing once the host matches, and only the difference after an uplink change', () => {
    const br = bridgeName('lan');
    const desired = normaliseSpec({ type: 'bridge', bridge: { uplinks: ['eth1'] } });
    const h = host([{ name: br, kind: 'bridge' }, { name: 'eth1', master: br }, { name: 'eth2' }]);
    h.stp.set(br, false);
    expect(planNetwork({ name: 'lan', desired, previous: desired, host: h, nicAddresses: new Map() }).diff).toBe('(no changes)\n');
    const next = normaliseSpec({ type: 'bridge', bridge: { uplinks: ['eth2'] } });
    expect(planNetwork({ name: 'lan', desired: next, previous: desired, host: h, nicAddresses: new Map() }).diff).toBe(
      `~ ip link set dev eth2 mtu 1500 master ${br} up\n~ ip link set dev eth1 nomaster\n`,
    );
  });

  it('turns STP on only when asked, and refuses an uplink already in another bridge', () => {
    const desired = normaliseSpec({ type: 'bridge', bridge: { name: 'br-x', stp: true, uplinks: ['eth1'] } });
    const plan = planNetwork({ name: 'lan', desired, previous: undefined, host: host([{ name: 'eth1' }]), nicAddresses: new Map() });
    expect(plan.diff).toContain('~ bridge br-x: stp on');
    expect(code(() => planNetwork({ name: 'lan', desired, previous: undefined, host: host([{ name: 'eth1', master: 'other' }, { name: 'other', kind: 'bridge' }]), nicAddresses: new Map() }))).toBe(
      'NETWORK_CONFLICT',
    );
  });

  it('adopts an existing bridge without a single change, refuses a missing one, and never removes it', () => {
    const desired = normaliseSpec({ type: 'bridge', bridge: { name: 'vmbr0', managed: false } });
    const h = host([{ name: 'vmbr0', kind: 'bridge' }]);
    expect(planNetwork({ name: 'lan', desired, previous: undefined, host: h, nicAddresses: new Map() }).changes).toEqual([]);
    expect(planNetwork({ name: 'lan', desired: undefined, previous: desired, host: h, nicAddresses: new Map() }).changes).toEqual([]);
    expect(code(() => planNetwork({ name: 'lan', desired, previous: undefined, host: host([]), nicAddresses: new Map() }))).toBe('NETWORK_INVALID');
  });

  it('with a VLAN, enslaves a tagged sub-interface of the uplink instead of the uplink itself', () => {
    const desired = normaliseSpec({ type: 'bridge', vlan: 100, bridge: { uplinks: ['eth1'] } });
    const v = vlanLinkName('lan', 'eth1', 100);
    const { diff } = planNetwork({ name: 'lan', desired, previous: undefined, host: host([{ name: 'eth1' }]), nicAddresses: new Map() });
    expect(diff).toContain(`+ ip link add link eth1 name ${v} mtu 1500 type vlan id 100`);
    expect(diff).toContain(`~ ip link set dev ${v} mtu 1500 master ${bridgeName('lan')} up`);
    expect(diff).not.toContain('set dev eth1');
    const removal = planNetwork({ name: 'lan', desired: undefined, previous: desired, host: host([{ name: bridgeName('lan'), kind: 'bridge' }, { name: v, kind: 'vlan' }]), nicAddresses: new Map() });
    expect(removal.diff).toBe(`- ip link del dev ${bridgeName('lan')}\n- ip link del dev ${v}\n`);
  });
});

describe('nat plans', () => {
  it('bridge + gateway address + ip_forward + nat table; forwards appear once their NIC has an address', () => {
    const desired = normaliseSpec({ type: 'nat', nat: { isolation: true, forwards: [{ protocol: 'tcp', hostPort: 8080, vm: 'vm1', nic: 'net0', vmPort: 80 }] } });
    const br = bridgeName('natnet');
    const h = host([]);
    h.sysctl.set('net.ipv4.ip_forward', '0');
    const first = planNetwork({ name: 'natnet', desired, previous: undefined, host: h, nicAddresses: new Map() });
    expect(first.diff.split('\n')).toEqual([
      `+ ip link add name ${br} mtu 1500 type bridge`,
      `~ ip link set dev ${br} up`,
      `+ ip addr add 10.0.2.1/24 dev ${br}`,
      '~ sysctl net.ipv4.ip_forward=1 (was 0)',
      `+ nft table inet ${br}`,
      `    masquerade 10.0.2.0/24 out of any link but ${br}`,
      '',
    ]);
    const withNic = renderNatTable('natnet', desired, new Map([['vm1/net0', '10.0.2.2']]));
    expect(withNic.script).toContain(`add rule inet ${br} prerouting iifname != "${br}" fib daddr type local tcp dport 8080 counter dnat ip to 10.0.2.2:80`);
  });

  it('isolation isolates every port of the bridge and opens them again when turned off', () => {
    const br = bridgeName('natnet');
    const iso = normaliseSpec({ type: 'nat', nat: { isolation: true } });
    const h = host([{ name: br, kind: 'bridge' }, { name: 'tap1', master: br }, { name: 'tap2', master: br }, { name: 'other', master: 'x' }]);
    h.addresses.set(br, ['10.0.2.1/24']);
    h.sysctl.set('net.ipv4.ip_forward', '1');
    h.nftTables.add(`inet ${br}`);
    h.nftContent.set(`inet ${br}`, renderNatTable('natnet', iso, new Map()).script);
    h.stp.set(br, false);
    h.isolated.set('tap2', true);
    expect(planNetwork({ name: 'natnet', desired: iso, previous: iso, host: h, nicAddresses: new Map() }).diff).toBe('~ ip link set dev tap1 type bridge_slave isolated on\n');
    const open = normaliseSpec({ type: 'nat' });
    expect(planNetwork({ name: 'natnet', desired: open, previous: iso, host: h, nicAddresses: new Map() }).diff).toBe('~ ip link set dev tap2 type bridge_slave isolated off\n');
  });

  it('removal deletes tables, the gateway address and the bridge, never ip_forward', () => {
    const spec = normaliseSpec({ type: 'nat' });
    const br = bridgeName('n');
    const h = host([{ name: br, kind: 'bridge' }]);
    h.addresses.set(br, ['10.0.2.1/24']);
    h.nftTables.add(`inet ${br}`);
    const { diff } = planNetwork({ name: 'n', desired: undefined, previous: spec, host: h, nicAddresses: new Map() });
    expect(diff).toBe(`- nft table inet ${br}\n- ip addr del 10.0.2.1/24 dev ${br}\n- ip link del dev ${br}\n`);
  });

  it('refuses a type change', () => {
    const a = normaliseSpec({ type: 'nat' });
    const b = normaliseSpec({ type: 'bridge' });
    expect(code(() => planNetwork({ name: 'n', desired: b, previous: a, host: host([]), nicAddresses: new Map() }))).toBe('NETWORK_INVALID');
  });
});

describe('dhcpOffer', () => {
  it('routed: a /32 with classless routes to 169.254.1.1 that the real DHCP server accepts; none without IPAM', () => {
    const att = routedDriver.nicAttachment('rt', normaliseSpec({ type: 'routed', routed: { pool: '203.0.113.16/28' } }));
    const offer = dhcpOffer(att, { mac: '0e:00:00:00:00:01', ip: '203.0.113.17', hostname: 'vm1' })!;
    expect(offer).toEqual({
      mac: '0e:00:00:00:00:01',
      ip: '203.0.113.17',
      prefixLength: 32,
      serverIp: '169.254.1.1',
      router: '169.254.1.1',
      mtu: 1500,
      routes: [
        { destination: '169.254.1.1/32', gateway: '0.0.0.0' },
        { destination: '0.0.0.0/0', gateway: '169.254.1.1' },
      ],
      hostname: 'vm1',
    });
    expect(() => createDhcpServer(offer)).not.toThrow();
    expect(dhcpOffer(bridgeDriver.nicAttachment('lan', normaliseSpec({ type: 'bridge' })), { mac: '0e:00:00:00:00:01', ip: '10.0.0.2' })).toBeUndefined();
  });

  it('nat: the subnet prefix, the gateway as router and server, DNS and search as given', () => {
    const att = natDriver.nicAttachment('n', normaliseSpec({ type: 'nat', ipam: { subnet: '10.0.2.0/24', dns: ['10.0.2.1'], search: ['lab'] } }));
    expect(dhcpOffer(att, { mac: '0e:00:00:00:00:02', ip: '10.0.2.5' })).toEqual({
      mac: '0e:00:00:00:00:02',
      ip: '10.0.2.5',
      prefixLength: 24,
      serverIp: '10.0.2.1',
      router: '10.0.2.1',
      mtu: 1500,
      dns: ['10.0.2.1'],
      search: ['lab'],
    });
  });
});

// The routed network: no shared L2. Each VM NIC's tap is a point-to-point link; the VM gets a /32 from the
// pool, the host routes that /32 to the tap and owns the VM's gateway 169.254.1.1 on every tap (so it
// answers the VM's ARP for it), and DHCP hands out the gateway as classless routes (RFC 3442). Floating IPs:
// an external /32 on the uplink, DNAT to the NIC's address and SNAT back, in the network's own nft table.
import { bridgeName, tapName } from './names.js';
import { applyChanges } from './network-apply.js';
import { invalid, planAddresses, type FloatingIp, type HostChange, type HostState, type NicAttachment, type NormalSpec, type StatusCheck } from './network-model.js';
import type { NetworkDriver, PlanInput } from './network-drivers.js';
import { IP_FORWARD, tableChange } from './network-nat.js';

/** The link-local gateway every routed VM sees (Calico's choice, and the address the seed's VPC CNI left unanswered). */
export const ROUTED_GATEWAY = '169.254.1.1';
const GATEWAY_CIDR = `${ROUTED_GATEWAY}/32`;

/**
 * The tap of an IPAM owner "vmId/nicId". It is the first-attempt name of names.ts; a NIC whose tap took
 * a later attempt (a 50-bit collision) is reported by status as missing rather than guessed at.
 */
export function routedTap(owner: string): string | undefined {
  const slash = owner.indexOf('/');
  return slash <= 0 ? undefined : tapName(owner.slice(0, slash), owner.slice(slash + 1));
}

function nicChanges(host: HostState, owner: string, ip: string): HostChange[] {
  const tap = routedTap(owner);
  if (tap === undefined || !host.links.has(tap)) return [];
  const out = planAddresses(host, tap, [GATEWAY_CIDR], []);
  const dest = `${ip}/32`;
  if (host.routes.get(dest) !== tap) {
    const other = host.routes.get(dest);
    if (other !== undefined) out.push({ kind: 'route-del', dest, dev: other });
    out.push({ kind: 'route-add', dest, dev: tap });
  }
  return out;
}

/**
 * The routed network's own inet table (floating IPs only). A routed network has no bridge, so the name
 * names.ts would give its bridge is free to name the table, as a NAT network's table shares its bridge's.
 */
export function routedTable(name: string): string {
  return bridgeName(name);
}

/** The floating IPs whose NIC has an address now: only those are announced and mapped. */
function activeFloatingIps(spec: NormalSpec, nicAddresses: ReadonlyMap<string, string>): Array<FloatingIp & { nicIp: string }> {
  const out: Array<FloatingIp & { nicIp: string }> = [];
  for (const f of spec.routed?.floatingIps ?? []) {
    const nicIp = nicAddresses.get(`${f.vm}/${f.nic}`);
    if (nicIp !== undefined) out.push({ ...f, nicIp });
  }
  return out;
}

/**
 * Pure: the table body for the active floating IPs, or undefined when there are none (the table goes).
 * DNAT matches the external address from anywhere (the LAN, the host, other VMs); SNAT only what leaves
 * by the uplink, so VM-to-VM traffic on the node keeps its pool addresses.
 */
export function renderRoutedTable(name: string, spec: NormalSpec, nicAddresses: ReadonlyMap<string, string>): { script: string; summary: string[] } | undefined {
  const active = activeFloatingIps(spec, nicAddresses);
  if (active.length === 0) return undefined;
  const t = `inet ${routedTable(name)}`;
  const uplink = spec.routed!.uplink!;
  const lines = [
    `add table ${t}`,
    `add chain ${t} prerouting { type nat hook prerouting priority -100; policy accept; }`,
    `add chain ${t} output { type nat hook output priority -100; policy accept; }`,
    `add chain ${t} postrouting { type nat hook postrouting priority 100; policy accept; }`,
  ];
  const summary: string[] = [];
  for (const f of active) {
    lines.push(`add rule ${t} prerouting ip daddr ${f.ip} counter dnat ip to ${f.nicIp}`);
    // The host's own connections to the floating IP (it is a local address here) go to the VM too.
    lines.push(`add rule ${t} output ip daddr ${f.ip} counter dnat ip to ${f.nicIp}`);
    lines.push(`add rule ${t} postrouting ip saddr ${f.nicIp} oifname "${uplink}" counter snat ip to ${f.ip}`);
    summary.push(`floating ${f.ip} <-> ${f.vm}/${f.nic} ${f.nicIp} (announced on ${uplink})`);
  }
  return { script: lines.join('\n') + '\n', summary };
}

/**
 * The external addresses, as /32s on the uplink: the host then answers ARP for them like for any of its
 * own addresses, with no proxy-ARP sysctl or neighbour entries to keep in step. `previous` names the
 * addresses this network put there before (on another uplink, or for floating IPs since removed).
 */
function floatingAddressChanges(host: HostState, spec: NormalSpec | undefined, previous: NormalSpec | undefined, nicAddresses: ReadonlyMap<string, string>): HostChange[] {
  const out: HostChange[] = [];
  const want = new Map<string, string[]>();
  const uplink = spec?.routed?.uplink;
  if (spec !== undefined && uplink !== undefined) want.set(uplink, activeFloatingIps(spec, nicAddresses).map((f) => `${f.ip}/32`));
  const managed = new Map<string, string[]>();
  for (const s of [previous, spec]) {
    const u = s?.routed?.uplink;
    if (u === undefined) continue;
    managed.set(u, [...(managed.get(u) ?? []), ...s!.routed!.floatingIps.map((f) => `${f.ip}/32`)]);
  }
  for (const dev of new Set([...managed.keys(), ...want.keys()])) {
    if (!host.links.has(dev)) {
      if ((want.get(dev) ?? []).length > 0) throw invalid(`routed.uplink ${dev} does not exist`);
      continue;
    }
    out.push(...planAddresses(host, dev, want.get(dev) ?? [], managed.get(dev) ?? []));
  }
  return out;
}

function plan(input: PlanInput): HostChange[] {
  const spec = input.desired!;
  const out: HostChange[] = [];
  if (input.host.sysctl.get(IP_FORWARD) !== '1') out.push({ kind: 'sysctl', key: IP_FORWARD, value: '1', previous: input.host.sysctl.get(IP_FORWARD) });
  for (const [owner, ip] of [...input.nicAddresses].sort()) out.push(...nicChanges(input.host, owner, ip));
  // The mapping before the address: the address must never answer for the host itself.
  const table = renderRoutedTable(input.name, spec, input.nicAddresses);
  out.push(...tableChange(input.host, 'inet', routedTable(input.name), table?.script, table?.summary ?? []));
  out.push(...floatingAddressChanges(input.host, spec, input.previous, input.nicAddresses));
  return out;
}

function remove(input: Omit<PlanInput, 'desired'>): HostChange[] {
  // Per-NIC routes and gateway addresses go with the taps (DELETE is refused while NICs exist); the
  // floating IPs' addresses go first, then their table.
  return [...floatingAddressChanges(input.host, undefined, input.previous, new Map()), ...tableChange(input.host, 'inet', routedTable(input.name), undefined, [])];
}

/** One check per floating IP ("floating:IP"): its NIC has an address, the address is announced, the table is there. */
export function floatingIpChecks(name: string, spec: NormalSpec, host: HostState, nicAddresses: ReadonlyMap<string, string>): StatusCheck[] {
  const uplink = spec.routed?.uplink;
  const table = host.nftTables.has(`inet ${routedTable(name)}`);
  return (spec.routed?.floatingIps ?? []).map((f) => {
    const nicIp = nicAddresses.get(`${f.vm}/${f.nic}`);
    const announced = uplink !== undefined && (host.addresses.get(uplink) ?? []).includes(`${f.ip}/32`);
    const ok = nicIp !== undefined && announced && table;
    const message =
      nicIp === undefined
        ? `${f.vm}/${f.nic} has no address on this network yet`
        : `${f.ip} -> ${nicIp}: ${announced ? `announced on ${uplink}` : `NOT on ${uplink ?? '?'}`}, nat table ${table ? 'present' : 'missing'}`;
    return { name: `floating:${f.ip}`, ok, message };
  });
}

export const routedDriver: NetworkDriver = {
  type: 'routed',
  validate(name, spec) {
    if (spec.bridge.uplinks.length > 0 || spec.bridge.name !== undefined) throw invalid(`network ${name}: a routed network has no bridge`);
    if (spec.vlan !== undefined) throw invalid(`network ${name}: vlan is for bridge networks`);
    if (spec.ipam !== undefined) throw invalid(`network ${name}: a routed network's addresses come from routed.pool, not ipam`);
  },
  query(name) {
    return { tables: [{ family: 'inet', table: routedTable(name) }], sysctls: [IP_FORWARD], bridges: [], routes: true };
  },
  plan,
  apply: applyChanges,
  remove,
  status(name, spec, host, nicAddresses): StatusCheck[] {
    const fwd = host.sysctl.get(IP_FORWARD);
    const checks: StatusCheck[] = [{ name: 'ip-forward', ok: fwd === '1', message: `${IP_FORWARD}=${fwd ?? 'unknown'}` }];
    for (const [owner, ip] of [...nicAddresses].sort()) {
      const tap = routedTap(owner);
      const routed = tap !== undefined && host.routes.get(`${ip}/32`) === tap;
      const gw = tap !== undefined && (host.addresses.get(tap) ?? []).includes(GATEWAY_CIDR);
      checks.push({
        name: `nic:${owner}`,
        ok: routed && gw,
        message: tap === undefined || !host.links.has(tap) ? `${owner}: tap ${tap ?? '?'} not found` : `${ip}/32 ${routed ? 'routed' : 'NOT routed'} to ${tap}, gateway ${gw ? 'present' : 'missing'}`,
      });
    }
    checks.push(...floatingIpChecks(name, spec, host, nicAddresses));
    return checks;
  },
  nicAttachment(_name, spec: NormalSpec): NicAttachment {
    return {
      mtu: spec.mtu,
      bridge: undefined,
      isolated: false,
      ipam: {
        subnet: spec.routed!.pool,
        gateway: ROUTED_GATEWAY,
        prefixLength: 32,
        dns: [],
        search: [],
        // With classless routes the client ignores option 3: the on-link route to the gateway comes first.
        routes: [
          { destination: GATEWAY_CIDR, gateway: '0.0.0.0' },
          { destination: '0.0.0.0/0', gateway: ROUTED_GATEWAY },
        ],
      },
    };
  },
};

// The NAT network (KubeVirt's masquerade): a node-local bridge carrying the gateway address of a private
// subnet, masquerade out of the uplink and port forwards (DNAT) in our own nft table per network, and
// optional isolation between the VMs of the network (isolated bridge ports: the kernel's own port isolation,
// since this kernel has no nft bridge meta matches to tell one bridge's frames from another's).
import { describePool } from './ipam.js';
import { networkBridge, bridgeStatus } from './network-bridge.js';
import { applyChanges } from './network-apply.js';
import { invalid, planAddresses, planBridge, type HostChange, type HostState, type NicAttachment, type NormalSpec, type StatusCheck } from './network-model.js';
import type { NetworkDriver, PlanInput } from './network-drivers.js';

export const IP_FORWARD = 'net.ipv4.ip_forward';

/** The gateway address on the bridge, e.g. 10.0.2.1/24. */
export function gatewayCidr(spec: NormalSpec): string {
  const nat = spec.nat!;
  return `${nat.gateway}/${describePool({ cidr: nat.subnet }).prefix}`;
}

/** Our per-network nft table carries the bridge's name (made in names.ts). */
export function natTable(name: string, spec: NormalSpec): string {
  return networkBridge(name, spec);
}

/**
 * Pure: the inet table body (after the table is re-created). Forwards whose NIC has no address yet are
 * left out and reported by status; they appear on the next plan once the NIC is plumbed.
 */
export function renderNatTable(name: string, spec: NormalSpec, nicAddresses: ReadonlyMap<string, string>): { script: string; summary: string[] } {
  const nat = spec.nat!;
  const br = networkBridge(name, spec);
  const t = `inet ${natTable(name, spec)}`;
  const lines = [
    `add table ${t}`,
    `add chain ${t} postrouting { type nat hook postrouting priority 100; policy accept; }`,
    `add chain ${t} prerouting { type nat hook prerouting priority -100; policy accept; }`,
  ];
  const out = nat.uplink === undefined ? `oifname != "${br}"` : `oifname "${nat.uplink}"`;
  lines.push(`add rule ${t} postrouting ip saddr ${nat.subnet} ip daddr != ${nat.subnet} ${out} counter masquerade`);
  const summary = [`masquerade ${nat.subnet} out of ${nat.uplink ?? `any link but ${br}`}`];
  for (const f of nat.forwards) {
    const ip = nicAddresses.get(`${f.vm}/${f.nic}`);
    if (ip === undefined) continue;
    // Only traffic addressed to this host (fib daddr type local), never traffic passing through it.
    lines.push(`add rule ${t} prerouting iifname != "${br}" fib daddr type local ${f.protocol} dport ${f.hostPort} counter dnat ip to ${ip}:${f.vmPort}`);
    summary.push(`forward ${f.protocol}/${f.hostPort} -> ${f.vm}/${f.nic} ${ip}:${f.vmPort}`);
  }
  return { script: lines.join('\n') + '\n', summary };
}

/** Isolation is per bridge port: every port of the network's bridge is isolated exactly when asked. */
function planIsolation(host: HostState, bridge: string, want: boolean): HostChange[] {
  const out: HostChange[] = [];
  for (const l of host.links.values()) {
    if (l.master === bridge && (host.isolated.get(l.name) ?? false) !== want) out.push({ kind: 'port-isolated', dev: l.name, on: want });
  }
  return out;
}

/** The change that makes our table hold `script` (undefined: no table), or none when it already does. */
export function tableChange(host: HostState, family: 'inet' | 'bridge', table: string, script: string | undefined, summary: string[]): HostChange[] {
  const k = `${family} ${table}`;
  const exists = host.nftTables.has(k);
  const previous = exists ? host.nftContent.get(k) : undefined;
  if (script === undefined) return exists ? [{ kind: 'nft-table', family, table, script: undefined, previous, summary: [] }] : [];
  if (exists && previous === script) return [];
  return [{ kind: 'nft-table', family, table, script, previous, summary }];
}

function plan(input: PlanInput): HostChange[] {
  const spec = input.desired!;
  const bridge = networkBridge(input.name, spec);
  const host = input.host;
  const out = planBridge(host, bridge, { mtu: spec.mtu, uplinks: [], stp: spec.bridge.stp, create: true }, []);
  const previousAddr = input.previous?.nat ? [gatewayCidr(input.previous)] : [];
  // The bridge may be about to be created: its addresses are then none.
  out.push(...planAddresses(host, bridge, [gatewayCidr(spec)], previousAddr));
  if (host.sysctl.get(IP_FORWARD) !== '1') out.push({ kind: 'sysctl', key: IP_FORWARD, value: '1', previous: host.sysctl.get(IP_FORWARD) });
  const nat = renderNatTable(input.name, spec, input.nicAddresses);
  out.push(...tableChange(host, 'inet', natTable(input.name, spec), nat.script, nat.summary));
  out.push(...planIsolation(host, bridge, spec.nat!.isolation));
  return out;
}

function remove(input: Omit<PlanInput, 'desired'>): HostChange[] {
  const spec = input.previous!;
  const out = tableChange(input.host, 'inet', natTable(input.name, spec), undefined, []);
  const bridge = networkBridge(input.name, spec);
  const l = input.host.links.get(bridge);
  // ip_forward stays on: other networks or the host may rely on it, and turning it on was not destructive.
  if (l !== undefined) {
    // Addresses go first, as changes of their own, so a failed removal puts them back.
    for (const cidr of input.host.addresses.get(bridge) ?? []) out.push({ kind: 'addr-del', dev: bridge, cidr });
    out.push({ kind: 'link', op: { op: 'delete', name: bridge }, undo: [{ op: 'create-bridge', name: bridge, mtu: l.mtu }, { op: 'set', name: bridge, up: l.up }] });
  }
  return out;
}

export const natDriver: NetworkDriver = {
  type: 'nat',
  validate(name, spec) {
    if (spec.bridge.uplinks.length > 0) throw invalid(`network ${name}: a nat network's bridge has no uplinks (nat.uplink names where masquerade goes out)`);
    if (!spec.bridge.managed) throw invalid(`network ${name}: a nat network always manages its own bridge`);
    if (spec.vlan !== undefined) throw invalid(`network ${name}: vlan is for bridge networks`);
  },
  query(name, spec) {
    return { tables: [{ family: 'inet', table: natTable(name, spec) }], sysctls: [IP_FORWARD], bridges: [networkBridge(name, spec)] };
  },
  plan,
  apply: applyChanges,
  remove,
  status(name, spec, host, nicAddresses) {
    const bridge = networkBridge(name, spec);
    const checks: StatusCheck[] = bridgeStatus(bridge, spec, host, []);
    const gw = gatewayCidr(spec);
    const has = (host.addresses.get(bridge) ?? []).includes(gw);
    checks.push({ name: 'gateway-address', ok: has, message: has ? `${gw} on ${bridge}` : `${gw} missing on ${bridge}` });
    const fwd = host.sysctl.get(IP_FORWARD);
    checks.push({ name: 'ip-forward', ok: fwd === '1', message: `${IP_FORWARD}=${fwd ?? 'unknown'}` });
    const t = natTable(name, spec);
    const inet = host.nftTables.has(`inet ${t}`);
    checks.push({ name: 'nat-table', ok: inet, message: inet ? `nft table inet ${t} present` : `nft table inet ${t} missing` });
    const wrong = planIsolation(host, bridge, spec.nat!.isolation).map((c) => (c.kind === 'port-isolated' ? c.dev : ''));
    checks.push({
      name: 'isolation',
      ok: wrong.length === 0,
      message: wrong.length === 0 ? `every port ${spec.nat!.isolation ? 'isolated' : 'open'}` : `ports not ${spec.nat!.isolation ? 'isolated' : 'open'}: ${wrong.join(', ')}`,
    });
    for (const f of spec.nat!.forwards) {
      const ip = nicAddresses.get(`${f.vm}/${f.nic}`);
      checks.push({ name: `forward:${f.protocol}/${f.hostPort}`, ok: ip !== undefined && inet, message: ip === undefined ? `${f.vm}/${f.nic} has no address on this network yet` : `-> ${ip}:${f.vmPort}` });
    }
    return checks;
  },
  nicAttachment(name, spec): NicAttachment {
    const ipam = spec.ipam!;
    return { mtu: spec.mtu, bridge: networkBridge(name, spec), isolated: spec.nat!.isolation, ipam: { subnet: ipam.subnet, gateway: ipam.gateway, prefixLength: describePool({ cidr: ipam.subnet }).prefix, dns: ipam.dns, search: ipam.search, ...(ipam.domain === undefined ? {} : { domain: ipam.domain }) } };
  },
};

// The bridge network: VM taps become ports of a host Linux bridge. Managed: we create it (our name unless
// one is given), enslave the uplinks (or their VLAN sub-interfaces), set MTU and STP. Unmanaged: an
// existing bridge is adopted as it is and never changed or deleted.
import { bridgeOverUplinkPlan, type Checkpoint, type HostOp } from './checkpoint.js';
import { describePool } from './ipam.js';
import { bridgeName, vlanName } from './names.js';
import { applyChanges } from './network-apply.js';
import { invalid, planBridge, type HostChange, type HostState, type NicAttachment, type NormalSpec, type StatusCheck } from './network-model.js';
import type { NetworkDriver, PlanInput } from './network-drivers.js';

const IFNAME = /^[A-Za-z0-9_.:@+-]{1,15}$/;

/** The bridge a network uses: the given name, or ours derived from the network name. */
export function networkBridge(name: string, spec: NormalSpec): string {
  return spec.bridge.name ?? bridgeName(name);
}

/** The VLAN sub-interface of an uplink (names.ts's vlan kind: `nvq...`, so sweeps see it as ours). */
export function vlanLinkName(network: string, uplink: string, vlan: number): string {
  return vlanName(network, uplink, vlan);
}

/** The links that become bridge ports: the uplinks, or with a VLAN their tagged sub-interfaces. */
function ports(name: string, spec: NormalSpec): string[] {
  return spec.vlan === undefined ? spec.bridge.uplinks : spec.bridge.uplinks.map((u) => vlanLinkName(name, u, spec.vlan!));
}

export function bridgeStatus(bridge: string, spec: NormalSpec, host: HostState, portNames: string[]): StatusCheck[] {
  const l = host.links.get(bridge);
  const checks: StatusCheck[] = [
    { name: 'bridge-exists', ok: l?.kind === 'bridge', message: l === undefined ? `${bridge} does not exist` : l.kind === 'bridge' ? `${bridge} exists` : `${bridge} is a ${l.kind ?? 'physical'} link, not a bridge` },
  ];
  if (l === undefined) return checks;
  checks.push({ name: 'bridge-up', ok: l.up, message: l.up ? `${bridge} is up` : `${bridge} is down` });
  if (spec.bridge.managed) {
    checks.push({ name: 'bridge-mtu', ok: l.mtu === spec.mtu, message: `${bridge} mtu ${l.mtu} (want ${spec.mtu})` });
    const stp = host.stp.get(bridge);
    checks.push({ name: 'bridge-stp', ok: stp === spec.bridge.stp, message: `stp ${stp === undefined ? 'unknown' : stp ? 'on' : 'off'} (want ${spec.bridge.stp ? 'on' : 'off'})` });
  }
  for (const p of portNames) {
    const pl = host.links.get(p);
    checks.push({ name: `port:${p}`, ok: pl?.master === bridge, message: pl === undefined ? `${p} does not exist` : pl.master === bridge ? `${p} is a port of ${bridge}` : `${p} is not a port of ${bridge}` });
  }
  return checks;
}

function plan(input: PlanInput): HostChange[] {
  const spec = input.desired!;
  const bridge = networkBridge(input.name, spec);
  if (!spec.bridge.managed) {
    const l = input.host.links.get(bridge);
    if (l === undefined) throw invalid(`bridge ${bridge} does not exist (an unmanaged network adopts an existing bridge)`);
    if (l.kind !== 'bridge') throw invalid(`${bridge} is a ${l.kind ?? 'physical'} link, not a bridge`);
    return [];
  }
  const out: HostChange[] = [];
  if (spec.vlan !== undefined) {
    for (const u of spec.bridge.uplinks) {
      const name = vlanLinkName(input.name, u, spec.vlan);
      if (!input.host.links.has(name)) {
        if (!input.host.links.has(u)) throw invalid(`uplink ${u} does not exist`);
        out.push({ kind: 'vlan-add', name, parent: u, id: spec.vlan, mtu: spec.mtu });
      }
    }
  }
  // A VLAN sub-interface planned above does not exist yet: let planBridge see it as a fresh, free link.
  const host = { ...input.host, links: new Map(input.host.links) };
  for (const c of out) if (c.kind === 'vlan-add') host.links.set(c.name, { name: c.name, ifindex: 0, kind: 'vlan', mtu: spec.mtu, master: undefined, up: false, mac: '' });
  const previousPorts = input.previous && input.previous.bridge.managed ? ports(input.name, input.previous) : [];
  out.push(...planBridge(host, bridge, { mtu: spec.mtu, uplinks: ports(input.name, spec), stp: spec.bridge.stp, create: true }, previousPorts));
  if (input.previous?.vlan !== undefined) {
    for (const u of input.previous.bridge.uplinks) {
      const old = vlanLinkName(input.name, u, input.previous.vlan);
      if (!ports(input.name, spec).includes(old) && input.host.links.has(old)) out.push({ kind: 'link', op: { op: 'delete', name: old }, undo: [] });
    }
  }
  return out;
}

function remove(input: Omit<PlanInput, 'desired'>): HostChange[] {
  const spec = input.previous!;
  if (!spec.bridge.managed) return [];
  const bridge = networkBridge(input.name, spec);
  const out: HostChange[] = [];
  const l = input.host.links.get(bridge);
  if (l !== undefined) {
    const portsNow = [...input.host.links.values()].filter((p) => p.master === bridge).map((p) => p.name);
    out.push({
      kind: 'link',
      op: { op: 'delete', name: bridge },
      undo: [{ op: 'create-bridge', name: bridge, mtu: l.mtu }, ...portsNow.map((p) => ({ op: 'set' as const, name: p, master: bridge })), { op: 'set', name: bridge, up: l.up }],
    });
  }
  if (spec.vlan !== undefined) for (const u of spec.bridge.uplinks) {
    const v = vlanLinkName(input.name, u, spec.vlan);
    if (input.host.links.has(v)) out.push({ kind: 'link', op: { op: 'delete', name: v }, undo: [] });
  }
  return out;
}

/**
 * The uplinks a managed bridge would take as ports while they carry IPv4 addresses (the host's own, the
 * classic vmbr0 move): enslaving them as they are would strand those addresses on a port and can cut the
 * node off, so they go through a host change with rollback instead.
 */
export function addressedUplinks(name: string, spec: NormalSpec, host: HostState): string[] {
  if (spec.type !== 'bridge' || !spec.bridge.managed) return [];
  const bridge = networkBridge(name, spec);
  // With a VLAN the port is the tagged sub-interface; the uplink keeps its addresses.
  return ports(name, spec).filter((u) => (host.addresses.get(u) ?? []).length > 0 && host.links.get(u)?.master !== bridge);
}

/**
 * Pure: the vmbr0 move for this network (checkpoint.ts's bridgeOverUplinkPlan) with the network's MTU on the
 * bridge and the uplink and its STP setting, all inside the one change the probes judge.
 */
export function bridgeMovePlan(cp: Checkpoint, uplink: string, bridge: string, spec: NormalSpec): HostOp[] {
  const ops = bridgeOverUplinkPlan(cp, uplink, bridge).map((o): HostOp => (o.op === 'create-bridge' ? { ...o, mtu: spec.mtu } : o));
  const at = ops.findIndex((o) => o.op === 'set' && o.name === uplink);
  ops.splice(at, 0, { op: 'set', name: uplink, mtu: spec.mtu });
  ops.splice(1, 0, { op: 'bridge-stp', name: bridge, on: spec.bridge.stp });
  return ops;
}

export const bridgeDriver: NetworkDriver = {
  type: 'bridge',
  validate(name, spec) {
    if (spec.bridge.name !== undefined && !IFNAME.test(spec.bridge.name)) throw invalid(`bridge.name ${spec.bridge.name} is not an interface name`);
    if (!spec.bridge.managed) {
      if (spec.bridge.name === undefined) throw invalid(`network ${name}: an unmanaged bridge network needs bridge.name (the bridge to adopt)`);
      if (spec.bridge.uplinks.length > 0) throw invalid(`network ${name}: an adopted bridge keeps its own ports; uplinks are only for managed bridges`);
      if (spec.vlan !== undefined) throw invalid(`network ${name}: vlan needs a managed bridge (its uplinks carry the tag)`);
    }
    for (const u of spec.bridge.uplinks) if (!IFNAME.test(u)) throw invalid(`uplink ${u} is not an interface name`);
    if (new Set(spec.bridge.uplinks).size !== spec.bridge.uplinks.length) throw invalid('uplinks are listed twice');
  },
  query(name, spec) {
    return { tables: [], sysctls: [], bridges: [networkBridge(name, spec)] };
  },
  plan,
  apply: applyChanges,
  remove,
  status(name, spec, host) {
    return bridgeStatus(networkBridge(name, spec), spec, host, spec.bridge.managed ? ports(name, spec) : []);
  },
  nicAttachment(name, spec): NicAttachment {
    return {
      mtu: spec.mtu,
      bridge: networkBridge(name, spec),
      isolated: false,
      ipam: spec.ipam === undefined ? undefined : { subnet: spec.ipam.subnet, gateway: spec.ipam.gateway, prefixLength: describePool({ cidr: spec.ipam.subnet }).prefix, dns: spec.ipam.dns, search: spec.ipam.search, ...(spec.ipam.domain === undefined ? {} : { domain: spec.ipam.domain }) },
    };
  },
};

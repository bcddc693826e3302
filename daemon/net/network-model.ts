// The declarative Network: its spec (what the API stores), the host state a driver reads, and the pure
// plan between them: a list of host changes, each with its undo, rendered as a readable diff (dryRun).
import { AppError } from '../lib/errors.js';
import type { LinkInfo, LinkOp } from '../host/links.js';
import { renderLinkOp } from '../host/links.js';
import type { DhcpServerConfig } from './dhcp/server.js';
import { describePool, formatIpv4, type Pool } from './ipam.js';

export type NetworkType = 'bridge' | 'nat' | 'routed';
export const NETWORK_TYPES: readonly NetworkType[] = ['bridge', 'nat', 'routed'];

export interface IpamSpec {
  subnet: string;
  gateway?: string;
  dns?: string[];
  search?: string[];
  domain?: string;
  reserved?: Array<{ from: string; to: string }>;
}

export interface PortForward {
  protocol: 'tcp' | 'udp';
  hostPort: number;
  vm: string;
  nic: string;
  vmPort: number;
}

/** An external address mapped 1:1 to a routed VM NIC (DNAT in, SNAT out; the kube-ovn EIP idea). */
export interface FloatingIp {
  ip: string;
  vm: string;
  nic: string;
}

export interface NetworkSpec {
  type: NetworkType;
  mtu?: number;
  bridge?: { name?: string; managed?: boolean; uplinks?: string[]; stp?: boolean };
  ipam?: IpamSpec;
  nat?: { subnet?: string; gateway?: string; uplink?: string; isolation?: boolean; forwards?: PortForward[] };
  routed?: { pool: string; uplink?: string; floatingIps?: FloatingIp[] };
  vlan?: number;
}

/** A spec with every default filled in: what drivers plan from and what GET returns as `spec`. */
export interface NormalSpec {
  type: NetworkType;
  mtu: number;
  bridge: { name: string | undefined; managed: boolean; uplinks: string[]; stp: boolean };
  ipam: (Required<Omit<IpamSpec, 'domain'>> & { domain?: string }) | undefined;
  nat: { subnet: string; gateway: string; uplink: string | undefined; isolation: boolean; forwards: PortForward[] } | undefined;
  routed: { pool: string; uplink: string | undefined; floatingIps: FloatingIp[] } | undefined;
  vlan: number | undefined;
}

export const NAT_DEFAULT_SUBNET = '10.0.2.0/24';
export const DEFAULT_MTU = 1500;

export function invalid(msg: string): AppError {
  return new AppError('NETWORK_INVALID', msg);
}

function pool(cidr: string, gateway: string | undefined, what: string, reserved?: IpamSpec['reserved']): Pool {
  try {
    return describePool({ cidr, ...(gateway === undefined ? {} : { gateway }), ...(reserved === undefined ? {} : { reserved }) });
  } catch (e) {
    throw invalid(`${what}: ${(e as Error).message}`);
  }
}

/** Fills defaults and checks what holds for every type; drivers then check their own rules. */
export function normaliseSpec(s: NetworkSpec): NormalSpec {
  if (!NETWORK_TYPES.includes(s.type)) throw invalid(`unknown network type ${String(s.type)}`);
  const mtu = s.mtu ?? DEFAULT_MTU;
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 9000) throw invalid(`mtu ${mtu} is outside 576..9000`);
  const b = s.bridge ?? {};
  const out: NormalSpec = {
    type: s.type,
    mtu,
    bridge: { name: b.name, managed: b.managed ?? true, uplinks: [...(b.uplinks ?? [])], stp: b.stp ?? false },
    ipam: undefined,
    nat: undefined,
    routed: undefined,
    vlan: s.vlan,
  };
  if (s.ipam) {
    const p = pool(s.ipam.subnet, s.ipam.gateway, 'ipam');
    pool(s.ipam.subnet, s.ipam.gateway, 'ipam', s.ipam.reserved);
    out.ipam = {
      subnet: s.ipam.subnet,
      gateway: s.ipam.gateway ?? formatIpv4(p.first),
      dns: [...(s.ipam.dns ?? [])],
      search: [...(s.ipam.search ?? [])],
      reserved: [...(s.ipam.reserved ?? [])],
      ...(s.ipam.domain === undefined ? {} : { domain: s.ipam.domain }),
    };
  }
  if (s.type === 'nat') {
    const n = s.nat ?? {};
    const subnet = n.subnet ?? NAT_DEFAULT_SUBNET;
    const p = pool(subnet, n.gateway, 'nat');
    if (p.prefix > 30) throw invalid(`nat subnet ${subnet} needs room for a gateway and VMs (prefix <= 30)`);
    const seen = new Set<string>();
    for (const f of n.forwards ?? []) {
      const k = `${f.protocol}/${f.hostPort}`;
      if (seen.has(k)) throw invalid(`two forwards use host port ${k}`);
      seen.add(k);
    }
    out.nat = { subnet, gateway: n.gateway ?? formatIpv4(p.first), uplink: n.uplink, isolation: n.isolation ?? false, forwards: [...(n.forwards ?? [])] };
    // The NAT network hands out its own subnet: IPAM is the nat subnet unless given explicitly.
    if (out.ipam === undefined) out.ipam = { subnet, gateway: out.nat.gateway, dns: [], search: [], reserved: [] };
    else if (out.ipam.subnet !== subnet) throw invalid(`ipam.subnet ${out.ipam.subnet} must equal nat.subnet ${subnet}`);
  } else if (s.nat !== undefined) throw invalid(`'nat' is only for type nat`);
  if (s.type === 'routed') {
    if (!s.routed) throw invalid(`a routed network needs routed.pool`);
    const p = pool(s.routed.pool, undefined, 'routed.pool');
    const fips = normaliseFloatingIps(s.routed.floatingIps ?? [], p, s.routed.uplink);
    out.routed = { pool: s.routed.pool, uplink: s.routed.uplink, floatingIps: fips };
  } else if (s.routed !== undefined) throw invalid(`'routed' is only for type routed`);
  if (s.vlan !== undefined && (!Number.isInteger(s.vlan) || s.vlan < 1 || s.vlan > 4094)) throw invalid(`vlan ${s.vlan} is outside 1..4094`);
  return out;
}

const ipKey = (ip: string) => ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIpv4(s: string): boolean {
  return IPV4.test(s);
}

/**
 * Floating IPs are external addresses (the uplink's LAN), so never inside the pool; one per address and
 * one per NIC (a second SNAT rule for the same source would never match). Sorted by address, so the
 * order of PUTs does not move the generation.
 */
function normaliseFloatingIps(list: FloatingIp[], p: Pool, uplink: string | undefined): FloatingIp[] {
  if (list.length > 0 && uplink === undefined) throw invalid('floating IPs need routed.uplink: the link their addresses are announced on');
  const ips = new Set<string>();
  const nics = new Set<string>();
  if (uplink !== undefined && !/^[A-Za-z0-9_.:@+-]{1,15}$/.test(uplink)) throw invalid(`routed.uplink ${uplink} is not an interface name`);
  for (const f of list) {
    if (!IPV4.test(f.ip)) throw invalid(`floating IP ${JSON.stringify(f.ip)} is not an IPv4 address`);
    const n = ipKey(f.ip);
    if (n >= p.network && n <= p.broadcast) throw invalid(`floating IP ${f.ip} is inside the pool ${p.cidr}: it must be an external address`);
    if (ips.has(f.ip)) throw invalid(`floating IP ${f.ip} is listed twice`);
    const owner = `${f.vm}/${f.nic}`;
    if (nics.has(owner)) throw invalid(`${owner} has two floating IPs (one per NIC)`);
    if (!f.vm || !f.nic) throw invalid(`floating IP ${f.ip} needs vm and nic`);
    ips.add(f.ip);
    nics.add(owner);
  }
  return list.map((f) => ({ ip: f.ip, vm: f.vm, nic: f.nic })).sort((a, b) => ipKey(a.ip) - ipKey(b.ip));
}

export function sameSpec(a: NormalSpec | undefined, b: NormalSpec | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What a driver reads from the host before planning: the facts the plan and the status checks need. */
export interface HostState {
  links: Map<string, LinkInfo>;
  /** ifname -> CIDR addresses (IPv4), e.g. "10.0.2.1/24". */
  addresses: Map<string, string[]>;
  /** nft tables present, as "family name". */
  nftTables: Set<string>;
  /** The nft script a table of ours currently holds (as we last rendered it), when known. */
  nftContent: Map<string, string>;
  sysctl: Map<string, string>;
  /** Whether STP is on, per bridge we looked at. */
  stp: Map<string, boolean>;
  /** Bridge port isolation (IFLA_BRPORT_ISOLATED), per port of the bridges we looked at. */
  isolated: Map<string, boolean>;
  /** IPv4 routes of the main table: destination CIDR (host routes as a.b.c.d/32) -> device. */
  routes: Map<string, string>;
}

export function emptyHostState(): HostState {
  return { links: new Map(), addresses: new Map(), nftTables: new Set(), nftContent: new Map(), sysctl: new Map(), stp: new Map(), isolated: new Map(), routes: new Map() };
}

/** One host change, described before it is applied; each knows its undo (computed from the state it saw). */
export type HostChange =
  | { kind: 'link'; op: LinkOp; undo: LinkOp[] }
  | { kind: 'stp'; bridge: string; on: boolean }
  /** Isolated bridge ports forward only to non-isolated ones (the bridge itself): VM-to-VM is dropped. */
  | { kind: 'port-isolated'; dev: string; on: boolean }
  | { kind: 'vlan-add'; name: string; parent: string; id: number; mtu: number }
  | { kind: 'route-add'; dest: string; dev: string }
  | { kind: 'route-del'; dest: string; dev: string }
  | { kind: 'addr-add'; dev: string; cidr: string }
  | { kind: 'addr-del'; dev: string; cidr: string }
  /** Replaces the whole table (one atomic nft batch); `script` undefined deletes it. `previous` restores. */
  | { kind: 'nft-table'; family: 'inet' | 'bridge'; table: string; script: string | undefined; previous: string | undefined; summary: string[] }
  | { kind: 'sysctl'; key: string; value: string; previous: string | undefined };

/** One line per change: '+' adds, '-' removes, '~' modifies. Readable without knowing the tools. */
export function describeChange(c: HostChange): string[] {
  switch (c.kind) {
    case 'link': {
      const sign = c.op.op === 'delete' ? '-' : c.op.op.startsWith('create') ? '+' : '~';
      return [`${sign} ip ${renderLinkOp(c.op)}`];
    }
    case 'stp':
      return [`~ bridge ${c.bridge}: stp ${c.on ? 'on' : 'off'}`];
    case 'port-isolated':
      return [`~ ip link set dev ${c.dev} type bridge_slave isolated ${c.on ? 'on' : 'off'}`];
    case 'vlan-add':
      return [`+ ip link add link ${c.parent} name ${c.name} mtu ${c.mtu} type vlan id ${c.id}`];
    case 'route-add':
      return [`+ ip route add ${c.dest} dev ${c.dev}`];
    case 'route-del':
      return [`- ip route del ${c.dest} dev ${c.dev}`];
    case 'addr-add':
      return [`+ ip addr add ${c.cidr} dev ${c.dev}`];
    case 'addr-del':
      return [`- ip addr del ${c.cidr} dev ${c.dev}`];
    case 'nft-table':
      if (c.script === undefined) return [`- nft table ${c.family} ${c.table}`];
      return [`${c.previous === undefined ? '+' : '~'} nft table ${c.family} ${c.table}`, ...c.summary.map((s) => `    ${s}`)];
    case 'sysctl':
      return [`~ sysctl ${c.key}=${c.value}${c.previous === undefined ? '' : ` (was ${c.previous})`}`];
  }
}

export function renderDiff(changes: readonly HostChange[]): string {
  if (changes.length === 0) return '(no changes)\n';
  return changes.flatMap(describeChange).join('\n') + '\n';
}

/** One status check: what exists on the host for this network. */
export interface StatusCheck {
  name: string;
  ok: boolean;
  message: string;
}

/** What a VM NIC on this network is plumbed with (nic.ts NicSpec fields the network decides). */
export interface NicAttachment {
  mtu: number;
  /** Bridged and NAT networks: the tap becomes a port of this bridge. */
  bridge: string | undefined;
  /** The port must be isolated (NAT isolation); refresh(network) after plumbing also sets it. */
  isolated: boolean;
  /**
   * With IPAM: the network the NIC's fixed IP comes from and what its DHCP server hands out with it:
   * the prefix length, router, DNS, and classless routes (RFC 3442; routed networks).
   */
  ipam:
    | {
        subnet: string;
        gateway: string;
        prefixLength: number;
        dns: string[];
        search: string[];
        domain?: string;
        routes?: Array<{ destination: string; gateway: string }>;
      }
    | undefined;
}

/** Links changes for a bridge that should exist with this MTU and these ports; shared by bridge and nat. */
export function planBridge(
  host: HostState,
  bridge: string,
  want: { mtu: number; uplinks: string[]; stp: boolean; create: boolean },
  previousUplinks: readonly string[],
): HostChange[] {
  const out: HostChange[] = [];
  const have = host.links.get(bridge);
  if (have === undefined) {
    if (!want.create) throw new AppError('NETWORK_INVALID', `bridge ${bridge} does not exist (an unmanaged network adopts an existing bridge)`);
    out.push({ kind: 'link', op: { op: 'create-bridge', name: bridge, mtu: want.mtu }, undo: [{ op: 'delete', name: bridge }] });
  } else {
    if (have.kind !== 'bridge') throw new AppError('NETWORK_CONFLICT', `${bridge} exists and is a ${have.kind ?? 'physical'} link, not a bridge`);
    if (want.create && have.mtu !== want.mtu) out.push({ kind: 'link', op: { op: 'set', name: bridge, mtu: want.mtu }, undo: [{ op: 'set', name: bridge, mtu: have.mtu }] });
  }
  if (want.create && (have === undefined ? want.stp : host.stp.get(bridge) !== want.stp)) out.push({ kind: 'stp', bridge, on: want.stp });
  for (const u of want.uplinks) {
    const l = host.links.get(u);
    if (l === undefined) throw new AppError('NETWORK_INVALID', `uplink ${u} does not exist`);
    if (l.master === bridge) continue;
    if (l.master !== undefined) throw new AppError('NETWORK_CONFLICT', `uplink ${u} is already a port of ${l.master}`);
    out.push({
      kind: 'link',
      op: { op: 'set', name: u, master: bridge, ...(want.create ? { mtu: want.mtu } : {}), up: true },
      undo: [{ op: 'set', name: u, master: null, mtu: l.mtu, up: l.up }],
    });
  }
  for (const u of previousUplinks) {
    const l = host.links.get(u);
    if (!want.uplinks.includes(u) && l?.master === bridge) out.push({ kind: 'link', op: { op: 'set', name: u, master: null }, undo: [{ op: 'set', name: u, master: bridge }] });
  }
  if (have === undefined || !have.up) out.push({ kind: 'link', op: { op: 'set', name: bridge, up: true }, undo: [{ op: 'set', name: bridge, up: false }] });
  return out;
}

/** Address changes so `dev` carries exactly `want` among the addresses this network manages. */
export function planAddresses(host: HostState, dev: string, want: string[], previous: readonly string[]): HostChange[] {
  const have = host.addresses.get(dev) ?? [];
  const out: HostChange[] = [];
  for (const a of previous) if (!want.includes(a) && have.includes(a)) out.push({ kind: 'addr-del', dev, cidr: a });
  for (const a of want) if (!have.includes(a)) out.push({ kind: 'addr-add', dev, cidr: a });
  return out;
}

/** The undo of one applied change, as changes (applied in order). */
export function undoOf(c: HostChange): HostChange[] {
  switch (c.kind) {
    case 'link':
      return c.undo.map((op) => ({ kind: 'link', op, undo: [] }));
    case 'stp':
      return [{ kind: 'stp', bridge: c.bridge, on: !c.on }];
    case 'port-isolated':
      return [{ kind: 'port-isolated', dev: c.dev, on: !c.on }];
    case 'vlan-add':
      return [{ kind: 'link', op: { op: 'delete', name: c.name }, undo: [] }];
    case 'route-add':
      return [{ kind: 'route-del', dest: c.dest, dev: c.dev }];
    case 'route-del':
      return [{ kind: 'route-add', dest: c.dest, dev: c.dev }];
    case 'addr-add':
      return [{ kind: 'addr-del', dev: c.dev, cidr: c.cidr }];
    case 'addr-del':
      return [{ kind: 'addr-add', dev: c.dev, cidr: c.cidr }];
    case 'nft-table':
      return [{ kind: 'nft-table', family: c.family, table: c.table, script: c.previous, previous: c.script, summary: [] }];
    case 'sysctl':
      return c.previous === undefined ? [] : [{ kind: 'sysctl', key: c.key, value: c.previous, previous: c.value }];
  }
}

/**
 * What a NIC's own DHCP server hands out on this network (dhcp-service's per-interface config minus the
 * interface itself); undefined without IPAM, where the LAN's DHCP serves the VM and ours stays silent.
 */
export function dhcpOffer(
  att: NicAttachment,
  nic: { mac: string; ip: string; hostname?: string },
): Omit<DhcpServerConfig, 'onEvent' | 'logger' | 'now'> | undefined {
  const ipam = att.ipam;
  if (ipam === undefined) return undefined;
  return {
    mac: nic.mac,
    ip: nic.ip,
    prefixLength: ipam.prefixLength,
    // Our server speaks as the gateway: the address the guest already routes to.
    serverIp: ipam.gateway,
    router: ipam.gateway,
    mtu: att.mtu,
    ...(ipam.dns.length > 0 ? { dns: ipam.dns } : {}),
    ...(ipam.search.length > 0 ? { search: ipam.search } : {}),
    ...(ipam.domain === undefined ? {} : { domainName: ipam.domain }),
    ...(ipam.routes === undefined ? {} : { routes: ipam.routes }),
    ...(nic.hostname === undefined ? {} : { hostname: nic.hostname }),
  };
}

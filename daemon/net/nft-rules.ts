// Pure: the per-NIC guard ruleset (anti-spoofing, DHCP server and router-advertisement guard) as `nft -f`
// text. Each NIC's rules live in a chain of its own, reached through one verdict map keyed by iifname,
// so adding or removing a NIC is one atomic batch that touches nothing else.
import { formatMac, parseMac } from './macs.js';
import { formatIpv4, parseIpv4 } from './ipam.js';
import { isOurs, NFT_BASE_CHAIN, NFT_PORTS_MAP, NFT_TABLE, nftChainName } from './names.js';

/**
 * Where a NIC's frames are seen: `bridge` for taps enslaved to a bridge (one table, sees ARP too);
 * `inet` for routed or NAT taps, whose ARP is checked in a companion `arp` table.
 */
export type GuardMode = 'bridge' | 'inet';

/** nftables families we own a table in. */
export type NftFamily = 'bridge' | 'inet' | 'arp';

export const OUR_FAMILIES: readonly NftFamily[] = ['bridge', 'inet', 'arp'];

export interface NicGuard {
  /** The host-side interface the VM's frames arrive on (its tap). */
  ifname: string;
  mode: GuardMode;
  /** The NIC's MAC: the only Ethernet (and ARP sender) source allowed from it. */
  mac: string;
  /** With IPAM: the only IPv4 source (and ARP sender IP) allowed, plus 0.0.0.0 for DHCP and ARP probes. */
  ipv4?: string;
  /** Anti-spoofing (MAC, IPv4, ARP, 802.1Q smuggling). Default true; false is the per-NIC opt-out. */
  antiSpoof?: boolean;
  /**
   * Drop DHCP/DHCPv6 server replies and router advertisements sent by the VM and, with IPAM (where the
   * NIC's own DHCP server answers it on the tap), its DHCP requests past the tap. Default true.
   */
  serverGuard?: boolean;
}

/** One table's base chain: where it hooks and at which priority. */
interface BaseChain {
  hook: 'prerouting' | 'input';
  priority: number;
}

// Before conntrack and anything else (raw priority), so spoofed frames never reach other tables' rules.
const BASE: Record<NftFamily, BaseChain> = {
  bridge: { hook: 'prerouting', priority: -300 },
  inet: { hook: 'prerouting', priority: -300 },
  // ARP in the arp family is only seen on input; that is where a routed host answers it.
  arp: { hook: 'input', priority: -300 },
};

/** The tables a guard mode writes to. */
export function familiesOf(mode: GuardMode): NftFamily[] {
  return mode === 'bridge' ? ['bridge'] : ['inet', 'arp'];
}

/** The described chain contents of one NIC: a family and its rule bodies, in order. */
export interface NicChain {
  family: NftFamily;
  chain: string;
  rules: string[];
}

function canonicalMac(mac: string): string {
  const b = parseMac(mac);
  if (b === undefined) throw new Error(`nft-rules: bad MAC ${mac}`);
  return formatMac(b);
}

function canonicalIp(ip: string): string {
  const n = parseIpv4(ip);
  if (n === undefined) throw new Error(`nft-rules: bad IPv4 ${ip}`);
  return formatIpv4(n);
}

/** Describes one NIC's chains (empty when both guards are opted out). Throws on malformed input: a bug. */
export function describeNicGuard(g: NicGuard): NicChain[] {
  const chain = nftChainName(g.ifname);
  const antiSpoof = g.antiSpoof ?? true;
  const serverGuard = g.serverGuard ?? true;
  if (!antiSpoof && !serverGuard) return [];
  const mac = canonicalMac(g.mac);
  const ip = g.ipv4 === undefined ? undefined : canonicalIp(g.ipv4);

  const l2: string[] = [];
  const arp: string[] = [];
  const l3: string[] = [];
  if (serverGuard && ip !== undefined) {
    // With IPAM the NIC's own DHCP server answers it: its packet socket on the tap has already seen the frame
    // (ETH_P_ALL taps run before the bridge and IP hooks). Dropped here, the VM's DHCP requests never reach
    // the LAN (whose DHCP server would offer or NAK too) nor the host stack (which would answer a unicast
    // renewal to the gateway with ICMP port unreachable).
    l3.push('udp dport 67 counter drop');
  }
  if (antiSpoof) {
    l2.push(`ether saddr != ${mac} counter drop`);
    // A VLAN tag hides the inner EtherType from the IP and ARP checks below.
    l2.push('ether type { 8021q, 8021ad } counter drop');
    arp.push(`arp saddr ether != ${mac} counter drop`);
    if (ip !== undefined) {
      // 0.0.0.0 is an ARP probe's sender (RFC 5227) and a DHCP client's source before it has a lease.
      arp.push(`arp saddr ip != { 0.0.0.0, ${ip} } counter drop`);
      l3.push('ip saddr 0.0.0.0 udp sport 68 udp dport 67 return');
      l3.push(`ip saddr != ${ip} counter drop`);
    }
  }
  if (serverGuard) {
    l3.push('udp sport 67 counter drop');
    l3.push('udp sport 547 counter drop');
    l3.push('icmpv6 type nd-router-advert counter drop');
  }
  if (g.mode === 'bridge') return [{ family: 'bridge', chain, rules: [...l2, ...arp, ...l3] }];
  // `ether saddr` in inet is read from the frame's link-layer header at prerouting.
  const out: NicChain[] = [{ family: 'inet', chain, rules: [...l2, ...l3] }];
  if (arp.length > 0) out.push({ family: 'arp', chain, rules: arp });
  return out;
}

/** Creates our table, its map and base chain when missing; `add` is a no-op for what exists. */
function ensureTable(family: NftFamily): string[] {
  const b = BASE[family];
  return [
    `add table ${family} ${NFT_TABLE}`,
    `add map ${family} ${NFT_TABLE} ${NFT_PORTS_MAP} { type ifname : verdict; }`,
    `add chain ${family} ${NFT_TABLE} ${NFT_BASE_CHAIN} { type filter hook ${b.hook} priority ${b.priority}; policy accept; }`,
    // Flushed and re-added so running this twice leaves exactly one dispatch rule.
    `flush chain ${family} ${NFT_TABLE} ${NFT_BASE_CHAIN}`,
    `add rule ${family} ${NFT_TABLE} ${NFT_BASE_CHAIN} iifname vmap @${NFT_PORTS_MAP}`,
  ];
}

/**
 * Deletes one interface's chain and map element in `family`, whether or not they exist: table, map,
 * chain and element are added first in the same transaction (nft 1.0.6 has no `destroy`), so the batch
 * cannot fail on absence. No base chain is created: a family we never used gets no hook.
 */
function removeChain(family: NftFamily, chain: string): string[] {
  const t = `${family} ${NFT_TABLE}`;
  return [
    `add table ${t}`,
    `add map ${t} ${NFT_PORTS_MAP} { type ifname : verdict; }`,
    `add chain ${t} ${chain}`,
    `add element ${t} ${NFT_PORTS_MAP} { "${chain}" : jump ${chain} }`,
    `delete element ${t} ${NFT_PORTS_MAP} { "${chain}" }`,
    `flush chain ${t} ${chain}`,
    `delete chain ${t} ${chain}`,
  ];
}

/**
 * One `nft -f` batch that installs (or replaces) the guards of these NICs. Replacing is flush + re-add
 * of the NIC's own chain; a NIC that opted out of everything has its chains removed. `fresh: true` says
 * the interfaces have no chains yet (a new tap): the other families are then left alone, so no table is
 * created where the NIC has nothing.
 */
export function renderGuardAdd(guards: readonly NicGuard[], opts: { fresh?: boolean } = {}): string {
  const lines: string[] = [];
  const ensured = new Set<NftFamily>();
  const ensure = (f: NftFamily) => {
    if (!ensured.has(f)) lines.push(...ensureTable(f));
    ensured.add(f);
  };
  for (const g of guards) {
    const chains = describeNicGuard(g);
    const present = new Set(chains.map((c) => c.family));
    for (const c of chains) {
      ensure(c.family);
      const t = `${c.family} ${NFT_TABLE}`;
      lines.push(`add chain ${t} ${c.chain}`, `flush chain ${t} ${c.chain}`);
      for (const r of c.rules) lines.push(`add rule ${t} ${c.chain} ${r}`);
      lines.push(`add element ${t} ${NFT_PORTS_MAP} { "${c.chain}" : jump ${c.chain} }`);
    }
    // A mode change or an opt-out must not leave the previous chains behind.
    if (opts.fresh !== true) for (const f of OUR_FAMILIES) if (!present.has(f)) lines.push(...removeChain(f, nftChainName(g.ifname)));
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}

/**
 * One `nft -f` batch that removes these interfaces' chains from our tables in `families` (default: all of
 * them); idempotent. A family left out is not touched, so a bridge NIC's removal creates no inet/arp table.
 */
export function renderGuardRemove(ifnames: readonly string[], families: readonly NftFamily[] = OUR_FAMILIES): string {
  if (ifnames.length === 0 || families.length === 0) return '';
  return families.flatMap((f) => ifnames.flatMap((n) => removeChain(f, nftChainName(n)))).join('\n') + '\n';
}

/** Deletes our table in these families, whether or not it exists (same trick as removeChain). */
export function renderTableDelete(families: readonly NftFamily[]): string {
  if (families.length === 0) return '';
  return families.flatMap((f) => [`add table ${f} ${NFT_TABLE}`, `delete table ${f} ${NFT_TABLE}`]).join('\n') + '\n';
}

/** Deletes all our tables (uninstall, tests); idempotent for the same reason as removeChain. */
export function renderTeardown(): string {
  return renderTableDelete(OUR_FAMILIES);
}

/** The families one NIC's guard writes to: none when it opted out of both guards. */
export function guardFamilies(g: Pick<NicGuard, 'mode' | 'antiSpoof' | 'serverGuard'>): NftFamily[] {
  if (g.antiSpoof === false && g.serverGuard === false) return [];
  return familiesOf(g.mode);
}

/** True when one of our guard tables holds no interface chain and no port: nothing can need it any more. */
export function isEmptyGuardTable(state: GuardTableState): boolean {
  return state.chains.size === 0 && state.ports.size === 0;
}

/** What `nft -j list table` tells us about one of our tables. */
export interface GuardTableState {
  family: NftFamily;
  /** Per-interface chains (names that isOurs), with their rule count. */
  chains: Map<string, number>;
  /** Interface names in the ports map. */
  ports: Set<string>;
}

interface NftJsonItem {
  chain?: { family: string; table: string; name: string };
  rule?: { family: string; table: string; chain: string };
  map?: { family: string; table: string; name: string; elem?: unknown[] };
}

/** Parses `nft -j list table <family> nodevirt` output; chains not named by names.ts are ignored. */
export function parseGuardTable(family: NftFamily, json: string): GuardTableState {
  const state: GuardTableState = { family, chains: new Map(), ports: new Set() };
  const doc = JSON.parse(json) as { nftables?: NftJsonItem[] };
  for (const item of doc.nftables ?? []) {
    if (item.chain && item.chain.table === NFT_TABLE && isOurs(item.chain.name)) {
      state.chains.set(item.chain.name, state.chains.get(item.chain.name) ?? 0);
    } else if (item.rule && item.rule.table === NFT_TABLE && isOurs(item.rule.chain)) {
      state.chains.set(item.rule.chain, (state.chains.get(item.rule.chain) ?? 0) + 1);
    } else if (item.map && item.map.table === NFT_TABLE && item.map.name === NFT_PORTS_MAP) {
      for (const e of item.map.elem ?? []) {
        // Elements are [key, verdict] pairs; the key is the interface name.
        const key = Array.isArray(e) ? e[0] : undefined;
        if (typeof key === 'string') state.ports.add(key);
      }
    }
  }
  return state;
}

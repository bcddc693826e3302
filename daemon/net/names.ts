// Every kernel object name nodevirt owns is made here: taps, bridges, veths, nftables tables, chains and
// maps. One prefix and a fixed shape, so a leak sweep can find ours and provably touches nothing else.
import { createHash } from 'node:crypto';

/** Linux interface names hold at most IFNAMSIZ-1 = 15 bytes. */
export const IFNAME_MAX = 15;

/** The prefix of every kernel object name we own. */
export const NAME_PREFIX = 'nv';

/** Base32 characters of the id part: 10 x 5 = 50 bits of a SHA-256, so collisions are rare but possible. */
export const NAME_ID_CHARS = 10;

/**
 * Kind letter after the prefix. A name is `nv` + kind + 10 base32 chars = 13 bytes, leaving room under
 * IFNAMSIZ for a future suffix.
 */
export const NAME_KINDS = {
  tap: 't',
  bridge: 'b',
  /** The host end of a veth pair (routed networks, test stand-ins). */
  veth: 'v',
  /** The far end of a veth pair. */
  vethPeer: 'w',
  /** An 802.1Q sub-interface of an uplink (VLAN-tagged bridge networks on kernels without VLAN filtering). */
  vlan: 'q',
} as const;

export type NameKind = keyof typeof NAME_KINDS;

/** Our nftables table name, in each family we use (bridge for bridged taps, inet and arp for routed/NAT). */
export const NFT_TABLE = 'nodevirt';
/** The verdict map in each of our tables: iifname -> jump to that interface's chain. */
export const NFT_PORTS_MAP = 'ports';
/** The base chain of each of our tables; it only dispatches through NFT_PORTS_MAP. */
export const NFT_BASE_CHAIN = 'guard';

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const OURS = new RegExp(`^${NAME_PREFIX}[${Object.values(NAME_KINDS).join('')}][${BASE32}]{${NAME_ID_CHARS}}$`);

function base32(bytes: Uint8Array, chars: number): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < chars) {
      out += BASE32[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
    if (out.length === chars) break;
  }
  return out;
}

/**
 * The deterministic name of one kernel object. `parts` identify it (e.g. [vmId, nicId]); `attempt` > 0
 * derives another name when the caller found the first one taken by a different owner.
 */
export function kernelName(kind: NameKind, parts: readonly string[], attempt = 0): string {
  if (parts.length === 0) throw new Error('kernelName needs at least one id part');
  if (!Number.isInteger(attempt) || attempt < 0) throw new Error(`kernelName: bad attempt ${attempt}`);
  // NUL separators keep ['ab','c'] and ['a','bc'] apart; the kind is hashed so a tap and a bridge of
  // the same id differ beyond their kind letter.
  const h = createHash('sha256').update([kind, ...parts, String(attempt)].join('\0')).digest();
  return NAME_PREFIX + NAME_KINDS[kind] + base32(h, NAME_ID_CHARS);
}

/** The tap of one VM NIC. */
export function tapName(vmId: string, nicId: string, attempt = 0): string {
  return kernelName('tap', [vmId, nicId], attempt);
}

/** The Linux bridge of one network. */
export function bridgeName(networkId: string, attempt = 0): string {
  return kernelName('bridge', [networkId], attempt);
}

/** Both ends of a veth pair named after one id. */
export function vethNames(id: string, attempt = 0): { host: string; peer: string } {
  return { host: kernelName('veth', [id], attempt), peer: kernelName('vethPeer', [id], attempt) };
}

/** The 802.1Q sub-interface carrying `vlan` of `uplink` for one network. */
export function vlanName(networkId: string, uplink: string, vlan: number): string {
  return kernelName('vlan', [networkId, uplink, String(vlan)]);
}

/**
 * The nftables chain holding one interface's rules: the interface's own name, so a chain without its
 * link (or a link without its chain) is visible to a sweep without a lookup table.
 */
export function nftChainName(ifname: string): string {
  if (!isOurs(ifname)) throw new Error(`nftChainName: ${ifname} is not a nodevirt interface name`);
  return ifname;
}

/** True exactly for names this module makes; a sweep deletes nothing else. */
export function isOurs(name: string): boolean {
  return OURS.test(name);
}

/** The kind of one of our names, undefined for anyone else's. */
export function kindOf(name: string): NameKind | undefined {
  if (!isOurs(name)) return undefined;
  const letter = name[NAME_PREFIX.length];
  return (Object.keys(NAME_KINDS) as NameKind[]).find((k) => NAME_KINDS[k] === letter);
}

/**
 * Picks the first attempt whose name is free or already held by the same owner. `ownerOf` returns who
 * holds a name (undefined when free). Throws after `maxAttempts`, which 50-bit names make a bug, not luck.
 */
export function pickName(
  make: (attempt: number) => string,
  owner: string,
  ownerOf: (name: string) => string | undefined,
  maxAttempts = 8,
): string {
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const name = make(attempt);
    const holder = ownerOf(name);
    if (holder === undefined || holder === owner) return name;
  }
  throw new Error(`no free kernel name for ${owner} after ${maxAttempts} attempts`);
}

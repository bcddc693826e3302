// Per-network IPv4 address management: a pure pool description (subnet, gateway, reserved ranges) and an
// allocator persisted in a store sublevel, where each allocation is one batch so a crash never double-allocates.
import { AppError } from '../lib/errors.js';
import type { KeySpace } from '../store/store.js';

export interface SubnetSpec {
  /** e.g. "10.10.0.0/24"; host bits must be zero. */
  cidr: string;
  /** The network's own address (on the bridge or the routed side); never handed out. */
  gateway?: string;
  /** Inclusive ranges never handed out, e.g. for static hosts outside nodevirt. */
  reserved?: Array<{ from: string; to: string }>;
}

/**
 * The usable shape of a subnet, as 32-bit unsigned integers.
 *
 * - prefix <= 30: the network and broadcast addresses are excluded.
 * - /31 (RFC 3021, point-to-point): both addresses are usable; there is no network or broadcast address.
 * - /32: the single address is usable (a routed host route); the gateway, if any, lies outside it.
 *
 * A gateway inside the subnet is excluded; for prefix <= 30 it must be inside (a bridged or NAT network
 * needs an on-link gateway), for /31 and /32 it may be outside (routed point-to-point).
 */
export interface Pool {
  cidr: string;
  prefix: number;
  network: number;
  broadcast: number;
  /** Lowest and highest allocatable addresses (before gateway and reserved ranges). */
  first: number;
  last: number;
  gateway: number | undefined;
  reserved: Array<[number, number]>;
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Dotted quad -> uint32; undefined for anything else (leading zeros are refused: "010" is ambiguous). */
export function parseIpv4(s: string): number | undefined {
  const m = IPV4_RE.exec(s);
  if (!m) return undefined;
  let n = 0;
  for (const part of m.slice(1)) {
    if (part.length > 1 && part.startsWith('0')) return undefined;
    const v = Number(part);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function invalid(msg: string): AppError {
  return new AppError('SUBNET_INVALID', msg);
}

/** Validates a subnet spec and describes its pool; SUBNET_INVALID on any inconsistency. */
export function describePool(spec: SubnetSpec): Pool {
  const [addr, len, extra] = spec.cidr.split('/');
  const base = addr === undefined ? undefined : parseIpv4(addr);
  const prefix = len !== undefined && /^\d{1,2}$/.test(len) ? Number(len) : NaN;
  if (base === undefined || extra !== undefined || !(prefix >= 0 && prefix <= 32)) throw invalid(`'${spec.cidr}' is not an IPv4 CIDR (a.b.c.d/n)`);
  const size = 2 ** (32 - prefix);
  if (base % size !== 0) throw invalid(`${spec.cidr} has host bits set (did you mean ${formatIpv4(base - (base % size))}/${prefix}?)`);
  const network = base;
  const broadcast = base + size - 1;
  const first = prefix <= 30 ? network + 1 : network;
  const last = prefix <= 30 ? broadcast - 1 : broadcast;
  const inside = (n: number) => n >= network && n <= broadcast;

  let gateway: number | undefined;
  if (spec.gateway !== undefined) {
    gateway = parseIpv4(spec.gateway);
    if (gateway === undefined) throw invalid(`gateway '${spec.gateway}' is not an IPv4 address`);
    if (prefix <= 30 && !(gateway >= first && gateway <= last)) throw invalid(`gateway ${spec.gateway} is not a host address of ${spec.cidr}`);
  }
  const reserved: Array<[number, number]> = [];
  for (const r of spec.reserved ?? []) {
    const from = parseIpv4(r.from);
    const to = parseIpv4(r.to);
    if (from === undefined || to === undefined || from > to) throw invalid(`reserved range ${r.from}-${r.to} is not an ascending IPv4 range`);
    if (!inside(from) || !inside(to)) throw invalid(`reserved range ${r.from}-${r.to} is outside ${spec.cidr}`);
    reserved.push([from, to]);
  }
  reserved.sort((a, b) => a[0] - b[0]);
  return { cidr: spec.cidr, prefix, network, broadcast, first, last, gateway, reserved };
}

/**
 * Why `ip` cannot be given to a NIC in this pool, as an AppError; undefined when it can (allocation
 * state aside). IP_OUT_OF_SUBNET_INVALID, IP_RESERVED_INVALID.
 */
export function checkAddress(pool: Pool, ip: string): AppError | undefined {
  const n = parseIpv4(ip);
  if (n === undefined) return new AppError('IP_OUT_OF_SUBNET_INVALID', `'${ip}' is not an IPv4 address`);
  if (n < pool.network || n > pool.broadcast) return new AppError('IP_OUT_OF_SUBNET_INVALID', `${ip} is outside ${pool.cidr}`);
  if (n < pool.first || n > pool.last) {
    return new AppError('IP_RESERVED_INVALID', `${ip} is the ${n === pool.network ? 'network' : 'broadcast'} address of ${pool.cidr}`);
  }
  if (n === pool.gateway) return new AppError('IP_RESERVED_INVALID', `${ip} is the gateway of ${pool.cidr}`);
  if (pool.reserved.some(([a, b]) => n >= a && n <= b)) return new AppError('IP_RESERVED_INVALID', `${ip} is in a reserved range of ${pool.cidr}`);
  return undefined;
}

/** The lowest allocatable address not in `taken`, or undefined when the pool is full. */
export function lowestFree(pool: Pool, taken: ReadonlySet<number>): number | undefined {
  let n = pool.first;
  let r = 0;
  while (n <= pool.last) {
    // Ranges are sorted: skip past any that cover n in one jump, so a /8 with a big range stays cheap.
    while (r < pool.reserved.length && pool.reserved[r]![1] < n) r++;
    const range = pool.reserved[r];
    if (range !== undefined && n >= range[0]) {
      n = range[1] + 1;
      continue;
    }
    if (n !== pool.gateway && !taken.has(n)) return n;
    n++;
  }
  return undefined;
}

/**
 * One row per allocation, stored twice in one batch: under `ip/<address>` (uniqueness) and under
 * `owner/<owner>` (lookup by NIC). A crash lands before or after the batch, never between.
 */
export interface IpamEntry {
  ip: string;
  owner: string;
}

export interface Ipam {
  readonly pool: Pool;
  /** The owner's address; allocates the lowest free one if it has none. IP_POOL_EXHAUSTED_CONFLICT. */
  allocate(owner: string): Promise<string>;
  /**
   * Gives `ip` to `owner` (moving it off any other address it had, in the same batch).
   * IP_OUT_OF_SUBNET_INVALID, IP_RESERVED_INVALID (400), IP_IN_USE (409).
   */
  reserve(ip: string, owner: string): Promise<string>;
  /** Frees the owner's address, if any. */
  release(owner: string): Promise<void>;
  addressOf(owner: string): Promise<string | undefined>;
  ownerOf(ip: string): Promise<string | undefined>;
  list(): Promise<IpamEntry[]>;
}

const ipKey = (ip: string) => `ip/${ip}`;
const ownerKey = (owner: string) => `owner/${owner}`;

/**
 * An allocator for one network. `entries` is that network's own sublevel (e.g.
 * store.sublevel(`ipam:${networkId}`)); operations are serialised so read-check-write is atomic in
 * this process, and the store is the single owner of the state (no cache to drift after a crash).
 */
export function createIpam(deps: { entries: KeySpace<IpamEntry>; subnet: SubnetSpec }): Ipam {
  const pool = describePool(deps.subnet);
  const { entries } = deps;
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };
  const taken = async (): Promise<Set<number>> => {
    const set = new Set<number>();
    for (const [k, v] of await entries.list()) if (k.startsWith('ip/')) set.add(parseIpv4(v.ip)!);
    return set;
  };
  const assign = async (ip: string, owner: string, previous: string | undefined): Promise<void> => {
    const ops: Parameters<typeof entries.batch>[0] = [];
    if (previous !== undefined) ops.push({ type: 'del', key: ipKey(previous) });
    ops.push({ type: 'put', key: ipKey(ip), value: { ip, owner } }, { type: 'put', key: ownerKey(owner), value: { ip, owner } });
    await entries.batch(ops);
  };

  return {
    pool,
    allocate: (owner) =>
      serial(async () => {
        const have = await entries.get(ownerKey(owner));
        if (have !== undefined) return have.ip;
        const n = lowestFree(pool, await taken());
        if (n === undefined) throw new AppError('IP_POOL_EXHAUSTED_CONFLICT', `no free address left in ${pool.cidr}`);
        const ip = formatIpv4(n);
        await assign(ip, owner, undefined);
        return ip;
      }),
    reserve: (ip, owner) =>
      serial(async () => {
        const bad = checkAddress(pool, ip);
        if (bad) throw bad;
        const holder = await entries.get(ipKey(ip));
        if (holder !== undefined && holder.owner !== owner) throw new AppError('IP_IN_USE', `${ip} is already allocated in ${pool.cidr}`, { extra: { ip } });
        const have = await entries.get(ownerKey(owner));
        if (have?.ip === ip) return ip;
        await assign(ip, owner, have?.ip);
        return ip;
      }),
    release: (owner) =>
      serial(async () => {
        const have = await entries.get(ownerKey(owner));
        if (have === undefined) return;
        await entries.batch([
          { type: 'del', key: ipKey(have.ip) },
          { type: 'del', key: ownerKey(owner) },
        ]);
      }),
    async addressOf(owner) {
      return (await entries.get(ownerKey(owner)))?.ip;
    },
    async ownerOf(ip) {
      return (await entries.get(ipKey(ip)))?.owner;
    },
    async list() {
      return (await entries.list()).filter(([k]) => k.startsWith('ip/')).map(([, v]) => v);
    },
  };
}

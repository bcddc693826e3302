// MAC addresses of VM NICs: validation of user-given ones and a node-unique allocator whose layout lets
// a cluster hand each node its own id so daemon-assigned MACs never collide across nodes.
import { randomInt } from 'node:crypto';
import { AppError } from '../lib/errors.js';
import type { KeySpace } from '../store/store.js';

/**
 * First byte of every MAC we assign: 0x0e = 0000 1110, the locally-administered bit (0x02) set and the
 * multicast bit (0x01) clear, so it can never clash with a vendor OUI or be a group address.
 */
export const MAC_PREFIX_BYTE = 0x0e;

/** Bits 8..23 carry the node id (0..65535): distinct per node in a cluster, 0 on a standalone node. */
export const MAC_NODE_ID_MAX = 0xffff;

/** Bits 24..47 are a per-node random suffix: 16.7 M MACs per node. */
const SUFFIX_SPACE = 1 << 24;

const MAC_RE = /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i;

/** Parses 'aa:bb:cc:dd:ee:ff' (or dashes, any case) into 6 bytes; undefined when it is not a MAC. */
export function parseMac(s: string): number[] | undefined {
  const m = MAC_RE.exec(s);
  return m ? m.slice(1).map((h) => parseInt(h, 16)) : undefined;
}

export function formatMac(bytes: readonly number[]): string {
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * Validates a user-given MAC and returns it in canonical form (lower case, colons). A NIC needs a
 * unicast source address: not all-zero, not multicast (which includes broadcast).
 */
export function validateMac(s: string): string {
  const bytes = parseMac(s);
  if (bytes === undefined) throw new AppError('MAC_INVALID', `'${s}' is not a MAC address (aa:bb:cc:dd:ee:ff)`);
  if (bytes.every((b) => b === 0)) throw new AppError('MAC_INVALID', `${s} is the all-zero MAC`);
  if ((bytes[0]! & 0x01) !== 0) throw new AppError('MAC_INVALID', `${s} is a multicast or broadcast MAC, a NIC needs a unicast one`);
  return formatMac(bytes);
}

/** The MAC we assign for `nodeId` and a 24-bit suffix. */
export function nodeMac(nodeId: number, suffix: number): string {
  checkNodeId(nodeId);
  if (!Number.isInteger(suffix) || suffix < 0 || suffix >= SUFFIX_SPACE) throw new Error(`MAC suffix out of range: ${suffix}`);
  return formatMac([MAC_PREFIX_BYTE, nodeId >> 8, nodeId & 0xff, suffix >> 16, (suffix >> 8) & 0xff, suffix & 0xff]);
}

/** The node id of a MAC we assigned, undefined for any other MAC. */
export function macNodeId(mac: string): number | undefined {
  const b = parseMac(mac);
  return b !== undefined && b[0] === MAC_PREFIX_BYTE ? (b[1]! << 8) | b[2]! : undefined;
}

function checkNodeId(nodeId: number): void {
  if (!Number.isInteger(nodeId) || nodeId < 0 || nodeId > MAC_NODE_ID_MAX) throw new Error(`MAC node id must be 0..${MAC_NODE_ID_MAX}, got ${nodeId}`);
}

/** Who holds a MAC: the NIC's stable id (e.g. "vmId/nicId"). */
export interface MacRecord {
  owner: string;
}

export interface MacAllocatorDeps {
  /** Keyed by canonical MAC; the one record of which MACs are used on this node. */
  macs: KeySpace<MacRecord>;
  /** This node's id in the cluster (0 standalone). */
  nodeId: number;
  /** Random suffix source, injectable for tests. Default crypto randomInt. */
  random?: (max: number) => number;
}

export interface MacAllocator {
  /** A fresh daemon-assigned MAC for `owner`, recorded before it is returned. */
  allocate(owner: string): Promise<string>;
  /**
   * Records a user-given MAC for `owner` (validated, canonicalised). MAC_INVALID when unusable, MAC_IN_USE
   * when another owner holds it; idempotent for the same owner.
   */
  reserve(mac: string, owner: string): Promise<string>;
  /** Frees a MAC; with `owner`, only if that owner holds it (a stale release cannot free a reused MAC). */
  release(mac: string, owner?: string): Promise<void>;
  ownerOf(mac: string): Promise<string | undefined>;
}

/**
 * A MAC stays with its NIC for the NIC's life: callers allocate once at NIC creation, store it in the
 * NIC spec, and never allocate again on update. Operations are serialised so check-then-record is atomic.
 */
export function createMacAllocator(deps: MacAllocatorDeps): MacAllocator {
  checkNodeId(deps.nodeId);
  const random = deps.random ?? ((max: number) => randomInt(max));
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };

  return {
    allocate: (owner) =>
      serial(async () => {
        // A random suffix rather than a counter: a freed MAC is unlikely to come back soon, so stale
        // ARP/FDB entries and DHCP leases elsewhere do not point at a new VM.
        for (let tries = 0; tries < 64; tries++) {
          const mac = nodeMac(deps.nodeId, random(SUFFIX_SPACE));
          if ((await deps.macs.get(mac)) === undefined) {
            await deps.macs.put(mac, { owner });
            return mac;
          }
        }
        throw new Error('MAC allocator: 64 random picks were all taken (the node space is nearly full)');
      }),
    reserve: (mac, owner) =>
      serial(async () => {
        const canonical = validateMac(mac);
        const held = await deps.macs.get(canonical);
        if (held !== undefined && held.owner !== owner) {
          throw new AppError('MAC_IN_USE', `MAC ${canonical} is already used on this node`, { extra: { mac: canonical } });
        }
        if (held === undefined) await deps.macs.put(canonical, { owner });
        return canonical;
      }),
    release: (mac, owner) =>
      serial(async () => {
        const bytes = parseMac(mac);
        if (bytes === undefined) return;
        const canonical = formatMac(bytes);
        const held = await deps.macs.get(canonical);
        if (held !== undefined && (owner === undefined || held.owner === owner)) await deps.macs.del(canonical);
      }),
    async ownerOf(mac) {
      const bytes = parseMac(mac);
      return bytes === undefined ? undefined : (await deps.macs.get(formatMac(bytes)))?.owner;
    },
  };
}

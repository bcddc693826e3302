// Networks against the host: the adapters a driver uses, reading the HostState a plan starts from, and
// applying a plan with a revert stack (each change's undo registered before the next one runs).
import { AppError, errorMessage } from '../lib/errors.js';
import { createReverter } from '../lib/revert.js';
import type { Links } from '../host/links.js';
import type { NetHost } from '../host/net-host.js';
import type { Nftables } from '../host/nftables.js';
import { emptyHostState, undoOf, type HostChange, type HostState } from './network-model.js';

export interface NetAdapters {
  links: Links;
  nft: Nftables;
  host: NetHost;
  /**
   * The comment put on every nft table a network creates: whose table it is, so a sweep removes only its
   * own daemon's leftovers (a second daemon or a test in the same namespace keeps its tables).
   */
  tableTag?: string;
}

/** What a plan needs to look at: nft tables, sysctls and bridges (for STP). */
export interface HostQuery {
  tables: Array<{ family: string; table: string }>;
  sysctls: string[];
  bridges: string[];
  /** Read the routing table (routed networks). */
  routes?: boolean;
}

export async function readHostState(a: NetAdapters, q: HostQuery, known: Record<string, string> = {}): Promise<HostState> {
  const s = emptyHostState();
  for (const l of await a.links.list()) s.links.set(l.name, l);
  s.addresses = await a.host.addresses();
  if (q.routes) s.routes = await a.host.routes();
  for (const t of q.tables) {
    const k = `${t.family} ${t.table}`;
    if ((await a.nft.listTable(t.family, t.table)) !== undefined) {
      s.nftTables.add(k);
      // The kernel's listing is not our input text; what we last applied (from the record) stands for it.
      const content = known[k];
      if (content !== undefined) s.nftContent.set(k, content);
    }
  }
  for (const key of q.sysctls) {
    const v = await a.host.getSysctl(key);
    if (v !== undefined) s.sysctl.set(key, v);
  }
  for (const b of q.bridges) {
    const on = await a.host.getStp(b);
    if (on !== undefined) s.stp.set(b, on);
    for (const port of [...s.links.values()].filter((l) => l.master === b)) {
      const iso = await a.host.getPortIsolated(port.name);
      if (iso !== undefined) s.isolated.set(port.name, iso);
    }
  }
  return s;
}

/** The nft batch for one table change: replace (add, delete, re-add: atomic and idempotent) or delete. */
export function nftTableBatch(family: string, table: string, script: string | undefined, tag?: string): string {
  const head = `add table ${family} ${table}\ndelete table ${family} ${table}\n`;
  if (script === undefined) return head;
  if (tag !== undefined && !/^[a-z0-9:-]{1,64}$/.test(tag)) throw new Error(`nft table tag ${JSON.stringify(tag)} is malformed`);
  return head + (tag === undefined ? '' : `add table ${family} ${table} { comment "${tag}"; }\n`) + script;
}

async function applyOne(a: NetAdapters, c: HostChange): Promise<void> {
  switch (c.kind) {
    case 'link':
      return a.links.apply([c.op]);
    case 'stp':
      return a.host.setStp(c.bridge, c.on);
    case 'port-isolated':
      return a.host.setPortIsolated(c.dev, c.on);
    case 'vlan-add':
      return a.host.addVlan(c.parent, c.name, c.id, c.mtu);
    case 'route-add':
      return a.host.addRoute(c.dest, c.dev);
    case 'route-del':
      return a.host.delRoute(c.dest, c.dev);
    case 'addr-add':
      return a.host.addAddress(c.dev, c.cidr);
    case 'addr-del':
      return a.host.delAddress(c.dev, c.cidr);
    case 'nft-table':
      return a.nft.apply(nftTableBatch(c.family, c.table, c.script, a.tableTag));
    case 'sysctl':
      return a.host.setSysctl(c.key, c.value);
  }
}

/**
 * Applies changes in order; on the first failure every applied change is undone (newest first) and the
 * original error is thrown with the undo failures attached, so nothing stays half-applied.
 */
export async function applyChanges(a: NetAdapters, changes: readonly HostChange[]): Promise<void> {
  const revert = createReverter();
  try {
    for (const c of changes) {
      await applyOne(a, c);
      revert.add(async () => {
        for (const u of undoOf(c)) await applyOne(a, u);
      });
    }
    revert.success();
  } catch (e) {
    const undoErrors = await revert.fail();
    if (undoErrors.length === 0) throw e;
    throw new AppError('HOST_ERROR', `${errorMessage(e)}; and undoing the applied changes failed: ${undoErrors.map(errorMessage).join('; ')}`, { cause: e });
  }
}

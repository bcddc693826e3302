// The host side of networks: what links.ts and nftables.ts do not cover (IPv4 addresses, sysctls, STP,
// VLAN sub-interfaces) behind one small port with a real (ip/sysctl, optional netns) and a stateful fake,
// plus reading the HostState a plan starts from and applying a plan with a revert stack.
import { AppError, errorMessage } from '../lib/errors.js';
import { createReverter } from '../lib/revert.js';
import type { Links } from '../host/links.js';
import type { Nftables } from '../host/nftables.js';
import { runCommand } from '../host/run-command.js';
import { emptyHostState, undoOf, type HostChange, type HostState } from './network-model.js';

export interface NetHost {
  /** IPv4 addresses per interface, as CIDRs. */
  addresses(): Promise<Map<string, string[]>>;
  addAddress(dev: string, cidr: string): Promise<void>;
  delAddress(dev: string, cidr: string): Promise<void>;
  getSysctl(key: string): Promise<string | undefined>;
  setSysctl(key: string, value: string): Promise<void>;
  /** undefined when the link is not a bridge. */
  getStp(bridge: string): Promise<boolean | undefined>;
  setStp(bridge: string, on: boolean): Promise<void>;
  addVlan(parent: string, name: string, id: number, mtu: number): Promise<void>;
  /** IPv4 main-table routes: destination CIDR -> device (routes without a device are left out). */
  routes(): Promise<Map<string, string>>;
  addRoute(dest: string, dev: string): Promise<void>;
  delRoute(dest: string, dev: string): Promise<void>;
  /** undefined when the link is not a bridge port. */
  getPortIsolated(dev: string): Promise<boolean | undefined>;
  setPortIsolated(dev: string, on: boolean): Promise<void>;
}

const IFNAME = /^[A-Za-z0-9_.:@+-]{1,15}$/;
const CIDR = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/;
const SYSCTL = /^[a-z0-9_.]{1,128}$/;

function check(re: RegExp, v: string, what: string): string {
  if (!re.test(v)) throw new Error(`net host: bad ${what} ${JSON.stringify(v)}`);
  return v;
}

export function createNetHost(opts: { netns?: string } = {}): NetHost {
  const ns = opts.netns;
  const ip = (args: string[], okCodes?: number[]) => runCommand('ip', [...(ns === undefined ? [] : ['-n', ns]), ...args], okCodes ? { okCodes } : {});
  const inNs = ns === undefined ? {} : { netns: ns };
  return {
    async addresses() {
      const { stdout } = await ip(['-4', '-j', 'addr', 'show']);
      const rows = JSON.parse(stdout) as Array<{ ifname: string; addr_info?: Array<{ family: string; local: string; prefixlen: number }> }>;
      const out = new Map<string, string[]>();
      for (const r of rows) out.set(r.ifname, (r.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`));
      return out;
    },
    async addAddress(dev, cidr) {
      await ip(['addr', 'add', check(CIDR, cidr, 'address'), 'dev', check(IFNAME, dev, 'interface')]);
    },
    async delAddress(dev, cidr) {
      await ip(['addr', 'del', check(CIDR, cidr, 'address'), 'dev', check(IFNAME, dev, 'interface')]);
    },
    async getSysctl(key) {
      const r = await runCommand('sysctl', ['-n', check(SYSCTL, key, 'sysctl')], { ...inNs, okCodes: [255, 1] });
      return r.code === 0 ? r.stdout.trim() : undefined;
    },
    async setSysctl(key, value) {
      await runCommand('sysctl', ['-q', '-w', `${check(SYSCTL, key, 'sysctl')}=${check(/^[0-9]{1,10}$/, value, 'value')}`], inNs);
    },
    async getStp(bridge) {
      const r = await ip(['-d', '-j', 'link', 'show', 'dev', check(IFNAME, bridge, 'interface')], [1]);
      if (r.code !== 0) return undefined;
      const row = (JSON.parse(r.stdout) as Array<{ linkinfo?: { info_kind?: string; info_data?: { stp_state?: number } } }>)[0];
      if (row?.linkinfo?.info_kind !== 'bridge') return undefined;
      return (row.linkinfo.info_data?.stp_state ?? 0) !== 0;
    },
    async setStp(bridge, on) {
      await ip(['link', 'set', 'dev', check(IFNAME, bridge, 'interface'), 'type', 'bridge', 'stp_state', on ? '1' : '0']);
    },
    async routes() {
      const { stdout } = await ip(['-4', '-j', 'route', 'show']);
      const out = new Map<string, string>();
      for (const r of JSON.parse(stdout) as Array<{ dst: string; dev?: string }>) {
        if (r.dev === undefined) continue;
        out.set(r.dst === 'default' ? '0.0.0.0/0' : r.dst.includes('/') ? r.dst : `${r.dst}/32`, r.dev);
      }
      return out;
    },
    async addRoute(dest, dev) {
      await ip(['route', 'add', check(CIDR, dest, 'route'), 'dev', check(IFNAME, dev, 'interface')]);
    },
    async delRoute(dest, dev) {
      await ip(['route', 'del', check(CIDR, dest, 'route'), 'dev', check(IFNAME, dev, 'interface')]);
    },
    async getPortIsolated(dev) {
      const r = await ip(['-d', '-j', 'link', 'show', 'dev', check(IFNAME, dev, 'interface')], [1]);
      if (r.code !== 0) return undefined;
      const row = (JSON.parse(r.stdout) as Array<{ linkinfo?: { info_slave_kind?: string; info_slave_data?: { isolated?: boolean } } }>)[0];
      if (row?.linkinfo?.info_slave_kind !== 'bridge') return undefined;
      return row.linkinfo.info_slave_data?.isolated === true;
    },
    async setPortIsolated(dev, on) {
      await ip(['link', 'set', 'dev', check(IFNAME, dev, 'interface'), 'type', 'bridge_slave', 'isolated', on ? 'on' : 'off']);
    },
    async addVlan(parent, name, id, mtu) {
      await ip(['link', 'add', 'link', check(IFNAME, parent, 'interface'), 'name', check(IFNAME, name, 'interface'), 'mtu', String(mtu), 'type', 'vlan', 'id', String(id)]);
    },
  };
}

/** A stateful fake: addresses live only on links the given Links knows (so deleting a bridge drops them). */
export interface FakeNetHost extends NetHost {
  readonly log: string[];
  failOn(pred: ((step: string) => boolean) | undefined): void;
}

export function createFakeNetHost(links: Links, initial: { sysctl?: Record<string, string> } = {}): FakeNetHost {
  // Keyed by name and ifindex: a link deleted and made again starts without addresses, like the kernel's.
  const addrs = new Map<string, string[]>();
  const key = (l: { name: string; ifindex: number }) => `${l.name}#${l.ifindex}`;
  const sysctl = new Map(Object.entries(initial.sysctl ?? { 'net.ipv4.ip_forward': '0' }));
  const stp = new Map<string, boolean>();
  const isolated = new Map<string, boolean>();
  const routes = new Map<string, string>();
  const log: string[] = [];
  let fail: ((s: string) => boolean) | undefined;
  const step = (s: string) => {
    log.push(s);
    if (fail?.(s)) throw new AppError('HOST_ERROR', `injected failure: ${s}`);
  };
  const mustLink = async (dev: string) => {
    const l = await links.get(dev);
    if (!l) throw new AppError('HOST_ERROR', `Cannot find device "${dev}"`);
    return l;
  };
  return {
    log,
    failOn(p) {
      fail = p;
    },
    async addresses() {
      const out = new Map<string, string[]>();
      for (const l of await links.list()) out.set(l.name, [...(addrs.get(key(l)) ?? [])]);
      return out;
    },
    async addAddress(dev, cidr) {
      step(`addr add ${cidr} dev ${dev}`);
      const k = key(await mustLink(dev));
      const have = addrs.get(k) ?? [];
      if (have.includes(cidr)) throw new AppError('HOST_ERROR', 'RTNETLINK answers: File exists');
      addrs.set(k, [...have, cidr]);
    },
    async delAddress(dev, cidr) {
      step(`addr del ${cidr} dev ${dev}`);
      const k = key(await mustLink(dev));
      const have = addrs.get(k) ?? [];
      if (!have.includes(cidr)) throw new AppError('HOST_ERROR', 'RTNETLINK answers: Cannot assign requested address');
      addrs.set(k, have.filter((a) => a !== cidr));
    },
    async getSysctl(key) {
      return sysctl.get(key);
    },
    async setSysctl(key, value) {
      step(`sysctl ${key}=${value}`);
      sysctl.set(key, value);
    },
    async getStp(bridge) {
      const l = await links.get(bridge);
      if (l?.kind !== 'bridge') return undefined;
      return stp.get(bridge) ?? false;
    },
    async setStp(bridge, on) {
      step(`stp ${bridge} ${on ? 1 : 0}`);
      const l = await mustLink(bridge);
      if (l.kind !== 'bridge') throw new AppError('HOST_ERROR', `${bridge} is not a bridge`);
      stp.set(bridge, on);
    },
    async routes() {
      const live = new Set((await links.list()).map((l) => l.name));
      return new Map([...routes].filter(([, dev]) => live.has(dev)));
    },
    async addRoute(dest, dev) {
      step(`route add ${dest} dev ${dev}`);
      await mustLink(dev);
      if (routes.has(dest) && live(await links.list(), routes.get(dest)!)) throw new AppError('HOST_ERROR', 'RTNETLINK answers: File exists');
      routes.set(dest, dev);
    },
    async delRoute(dest, dev) {
      step(`route del ${dest} dev ${dev}`);
      if (routes.get(dest) !== dev) throw new AppError('HOST_ERROR', 'RTNETLINK answers: No such process');
      routes.delete(dest);
    },
    async getPortIsolated(dev) {
      const l = await links.get(dev);
      return l?.master === undefined ? undefined : (isolated.get(dev) ?? false);
    },
    async setPortIsolated(dev, on) {
      step(`isolated ${dev} ${on ? 1 : 0}`);
      const l = await mustLink(dev);
      if (l.master === undefined) throw new AppError('HOST_ERROR', `${dev} is not a bridge port`);
      isolated.set(dev, on);
    },
    async addVlan(parent, name) {
      step(`vlan add ${name} link ${parent}`);
      // The fake models this kernel: no 802.1Q module.
      throw new AppError('HOST_ERROR', 'Error: Unknown device type (no 802.1Q support)');
    },
  };
}

const live = (ls: Array<{ name: string }>, dev: string) => ls.some((l) => l.name === dev);

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

// A checkpoint of the links a host change touches (IPv4 addresses, main-table routes, master, MTU, up/down)
// read with `ip -json`, and the pure `ip -4 -force -batch` plan that restores it from whatever state follows.
import { AppError } from '../lib/errors.js';
import { renderLinkOp, type LinkOp } from '../host/links.js';
import { runCommand } from '../host/run-command.js';

export interface CheckpointAddress {
  /** e.g. "192.0.2.10/24" */
  cidr: string;
  broadcast?: string;
}

export interface CheckpointRoute {
  /** "default" or a CIDR. */
  dst: string;
  dev: string;
  gateway?: string;
  /** Omitted for "boot", the protocol `ip route add` gives by default. */
  protocol?: string;
  /** Omitted for "global" (universe). */
  scope?: string;
  metric?: number;
  prefsrc?: string;
}

export interface CheckpointLink {
  name: string;
  mtu: number;
  up: boolean;
  master?: string;
  addresses: CheckpointAddress[];
}

export interface Checkpoint {
  /** Links that existed, in the order asked. */
  links: CheckpointLink[];
  /** Links asked for that did not exist (e.g. the bridge about to be made): the restore deletes them. */
  absent: string[];
  /** IPv4 main-table routes whose device is one of `links`. */
  routes: CheckpointRoute[];
  /** The gateway of the IPv4 default route before the change (any device), the first probe target. */
  defaultGateway?: string;
}

/** Address and route operations; links keep their own LinkOp from host/links.ts. */
export type AddrRouteOp =
  | { op: 'addr-add'; dev: string; cidr: string; broadcast?: string }
  | { op: 'addr-del'; dev: string; cidr: string }
  | { op: 'addr-flush'; dev: string }
  | { op: 'route-flush'; dev: string }
  | { op: 'route-replace'; route: CheckpointRoute }
  | { op: 'route-del'; route: CheckpointRoute }
  /** Spanning tree on a bridge: part of a change because a new STP port forwards only after its delays. */
  | { op: 'bridge-stp'; name: string; on: boolean };

/** One step of a host change plan, rendered to one `ip -4 -batch` line. */
export type HostOp = LinkOp | AddrRouteOp;

const IFNAME = /^[A-Za-z0-9_.:@+-]{1,15}$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const WORD = /^[a-z0-9_-]{1,32}$/;

function dev(n: string): string {
  if (!IFNAME.test(n)) throw new Error(`checkpoint: bad interface name ${JSON.stringify(n)}`);
  return n;
}
function ipv4(a: string): string {
  if (!IPV4.test(a)) throw new Error(`checkpoint: bad IPv4 address ${JSON.stringify(a)}`);
  return a;
}
function cidr(c: string): string {
  const [a, p, ...rest] = c.split('/');
  const len = Number(p);
  if (rest.length > 0 || a === undefined || p === undefined || !/^\d{1,2}$/.test(p) || len > 32) throw new Error(`checkpoint: bad CIDR ${JSON.stringify(c)}`);
  ipv4(a);
  return c;
}
function dst(d: string): string {
  return d === 'default' ? d : cidr(d);
}
function word(w: string, what: string): string {
  if (!WORD.test(w)) throw new Error(`checkpoint: bad ${what} ${JSON.stringify(w)}`);
  return w;
}

function routeArgs(r: CheckpointRoute): string[] {
  const parts = [dst(r.dst)];
  if (r.gateway !== undefined) parts.push('via', ipv4(r.gateway));
  parts.push('dev', dev(r.dev));
  if (r.protocol !== undefined) parts.push('proto', word(r.protocol, 'protocol'));
  if (r.scope !== undefined) parts.push('scope', word(r.scope, 'scope'));
  if (r.metric !== undefined) {
    if (!Number.isInteger(r.metric) || r.metric < 0 || r.metric > 0xffffffff) throw new Error(`checkpoint: bad metric ${r.metric}`);
    parts.push('metric', String(r.metric));
  }
  if (r.prefsrc !== undefined) parts.push('src', ipv4(r.prefsrc));
  return parts;
}

/** The batch line of one operation (no leading `ip`). Values are checked: a batch is line-oriented. */
export function renderHostOp(o: HostOp): string {
  switch (o.op) {
    case 'addr-add':
      return ['addr add', cidr(o.cidr), ...(o.broadcast === undefined ? [] : ['broadcast', ipv4(o.broadcast)]), 'dev', dev(o.dev)].join(' ');
    case 'addr-del':
      return `addr del ${cidr(o.cidr)} dev ${dev(o.dev)}`;
    case 'addr-flush':
      return `addr flush dev ${dev(o.dev)}`;
    case 'route-flush':
      return `route flush table main dev ${dev(o.dev)}`;
    case 'route-replace':
      return `route replace ${routeArgs(o.route).join(' ')}`;
    case 'route-del':
      return `route del ${routeArgs(o.route).join(' ')}`;
    case 'bridge-stp':
      return `link set dev ${dev(o.name)} type bridge stp_state ${o.on ? 1 : 0}`;
    default:
      return renderLinkOp(o);
  }
}

/** The whole batch; run it with `ip -4 -batch` (the flushes rely on -4 to leave IPv6 alone). */
export function renderHostBatch(ops: readonly HostOp[]): string {
  return ops.map((o) => renderHostOp(o) + '\n').join('');
}

interface IpAddrJson {
  ifname: string;
  mtu: number;
  flags?: string[];
  master?: string;
  addr_info?: Array<{ family: string; local: string; prefixlen: number; broadcast?: string }>;
}
interface IpRouteJson {
  dst: string;
  dev?: string;
  gateway?: string;
  protocol?: string;
  scope?: string;
  metric?: number;
  prefsrc?: string;
  type?: string;
}

/**
 * Pure: a checkpoint of `names` from `ip -j addr show` (all links) and `ip -4 -j route show table main`.
 * Kernel-made prefix routes are kept (to compare states) but the restore leaves them to `addr add`.
 */
export function parseCheckpoint(names: readonly string[], addrJson: string, routeJson: string): Checkpoint {
  const rows = JSON.parse(addrJson) as IpAddrJson[];
  const routes = (JSON.parse(routeJson) as IpRouteJson[]).filter((r) => r.type === undefined || r.type === 'unicast');
  const byName = new Map(rows.map((r) => [r.ifname, r]));
  const links: CheckpointLink[] = [];
  const absent: string[] = [];
  for (const n of names) {
    const r = byName.get(dev(n));
    if (!r) {
      absent.push(n);
      continue;
    }
    links.push({
      name: n,
      mtu: r.mtu,
      up: (r.flags ?? []).includes('UP'),
      ...(r.master === undefined ? {} : { master: r.master }),
      addresses: (r.addr_info ?? [])
        .filter((a) => a.family === 'inet')
        .map((a) => ({ cidr: `${a.local}/${a.prefixlen}`, ...(a.broadcast === undefined ? {} : { broadcast: a.broadcast }) })),
    });
  }
  const present = new Set(links.map((l) => l.name));
  const cpRoutes: CheckpointRoute[] = routes
    .filter((r) => r.dev !== undefined && present.has(r.dev))
    .map((r) => ({
      dst: r.dst,
      dev: r.dev!,
      ...(r.gateway === undefined ? {} : { gateway: r.gateway }),
      ...(r.protocol === undefined ? {} : { protocol: r.protocol }),
      ...(r.scope === undefined ? {} : { scope: r.scope }),
      ...(r.metric === undefined ? {} : { metric: r.metric }),
      ...(r.prefsrc === undefined ? {} : { prefsrc: r.prefsrc }),
    }));
  const def = routes.filter((r) => r.dst === 'default' && r.gateway !== undefined).sort((a, b) => (a.metric ?? 0) - (b.metric ?? 0))[0];
  return { links, absent, routes: cpRoutes, ...(def?.gateway === undefined ? {} : { defaultGateway: def.gateway }) };
}

/**
 * Pure: the plan that brings the checkpointed links back from any later state, so it can be run twice
 * (the agent and the daemon may both try) and still end in the same place. Order matters: deleting a
 * new bridge frees its ports; masters before addresses; flushing a device's routes before its addresses
 * are re-added, whose prefix routes the kernel then recreates; the other routes last, once their
 * gateways are reachable again. Run with `-force` so one missing object does not stop the rest.
 */
export function restorePlan(cp: Checkpoint): HostOp[] {
  const ops: HostOp[] = [];
  for (const n of cp.absent) ops.push({ op: 'delete', name: n });
  // Masters first (a port cannot join a bridge that is itself being restored later in the list): take
  // every link out, then put back those that had a master.
  for (const l of cp.links) ops.push({ op: 'set', name: l.name, master: null });
  for (const l of cp.links) {
    ops.push({ op: 'set', name: l.name, mtu: l.mtu, ...(l.master === undefined ? {} : { master: l.master }), up: l.up });
  }
  for (const l of cp.links) {
    ops.push({ op: 'route-flush', dev: l.name }, { op: 'addr-flush', dev: l.name });
    for (const a of l.addresses) ops.push({ op: 'addr-add', dev: l.name, cidr: a.cidr, ...(a.broadcast === undefined ? {} : { broadcast: a.broadcast }) });
  }
  for (const r of cp.routes) if (r.protocol !== 'kernel') ops.push({ op: 'route-replace', route: r });
  return ops;
}

/**
 * Pure: the classic `vmbr0` move. A new bridge takes the uplink's MTU, the uplink becomes its port, and
 * the uplink's addresses and non-kernel routes move to the bridge. `bridge` must not exist yet.
 */
export function bridgeOverUplinkPlan(cp: Checkpoint, uplink: string, bridge: string): HostOp[] {
  const up = cp.links.find((l) => l.name === uplink);
  if (!up) throw new AppError('NETWORK_INVALID', `uplink ${uplink} is not in the checkpoint (does it exist?)`);
  if (!cp.absent.includes(bridge)) throw new AppError('NETWORK_CONFLICT', `bridge ${bridge} already exists or is not in the checkpoint`);
  const ops: HostOp[] = [{ op: 'create-bridge', name: bridge, mtu: up.mtu }];
  for (const a of up.addresses) ops.push({ op: 'addr-del', dev: uplink, cidr: a.cidr });
  ops.push({ op: 'set', name: uplink, master: bridge, up: true }, { op: 'set', name: bridge, up: true });
  for (const a of up.addresses) ops.push({ op: 'addr-add', dev: bridge, cidr: a.cidr, ...(a.broadcast === undefined ? {} : { broadcast: a.broadcast }) });
  for (const r of cp.routes) if (r.dev === uplink && r.protocol !== 'kernel') ops.push({ op: 'route-replace', route: { ...r, dev: bridge } });
  return ops;
}

/** Reads a checkpoint of `names` on the real host (or inside `netns`). */
export async function captureCheckpoint(names: readonly string[], opts: { netns?: string } = {}): Promise<Checkpoint> {
  const pre = opts.netns === undefined ? [] : ['-n', opts.netns];
  try {
    const [addr, route] = await Promise.all([
      runCommand('ip', [...pre, '-j', 'addr', 'show']),
      runCommand('ip', [...pre, '-4', '-j', 'route', 'show', 'table', 'main']),
    ]);
    return parseCheckpoint(names, addr.stdout, route.stdout);
  } catch (e) {
    if (e instanceof AppError) throw e;
    throw new AppError('HOST_ERROR', `checkpoint: cannot read links: ${(e as Error).message}`, { cause: e });
  }
}

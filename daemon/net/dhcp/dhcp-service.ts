// Owns the per-interface DHCP servers: one server and one AF_PACKET transport per attached interface,
// opened when the link exists, closed when it goes away, reopened when it comes back.
import { readFileSync } from 'node:fs';
import { AppError, errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { EventSink } from '../../ops/types.js';
import { createDhcpServerRegistry, type DhcpServerRegistry } from './registry.js';
import { createPacketTransport, type OpenPacketSocket, type PacketSocketError, type PacketTransport } from './packet-transport.js';
import { createDhcpServer, type DhcpEvent, type DhcpServer, type DhcpServerConfig, type DhcpServerStats } from './server.js';

/** Where lease events go (lease-repo.ts); called on the packet path, so it must not block or throw. */
export interface LeaseSink {
  record(ifname: string, e: DhcpEvent): void;
}

export interface DhcpInterfaceConfig extends Omit<DhcpServerConfig, 'onEvent' | 'logger' | 'now'> {
  /** The host-side link the guest's frames arrive on (a tap, or a bridge port). */
  ifname: string;
  /** Source MAC of our reply frames. Default: the link's own MAC, read each time the socket opens. */
  hostMac?: string;
}

export interface LinkInfo {
  ifindex: number;
  mac: string;
}

/** Looks a link up by name in this process's view of the kernel; undefined when there is none. */
export type LinkLookup = (ifname: string) => LinkInfo | undefined;

export interface DhcpServiceDeps {
  openPacketSocket: OpenPacketSocket;
  leases?: LeaseSink;
  /** The event log (GET /v1/events): ack, nak, decline and release are published as dhcp.<type>. */
  events?: EventSink;
  /** Shared with a relay transport when there is one; default a private registry. */
  registry?: DhcpServerRegistry;
  logger?: Logger;
  now?: () => number;
  link?: LinkLookup;
  /** How often interfaces waiting for their link are looked for. Default 1000 ms. */
  pollMs?: number;
}

export interface DhcpInterfaceStatus {
  ifname: string;
  mac: string;
  ip: string;
  /** True while a packet socket is open on the link. */
  open: boolean;
  ifindex: number | null;
  stats: DhcpServerStats;
}

export interface DhcpService {
  start(): void;
  stop(): void;
  /** Registers the interface's server and opens its transport if the link exists (and started). */
  attach(cfg: DhcpInterfaceConfig): void;
  /** Closes and forgets the interface; false if it was not attached. */
  detach(ifname: string): boolean;
  /** A hint from whoever just created or deleted a link: look now instead of at the next poll. */
  linkChanged(ifname: string): void;
  status(): DhcpInterfaceStatus[];
}

const IFNAME = /^[A-Za-z0-9_.:-]{1,15}$/;

/** sysfs shows the links of the network namespace it was mounted in, which is the daemon's. */
export const sysfsLink: LinkLookup = (ifname) => {
  if (!IFNAME.test(ifname) || ifname === '.' || ifname === '..') return undefined;
  try {
    const ifindex = Number(readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8').trim());
    const mac = readFileSync(`/sys/class/net/${ifname}/address`, 'utf8').trim();
    return Number.isInteger(ifindex) && ifindex > 0 ? { ifindex, mac } : undefined;
  } catch {
    return undefined;
  }
};

interface Attachment {
  cfg: DhcpInterfaceConfig;
  server: DhcpServer;
  transport: PacketTransport | undefined;
  ifindex: number | undefined;
  /** Last open failure's message, so a persistent failure is logged once and not every poll. */
  lastFailure: string | undefined;
}

// Offers and informs are chatter; these change what a guest holds.
const PUBLISHED = new Set<DhcpEvent['type']>(['ack', 'nak', 'decline', 'release']);

export function createDhcpService(deps: DhcpServiceDeps): DhcpService {
  const log = deps.logger;

  // On the packet path: the event log only queues (bounded, synchronous), and a failing sink costs a log line.
  const onDhcpEvent = (ifname: string, e: DhcpEvent): void => {
    deps.leases?.record(ifname, e);
    if (!deps.events || !PUBLISHED.has(e.type)) return;
    try {
      deps.events.publish({ type: `dhcp.${e.type}`, subject: `interfaces/${ifname}`, data: { interface: ifname, mac: e.mac, ip: e.ip } });
    } catch (err) {
      log?.warn({ ifname, err: errorMessage(err) }, 'dhcp: publishing an event failed');
    }
  };
  const registry = deps.registry ?? createDhcpServerRegistry();
  const link = deps.link ?? sysfsLink;
  const pollMs = deps.pollMs ?? 1000;
  const byName = new Map<string, Attachment>();
  let running = false;
  let timer: NodeJS.Timeout | undefined;

  function close(a: Attachment, why: string): void {
    if (a.transport === undefined) return;
    a.transport.stop();
    a.transport = undefined;
    a.ifindex = undefined;
    log?.info({ ifname: a.cfg.ifname, why }, 'dhcp: transport closed');
  }

  function open(a: Attachment, info: LinkInfo): void {
    const { ifname } = a.cfg;
    const t = createPacketTransport({
      ifname,
      server: a.server,
      hostMac: a.cfg.hostMac ?? info.mac,
      openPacketSocket: deps.openPacketSocket,
      onError: (err) => onSocketError(a, t, err),
      ...(log ? { logger: log } : {}),
      ...(deps.now ? { now: deps.now } : {}),
    });
    try {
      t.start();
    } catch (e) {
      // ENODEV: the link vanished between lookup and bind; it stays pending like any other failure.
      const msg = errorMessage(e);
      if (a.lastFailure !== msg) log?.warn({ ifname, err: msg }, 'dhcp: cannot open packet socket, will retry');
      a.lastFailure = msg;
      return;
    }
    a.transport = t;
    a.ifindex = t.ifindex ?? info.ifindex;
    a.lastFailure = undefined;
    log?.info({ ifname, ifindex: a.ifindex, mac: a.server.mac }, 'dhcp: serving');
  }

  /** Brings one attachment in line with its link: open if present, closed if gone, reopened if replaced. */
  function reconcile(a: Attachment): void {
    if (!running) return;
    const info = link(a.cfg.ifname);
    if (a.transport !== undefined) {
      if (info !== undefined && info.ifindex === a.ifindex) return;
      close(a, info === undefined ? 'link gone' : 'link replaced');
    }
    if (info !== undefined) open(a, info);
  }

  function onSocketError(a: Attachment, t: PacketTransport, err: PacketSocketError): void {
    // The kernel reports ENETDOWN on the socket both when the link goes down (reading resumes when it is
    // up again) and when it is deleted (the socket is dead); only the link table tells them apart.
    if (a.transport !== t || byName.get(a.cfg.ifname) !== a) return;
    log?.debug({ ifname: a.cfg.ifname, code: err.code }, 'dhcp: packet socket error');
    reconcile(a);
  }

  function poll(): void {
    for (const a of byName.values()) {
      if (a.transport === undefined) reconcile(a);
    }
  }

  return {
    start() {
      if (running) return;
      running = true;
      for (const a of byName.values()) reconcile(a);
      // Only interfaces without a socket are looked at on this timer (a stat or two each), so attached,
      // serving interfaces cost nothing; open sockets learn about deletion from the kernel (ENETDOWN).
      timer = setInterval(poll, pollMs);
      timer.unref();
    },
    stop() {
      running = false;
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      for (const a of byName.values()) close(a, 'service stopped');
    },
    attach(cfg) {
      if (!IFNAME.test(cfg.ifname)) throw new AppError('CONFIG_INVALID', `dhcp: '${cfg.ifname}' is not an interface name`);
      if (byName.has(cfg.ifname)) throw new AppError('CONFLICT', `dhcp: ${cfg.ifname} already has a DHCP server`);
      const { ifname, hostMac: _hostMac, ...serverCfg } = cfg;
      const server = createDhcpServer({
        ...serverCfg,
        ...(log ? { logger: log.child({ ifname }) } : {}),
        ...(deps.now ? { now: deps.now } : {}),
        ...(deps.leases || deps.events ? { onEvent: (e: DhcpEvent) => onDhcpEvent(ifname, e) } : {}),
      });
      registry.add(server);
      const a: Attachment = { cfg, server, transport: undefined, ifindex: undefined, lastFailure: undefined };
      byName.set(ifname, a);
      reconcile(a);
    },
    detach(ifname) {
      const a = byName.get(ifname);
      if (a === undefined) return false;
      byName.delete(ifname);
      close(a, 'detached');
      registry.remove(a.server.macKey);
      return true;
    },
    linkChanged(ifname) {
      const a = byName.get(ifname);
      if (a !== undefined) reconcile(a);
    },
    status() {
      return [...byName.values()].map((a) => ({
        ifname: a.cfg.ifname,
        mac: a.server.mac,
        ip: a.server.ip,
        open: a.transport !== undefined,
        ifindex: a.ifindex ?? null,
        stats: a.server.stats(),
      }));
    },
  };
}

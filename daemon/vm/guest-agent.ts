// Guest-agent data per VM domain, cached in memory and filled in the background, so a GET never waits on a
// guest: queried only while libvirt says the agent is connected, on connect and every refreshMs, cleared on stop.
import { isIP } from 'node:net';
import { errorMessage, isAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { AgentEvent, ConnectionEvent, DomainEvent, GuestInterface, LibvirtClient } from '../libvirt/types.js';
import { children, child, parseXml } from '../libvirt/xml.js';

export interface GuestAgentInfo {
  connected: true;
  /** Null when the agent answered the interface query but not the hostname one. */
  hostname: string | null;
  interfaces: { name: string; mac: string | null; addresses: { ip: string; prefix: number }[] }[];
  /** When the agent last answered (ISO 8601). */
  updatedAt: string;
}

export interface GuestAgentCacheDeps {
  libvirt: Pick<LibvirtClient, 'on' | 'off' | 'connected' | 'listDomains' | 'getDomainXml' | 'getGuestHostname' | 'getGuestInterfaces'>;
  /** Which libvirt domains are ours (the others are never queried). */
  isOurs: (domain: string) => boolean;
  logger?: Logger;
  /** Refresh period while an agent is connected. Default 30 s. */
  refreshMs?: number;
  /** Per-query timeout. Default 3 s. */
  timeoutMs?: number;
  now?: () => Date;
}

export interface GuestAgentCache {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The cached answer for a libvirt domain; null when no agent answers. Never does I/O. */
  get(domain: string): GuestAgentInfo | null;
  /** Resolves when the in-flight queries settle (tests and shutdown). */
  idle(): Promise<void>;
}

// The guest says what it likes: everything below bounds what one guest can make us keep and serve.
const MAX_HOSTNAME = 255;
const MAX_INTERFACES = 32;
const MAX_ADDRESSES = 16;
const MAX_IFNAME = 64;
const AGENT_CHANNEL = 'org.qemu.guest_agent.0';

/** Printable ASCII only, trimmed and capped; anything else is not a name we show. */
function cleanText(v: unknown, max: number): string | null {
  if (typeof v !== 'string') return null;
  const s = v.replace(/[^\x20-\x7e]/g, '').trim().slice(0, max);
  return s === '' ? null : s;
}

function cleanMac(v: unknown): string | null {
  return typeof v === 'string' && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(v) ? v.toLowerCase() : null;
}

export function sanitizeInterfaces(raw: unknown): GuestAgentInfo['interfaces'] {
  if (!Array.isArray(raw)) return [];
  const out: GuestAgentInfo['interfaces'] = [];
  for (const i of raw.slice(0, MAX_INTERFACES) as Partial<GuestInterface>[]) {
    if (typeof i !== 'object' || i === null) continue;
    const name = cleanText(i.name, MAX_IFNAME);
    if (name === null) continue;
    const addresses: { ip: string; prefix: number }[] = [];
    for (const a of Array.isArray(i.addresses) ? i.addresses.slice(0, MAX_ADDRESSES) : []) {
      if (typeof a !== 'object' || a === null || typeof a.ip !== 'string' || a.ip.length > 64) continue;
      const family = isIP(a.ip);
      const max = family === 4 ? 32 : family === 6 ? 128 : -1;
      if (!Number.isInteger(a.prefix) || a.prefix < 0 || a.prefix > max) continue;
      addresses.push({ ip: a.ip, prefix: a.prefix });
    }
    out.push({ name, mac: cleanMac(i.mac), addresses });
  }
  return out;
}

/** Whether the live domain XML shows the agent channel connected (libvirt adds state='connected' to its target). */
export function agentConnectedInXml(xml: string): boolean {
  try {
    const devices = child(parseXml(xml), 'devices');
    if (!devices) return false;
    return children(devices, 'channel').some((c) => {
      const t = child(c, 'target');
      return t?.attrs.name === AGENT_CHANNEL && t.attrs.state === 'connected';
    });
  } catch {
    return false;
  }
}

export function createGuestAgentCache(deps: GuestAgentCacheDeps): GuestAgentCache {
  const log = deps.logger?.child({ component: 'guest-agent' });
  const refreshMs = deps.refreshMs ?? 30_000;
  const timeoutMs = deps.timeoutMs ?? 3_000;
  const now = deps.now ?? (() => new Date());
  const cache = new Map<string, GuestAgentInfo>();
  /** Domains whose agent libvirt reports connected; only these are queried. */
  const connected = new Set<string>();
  /** Bumped on every disconnect/stop so an answer that was in flight then is dropped, not cached. */
  const epochs = new Map<string, number>();
  const inflight = new Map<string, Promise<void>>();
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let scanning: Promise<void> | undefined;

  const epoch = (d: string): number => epochs.get(d) ?? 0;

  const forget = (d: string): void => {
    connected.delete(d);
    cache.delete(d);
    epochs.set(d, epoch(d) + 1);
  };

  const query = async (d: string): Promise<void> => {
    const e = epoch(d);
    const [host, ifs] = await Promise.allSettled([
      deps.libvirt.getGuestHostname(d, { timeoutMs }),
      deps.libvirt.getGuestInterfaces(d, { timeoutMs }),
    ]);
    if (!running || e !== epoch(d) || !connected.has(d)) return;
    if (host.status === 'rejected' && ifs.status === 'rejected') {
      const err = host.reason as unknown;
      // libvirt itself being away says nothing about the guest: keep the last answer until it is back.
      if (isAppError(err, 'LIBVIRT_UNAVAILABLE')) return;
      if (isAppError(err, 'DOMAIN_NOT_FOUND')) forget(d);
      else cache.delete(d);
      log?.debug({ domain: d, err: errorMessage(err) }, 'guest agent did not answer');
      return;
    }
    cache.set(d, {
      connected: true,
      hostname: host.status === 'fulfilled' ? cleanText(host.value, MAX_HOSTNAME) : null,
      interfaces: ifs.status === 'fulfilled' ? sanitizeInterfaces(ifs.value) : [],
      updatedAt: now().toISOString(),
    });
  };

  /** At most one query per domain at a time; a refresh asked for meanwhile is served by the running one. */
  const refresh = (d: string): Promise<void> => {
    const running_ = inflight.get(d);
    if (running_) return running_;
    const p = query(d)
      .catch((err: unknown) => log?.warn({ domain: d, err: errorMessage(err) }, 'guest agent refresh failed'))
      .finally(() => inflight.delete(d));
    inflight.set(d, p);
    return p;
  };

  /** Start-up, adoption and libvirt reconnects: agent events may have been missed, the live XML says the truth. */
  const scan = async (): Promise<void> => {
    try {
      const doms = (await deps.libvirt.listDomains()).filter((i) => i.active && deps.isOurs(i.name));
      const active = new Set(doms.map((i) => i.name));
      for (const d of [...connected]) if (!active.has(d)) forget(d);
      for (const i of doms) {
        const xml = await deps.libvirt.getDomainXml(i.name).catch(() => '');
        // Only adds: a disconnect is the agent event's to report (or a failed query's, which clears the entry).
        if (agentConnectedInXml(xml)) connected.add(i.name);
      }
      for (const d of connected) void refresh(d);
    } catch (err) {
      log?.warn({ err: errorMessage(err) }, 'guest agent scan failed');
    }
  };

  const onAgent = (ev: AgentEvent): void => {
    if (ev.name === undefined || !deps.isOurs(ev.name)) return;
    if (ev.connected) {
      connected.add(ev.name);
      void refresh(ev.name);
    } else forget(ev.name);
  };
  const onDomain = (ev: DomainEvent): void => {
    if (ev.name === undefined || !deps.isOurs(ev.name)) return;
    if (ev.event === 'stopped' || ev.event === 'undefined' || ev.event === 'crashed') forget(ev.name);
  };
  const onConnection = (ev: ConnectionEvent): void => {
    if (ev.connected) scanning = scan();
  };

  const tick = (): void => {
    timer = setTimeout(() => {
      // A rescan rather than a refresh of the known ones: an agent event lost on the bus must not hide an agent.
      if (deps.libvirt.connected) scanning = scan();
      tick();
    }, refreshMs);
    timer.unref();
  };

  return {
    async start() {
      if (running) return;
      running = true;
      deps.libvirt.on('agent', onAgent);
      deps.libvirt.on('domain', onDomain);
      deps.libvirt.on('connection', onConnection);
      tick();
      if (deps.libvirt.connected) scanning = scan();
    },
    async stop() {
      if (!running) return;
      running = false;
      clearTimeout(timer);
      deps.libvirt.off('agent', onAgent);
      deps.libvirt.off('domain', onDomain);
      deps.libvirt.off('connection', onConnection);
      await scanning;
      await Promise.all(inflight.values());
      cache.clear();
      connected.clear();
    },
    get(domain) {
      const v = cache.get(domain);
      return v ? structuredClone(v) : null;
    },
    async idle() {
      await scanning;
      while (inflight.size > 0) await Promise.all(inflight.values());
    },
  };
}

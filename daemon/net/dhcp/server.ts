// One DHCPv4 server per VM interface: it knows one MAC and one IP and answers only that client (RFC 2131
// states, no pool, no lease database). handle() is pure apart from emitting events; transports feed bytes.
import type { Logger } from '../../lib/logger.js';
import { AppError, errorMessage } from '../../lib/errors.js';
import { BROADCAST_IP, BROADCAST_MAC, formatIpv4, formatMac, parseIpv4, parseMac, prefixToMask, readMac } from './addr.js';
import {
  BOOTREPLY,
  BOOTREQUEST,
  DHCP_MIN_MAX_SIZE,
  FLAG_BROADCAST,
  HTYPE_ETHERNET,
  decodeDhcp,
  encodeDhcp,
  messageTypeOf,
  type DhcpMessage,
} from './codec.js';
import {
  MSG,
  OPT,
  decodeU16,
  decodeU32,
  encodeClasslessRoutes,
  encodeDomainSearch,
  encodeIpList,
  encodeText,
  encodeU16,
  encodeU32,
  type ClasslessRoute,
} from './options.js';
import { LogLimiter, TokenBucket, type TokenBucketOptions } from './rate-limit.js';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
/** IPv4 + UDP headers, which option 57 counts (it bounds the whole IP datagram, 576 at least). */
const IP_UDP_HEADERS = 28;
const INFINITE_LEASE = 0xffffffff;

export interface DhcpRouteConfig {
  /** CIDR, e.g. '10.0.0.0/8'. */
  destination: string;
  gateway: string;
}

export type DhcpEventType = 'offer' | 'ack' | 'nak' | 'decline' | 'release' | 'inform';

export interface DhcpEvent {
  type: DhcpEventType;
  mac: string;
  ip: string;
  /** Epoch milliseconds from the server's clock. */
  at: number;
}

export interface DhcpServerConfig {
  mac: string;
  ip: string;
  prefixLength: number;
  serverIp: string;
  router?: string;
  dns?: string[];
  domainName?: string;
  search?: string[];
  hostname?: string;
  /** Interface MTU: sent as option 26 and the ceiling for the client's option 57. */
  mtu?: number;
  routes?: DhcpRouteConfig[];
  /** Default 86400. 0xffffffff means infinite (then no T1/T2). */
  leaseSeconds?: number;
  onEvent?: (e: DhcpEvent) => void;
  logger?: Logger;
  /** Clock in epoch ms; injected so tests and the bench control time. */
  now?: () => number;
  /** Per-interface packet budget. Default 100/s with a burst of 200. */
  rateLimit?: TokenBucketOptions;
  /** At most one bad-packet log line per this many ms. Default 10 s. */
  logIntervalMs?: number;
}

export interface ReplyDestination {
  /** Destination IPv4 (u32): a relay's giaddr, the client's address, or 255.255.255.255. */
  ip: number;
  /** Destination MAC (48-bit) for the packet transport; the broadcast MAC when broadcasting. */
  mac: number;
  port: number;
  broadcast: boolean;
  /** True when the reply goes to a relay agent (giaddr), which only the relay transport serves. */
  viaRelay: boolean;
}

export interface DhcpReply {
  message: DhcpMessage;
  /** The encoded message, already fitted to the client's maximum message size. */
  bytes: Uint8Array;
  to: ReplyDestination;
}

export interface DhcpServerStats {
  received: number;
  replied: number;
  ignored: number;
  malformed: number;
  throttled: number;
  errors: number;
  declines: number;
  releases: number;
  lastDeclineAt: number | null;
  lastReleaseAt: number | null;
}

export type BadPacketReason = string;

export interface DhcpServer {
  readonly mac: string;
  /** The MAC as a 48-bit number: the registry key. */
  readonly macKey: number;
  readonly ip: string;
  readonly serverIpU32: number;
  /** Decides the reply for one decoded message; null means stay silent. No I/O, never throws. */
  handle(msg: DhcpMessage, nowMs?: number): DhcpReply | null;
  /** Rate limit, decode, handle: what a transport calls with a UDP payload. Never throws. */
  handleDatagram(bytes: Uint8Array, nowMs?: number): DhcpReply | null;
  /** Takes a token from the interface's bucket; false means drop the packet unseen. */
  admit(nowMs?: number): boolean;
  /** Counts and (rate-limited) logs a packet a transport rejected before it reached the server. */
  noteBadPacket(reason: BadPacketReason, nowMs?: number): void;
  stats(): DhcpServerStats;
}

function invalid(what: string): never {
  throw new AppError('CONFIG_INVALID', `dhcp server: ${what}`);
}

function ipOrThrow(s: string, what: string): number {
  const v = parseIpv4(s);
  if (v === undefined) invalid(`${what} '${s}' is not an IPv4 address`);
  return v;
}

function parseRoute(r: DhcpRouteConfig): ClasslessRoute {
  const [addr, len, ...rest] = r.destination.split('/');
  const prefixLength = Number(len);
  if (rest.length > 0 || len === undefined || !/^[0-9]{1,2}$/.test(len) || prefixLength > 32) {
    invalid(`route destination '${r.destination}' is not a CIDR`);
  }
  return { destination: ipOrThrow(addr ?? '', 'route destination'), prefixLength, gateway: ipOrThrow(r.gateway, 'route gateway') };
}

const TYPE_BYTES: Uint8Array[] = Array.from({ length: 9 }, (_, i) => Uint8Array.of(i));
const EMPTY_SNAME = new Uint8Array(64);
const EMPTY_FILE = new Uint8Array(128);
/**
 * Never dropped to make a reply fit: RFC 2131 table 3 MUSTs, what makes the address usable, and the
 * RFC 6842 client-id echo (at most 257 octets, it always fits the 304 the options field has at least).
 */
const ESSENTIAL = new Set<number>([OPT.MESSAGE_TYPE, OPT.SERVER_ID, OPT.LEASE_TIME, OPT.SUBNET_MASK, OPT.ROUTER, OPT.CLIENT_ID]);

export function createDhcpServer(cfg: DhcpServerConfig): DhcpServer {
  const macKey = parseMac(cfg.mac) ?? invalid(`mac '${cfg.mac}' is not a MAC address`);
  const mac = formatMac(macKey);
  const ip = ipOrThrow(cfg.ip, 'ip');
  const ipText = formatIpv4(ip);
  const serverIp = ipOrThrow(cfg.serverIp, 'serverIp');
  if (!Number.isInteger(cfg.prefixLength) || cfg.prefixLength < 1 || cfg.prefixLength > 32) {
    invalid(`prefixLength ${cfg.prefixLength} is not 1..32`);
  }
  const mtu = cfg.mtu ?? 1500;
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) invalid(`mtu ${mtu} is not 576..65535`);
  const lease = cfg.leaseSeconds ?? 86400;
  if (!Number.isInteger(lease) || lease < 1 || lease > INFINITE_LEASE) invalid(`leaseSeconds ${lease} is out of range`);
  const router = cfg.router === undefined ? undefined : ipOrThrow(cfg.router, 'router');
  const mask = prefixToMask(cfg.prefixLength);

  // Option values are encoded once here; replies only reference them.
  const served = new Map<number, Uint8Array>();
  served.set(OPT.SERVER_ID, encodeU32(serverIp));
  served.set(OPT.LEASE_TIME, encodeU32(lease));
  if (lease !== INFINITE_LEASE) {
    served.set(OPT.RENEWAL_T1, encodeU32(Math.floor(lease / 2)));
    served.set(OPT.REBINDING_T2, encodeU32(Math.floor((lease * 7) / 8)));
  }
  served.set(OPT.SUBNET_MASK, encodeU32(mask));
  if (router !== undefined) served.set(OPT.ROUTER, encodeU32(router));
  if (cfg.dns !== undefined && cfg.dns.length > 0) served.set(OPT.DNS, encodeIpList(cfg.dns.map((d) => ipOrThrow(d, 'dns'))));
  if (cfg.hostname !== undefined) served.set(OPT.HOSTNAME, textOption(cfg.hostname, 'hostname'));
  if (cfg.domainName !== undefined) served.set(OPT.DOMAIN_NAME, textOption(cfg.domainName, 'domainName'));
  if (cfg.mtu !== undefined) served.set(OPT.INTERFACE_MTU, encodeU16(mtu));
  served.set(OPT.BROADCAST, encodeU32((ip | ~mask) >>> 0));
  if (cfg.search !== undefined && cfg.search.length > 0) served.set(OPT.DOMAIN_SEARCH, encodeDomainSearch(cfg.search));
  if (cfg.routes !== undefined && cfg.routes.length > 0) {
    const routes = cfg.routes.map(parseRoute);
    // Clients that honour 121 ignore option 3 (RFC 3442), so the default route must be in 121 too.
    if (router !== undefined && !routes.some((r) => r.prefixLength === 0)) {
      routes.push({ destination: 0, prefixLength: 0, gateway: router });
    }
    served.set(OPT.CLASSLESS_ROUTES, encodeClasslessRoutes(routes));
  }

  const now = cfg.now ?? Date.now;
  const log = cfg.logger;
  const bucket = new TokenBucket(cfg.rateLimit ?? { ratePerSec: 100, burst: 200 });
  const badLog = new LogLimiter(cfg.logIntervalMs ?? 10_000);
  const stats: DhcpServerStats = {
    received: 0,
    replied: 0,
    ignored: 0,
    malformed: 0,
    throttled: 0,
    errors: 0,
    declines: 0,
    releases: 0,
    lastDeclineAt: null,
    lastReleaseAt: null,
  };
  let declineLogged = false;

  function emit(type: DhcpEventType, at: number, addr: number): void {
    if (cfg.onEvent === undefined) return;
    try {
      cfg.onEvent({ type, mac, ip: addr === ip ? ipText : formatIpv4(addr), at });
    } catch (e) {
      // A listener bug must not turn into a dropped reply or an exception on the packet path.
      log?.error({ mac, err: errorMessage(e) }, 'dhcp: event listener threw');
    }
  }

  function noteBadPacket(reason: BadPacketReason, at: number = now()): void {
    stats.malformed++;
    const suppressed = badLog.allow(at);
    if (suppressed >= 0) log?.warn({ mac, reason, suppressed }, 'dhcp: ignored bad packet from guest');
  }

  /** Max DHCP message size for the reply: option 57 clamped to 576..MTU, minus IP+UDP headers. */
  function replyLimit(req: DhcpMessage): number {
    const asked = decodeU16(req.options.get(OPT.MAX_MESSAGE_SIZE));
    if (asked === undefined) return DHCP_MIN_MAX_SIZE;
    return Math.min(Math.max(asked, 576), mtu) - IP_UDP_HEADERS;
  }

  function destination(req: DhcpMessage, reply: DhcpMessage, nak: boolean): ReplyDestination {
    // RFC 2131 4.1, in its order: relay first, then NAK broadcast, then ciaddr, then the flag.
    if (req.giaddr !== 0) {
      if (nak) reply.flags |= FLAG_BROADCAST;
      return { ip: req.giaddr, mac: BROADCAST_MAC, port: DHCP_SERVER_PORT, broadcast: false, viaRelay: true };
    }
    if (nak) return { ip: BROADCAST_IP, mac: BROADCAST_MAC, port: DHCP_CLIENT_PORT, broadcast: true, viaRelay: false };
    if (req.ciaddr !== 0) return { ip: req.ciaddr, mac: macKey, port: DHCP_CLIENT_PORT, broadcast: false, viaRelay: false };
    if ((req.flags & FLAG_BROADCAST) !== 0 || reply.yiaddr === 0) {
      return { ip: BROADCAST_IP, mac: BROADCAST_MAC, port: DHCP_CLIENT_PORT, broadcast: true, viaRelay: false };
    }
    // Unicast to an address the client does not have yet works here: we address the frame by chaddr.
    return { ip: reply.yiaddr, mac: macKey, port: DHCP_CLIENT_PORT, broadcast: false, viaRelay: false };
  }

  function build(req: DhcpMessage, type: number, yiaddr: number, ciaddr: number, withLease: boolean): DhcpReply | null {
    const options = new Map<number, Uint8Array>();
    options.set(OPT.MESSAGE_TYPE, TYPE_BYTES[type]!);
    const nak = type === MSG.NAK;
    if (nak) {
      options.set(OPT.SERVER_ID, served.get(OPT.SERVER_ID)!);
    } else {
      // Requested options first, in the client's order (some clients only read what they asked for
      // and in that order), then everything else we serve.
      const prl = req.options.get(OPT.PARAM_REQUEST_LIST);
      if (prl !== undefined) {
        for (let i = 0; i < prl.length; i++) {
          const code = prl[i]!;
          if (options.has(code) || (!withLease && isLeaseOption(code))) continue;
          const v = served.get(code);
          if (v !== undefined) options.set(code, v);
        }
      }
      for (const [code, v] of served) {
        if (!options.has(code) && (withLease || !isLeaseOption(code))) options.set(code, v);
      }
    }
    // RFC 6842: echo the client identifier so the client can match the reply to itself.
    const clientId = req.options.get(OPT.CLIENT_ID);
    if (clientId !== undefined && clientId.length >= 2 && clientId.length <= 255) options.set(OPT.CLIENT_ID, clientId);
    const reply: DhcpMessage = {
      op: BOOTREPLY,
      htype: HTYPE_ETHERNET,
      hlen: 6,
      hops: 0,
      xid: req.xid,
      secs: 0,
      flags: req.flags & FLAG_BROADCAST,
      ciaddr,
      yiaddr,
      siaddr: 0,
      giaddr: req.giaddr,
      chaddr: req.chaddr,
      sname: EMPTY_SNAME,
      file: EMPTY_FILE,
      options,
    };
    const to = destination(req, reply, nak);
    const limit = replyLimit(req);
    let bytes = encodeDhcp(reply, limit);
    if (bytes === undefined) {
      // Too big for what the client accepts: shed optional options, last-placed first.
      const optional = [...options.keys()].filter((c) => !ESSENTIAL.has(c));
      while (bytes === undefined && optional.length > 0) {
        options.delete(optional.pop()!);
        bytes = encodeDhcp(reply, limit);
      }
      if (bytes === undefined) return null;
    }
    return { message: reply, bytes, to };
  }

  function ignore(): null {
    stats.ignored++;
    return null;
  }

  function handleUnsafe(req: DhcpMessage, at: number): DhcpReply | null {
    if (req.op !== BOOTREQUEST || req.htype !== HTYPE_ETHERNET || req.hlen !== 6) return ignore();
    if (readMac(req.chaddr, 0) !== macKey) return ignore();
    const type = messageTypeOf(req);
    // A malformed server id is treated like a foreign one: we cannot tell that it names us.
    const sidRaw = req.options.get(OPT.SERVER_ID);
    const sid = decodeU32(sidRaw);
    if (sidRaw !== undefined && sid !== serverIp) {
      // RFC 2131 4.3.2: a REQUEST naming another server means the client chose it; DECLINE and
      // RELEASE are addressed to that server too. Silence in every case.
      if (type !== MSG.DISCOVER && type !== MSG.INFORM) return ignore();
    }
    const requested = decodeU32(req.options.get(OPT.REQUESTED_IP));
    switch (type) {
      case MSG.DISCOVER:
        emit('offer', at, ip);
        return build(req, MSG.OFFER, ip, 0, true);
      case MSG.REQUEST: {
        let ok: boolean;
        if (sidRaw !== undefined) ok = requested === ip; // SELECTING
        else if (requested !== undefined) ok = requested === ip; // INIT-REBOOT
        else if (req.ciaddr !== 0) ok = req.ciaddr === ip; // RENEWING / REBINDING
        else return ignore(); // no state fits: not a valid REQUEST
        if (!ok) {
          emit('nak', at, requested ?? req.ciaddr);
          return build(req, MSG.NAK, 0, 0, false);
        }
        emit('ack', at, ip);
        return build(req, MSG.ACK, ip, req.ciaddr, true);
      }
      case MSG.DECLINE:
        if (requested !== ip) return ignore();
        stats.declines++;
        stats.lastDeclineAt = at;
        // The guest saw our address in use (ARP probe): worth one warning, not one per retry.
        if (!declineLogged) {
          declineLogged = true;
          log?.warn({ mac, ip: ipText }, 'dhcp: guest declined its address (address conflict on the link?)');
        }
        emit('decline', at, ip);
        return null;
      case MSG.RELEASE:
        if (req.ciaddr !== ip) return ignore();
        stats.releases++;
        stats.lastReleaseAt = at;
        emit('release', at, ip);
        return null;
      case MSG.INFORM:
        emit('inform', at, req.ciaddr);
        return build(req, MSG.ACK, 0, req.ciaddr, false);
      default:
        return ignore();
    }
  }

  function handle(req: DhcpMessage, at: number = now()): DhcpReply | null {
    stats.received++;
    try {
      const reply = handleUnsafe(req, at);
      if (reply !== null) stats.replied++;
      return reply;
    } catch (e) {
      // Only a bug gets here; the guest must not be able to crash the daemon by finding it.
      stats.errors++;
      const suppressed = badLog.allow(at);
      if (suppressed >= 0) log?.error({ mac, err: errorMessage(e), suppressed }, 'dhcp: handler failed');
      return null;
    }
  }

  function admit(at: number = now()): boolean {
    if (bucket.take(at)) return true;
    stats.throttled++;
    return false;
  }

  return {
    mac,
    macKey,
    ip: ipText,
    serverIpU32: serverIp,
    handle,
    admit,
    noteBadPacket,
    handleDatagram(bytes: Uint8Array, at: number = now()): DhcpReply | null {
      try {
        if (!admit(at)) return null;
        const decoded = decodeDhcp(bytes);
        if (!decoded.ok) {
          noteBadPacket(decoded.reason, at);
          return null;
        }
        return handle(decoded.message, at);
      } catch (e) {
        stats.errors++;
        log?.error({ mac, err: errorMessage(e) }, 'dhcp: datagram handling failed');
        return null;
      }
    },
    stats: () => ({ ...stats }),
  };
}

function isLeaseOption(code: number): boolean {
  return code === OPT.LEASE_TIME || code === OPT.RENEWAL_T1 || code === OPT.REBINDING_T2;
}

function textOption(s: string, what: string): Uint8Array {
  const b = encodeText(s);
  if (b.length === 0 || b.length > 255 || b.includes(0)) invalid(`${what} must be 1..255 octets without NUL`);
  return b;
}

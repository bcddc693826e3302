// Serves relayed DHCP (giaddr set) on a plain UDP socket: finds the interface server by chaddr in the
// registry and answers the relay at giaddr:67 (RFC 2131 4.1). Lets standard tools such as perfdhcp,
// which act as a relay, drive the same core the per-tap packet transport uses.
import { createSocket, type Socket } from 'node:dgram';
import type { Logger } from '../../lib/logger.js';
import { errorMessage } from '../../lib/errors.js';
import { formatIpv4 } from './addr.js';
import { decodeDhcp, BOOTREQUEST } from './codec.js';
import { LogLimiter } from './rate-limit.js';
import type { DhcpServerRegistry } from './registry.js';
import { DHCP_SERVER_PORT } from './server.js';

export interface RelayTransportOptions {
  registry: DhcpServerRegistry;
  /** Default 0.0.0.0. */
  address?: string;
  /** Default 67; 0 picks an ephemeral port (tests). */
  port?: number;
  /** Port replies go to on the relay. RFC 2131 says 67; tests acting as the relay override it. */
  relayPort?: number;
  logger?: Logger;
  now?: () => number;
  logIntervalMs?: number;
}

export interface RelayTransportStats {
  received: number;
  unrelayed: number;
  unknownClient: number;
  malformed: number;
  sent: number;
  sendErrors: number;
}

export interface RelayTransport {
  start(): Promise<{ address: string; port: number }>;
  stop(): Promise<void>;
  stats(): RelayTransportStats;
}

export function createRelayTransport(opts: RelayTransportOptions): RelayTransport {
  const now = opts.now ?? Date.now;
  const relayPort = opts.relayPort ?? DHCP_SERVER_PORT;
  const badLog = new LogLimiter(opts.logIntervalMs ?? 10_000);
  const stats: RelayTransportStats = { received: 0, unrelayed: 0, unknownClient: 0, malformed: 0, sent: 0, sendErrors: 0 };
  let socket: Socket | undefined;

  function noteBad(reason: string, at: number): void {
    stats.malformed++;
    const suppressed = badLog.allow(at);
    if (suppressed >= 0) opts.logger?.warn({ reason, suppressed }, 'dhcp relay: ignored bad packet');
  }

  function onSent(err: Error | null): void {
    if (err) {
      stats.sendErrors++;
      const suppressed = badLog.allow(now());
      if (suppressed >= 0) opts.logger?.warn({ err: err.message, suppressed }, 'dhcp relay: send failed');
    } else {
      stats.sent++;
    }
  }

  function onMessage(sock: Socket, data: Buffer): void {
    stats.received++;
    const at = now();
    const decoded = decodeDhcp(data);
    if (!decoded.ok) return noteBad(decoded.reason, at);
    const msg = decoded.message;
    // Only relayed requests belong on this socket; a local broadcast is the packet transport's job.
    if (msg.op !== BOOTREQUEST || msg.giaddr === 0) {
      stats.unrelayed++;
      return;
    }
    const server = opts.registry.lookupChaddr(msg.chaddr);
    if (server === undefined) {
      stats.unknownClient++;
      return;
    }
    if (!server.admit(at)) return;
    const reply = server.handle(msg, at);
    if (reply === null || !reply.to.viaRelay) return;
    sock.send(reply.bytes, relayPort, formatIpv4(reply.to.ip), onSent);
  }

  return {
    start() {
      if (socket !== undefined) return Promise.reject(new Error('relay transport already started'));
      // No SO_REUSEADDR: sharing port 67 with another DHCP server (say a libvirt dnsmasq) must fail loudly.
      const sock = createSocket({ type: 'udp4' });
      socket = sock;
      sock.on('message', (data) => {
        try {
          onMessage(sock, data);
        } catch (e) {
          // The boundary: whatever a packet triggers, the socket keeps serving.
          const suppressed = badLog.allow(now());
          if (suppressed >= 0) opts.logger?.error({ err: errorMessage(e), suppressed }, 'dhcp relay: packet handling failed');
        }
      });
      return new Promise((resolve, reject) => {
        const onError = (e: Error) => {
          socket = undefined;
          sock.close();
          reject(e);
        };
        sock.once('error', onError);
        sock.bind(opts.port ?? DHCP_SERVER_PORT, opts.address ?? '0.0.0.0', () => {
          sock.off('error', onError);
          sock.on('error', (e) => opts.logger?.error({ err: e.message }, 'dhcp relay: socket error'));
          const a = sock.address();
          resolve({ address: a.address, port: a.port });
        });
      });
    },
    stop() {
      const sock = socket;
      socket = undefined;
      if (sock === undefined) return Promise.resolve();
      return new Promise((resolve) => sock.close(() => resolve()));
    },
    stats: () => ({ ...stats }),
  };
}

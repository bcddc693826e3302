// The set of per-interface DHCP servers keyed by client MAC, shared by the packet and relay transports.
import { AppError } from '../../lib/errors.js';
import { formatMac, parseMac, readMac } from './addr.js';
import type { DhcpServer } from './server.js';

export interface DhcpServerRegistry {
  /** Registers a server; a second server for the same MAC is a conflict, not a silent replacement. */
  add(server: DhcpServer): void;
  /** Removes the server for a MAC ('aa:bb:..' or the 48-bit key); false if none was registered. */
  remove(mac: string | number): boolean;
  lookup(mac: string | number): DhcpServer | undefined;
  /** Lookup by the first six octets of a message's chaddr, without building a string. */
  lookupChaddr(chaddr: Uint8Array): DhcpServer | undefined;
  readonly size: number;
}

function keyOf(mac: string | number): number | undefined {
  return typeof mac === 'number' ? mac : parseMac(mac);
}

export function createDhcpServerRegistry(): DhcpServerRegistry {
  const byMac = new Map<number, DhcpServer>();
  return {
    add(server) {
      if (byMac.has(server.macKey)) {
        throw new AppError('CONFLICT', `a DHCP server for ${formatMac(server.macKey)} is already registered`);
      }
      byMac.set(server.macKey, server);
    },
    remove(mac) {
      const k = keyOf(mac);
      return k !== undefined && byMac.delete(k);
    },
    lookup(mac) {
      const k = keyOf(mac);
      return k === undefined ? undefined : byMac.get(k);
    },
    lookupChaddr(chaddr) {
      return chaddr.length < 6 ? undefined : byMac.get(readMac(chaddr, 0));
    },
    get size() {
      return byMac.size;
    },
  };
}

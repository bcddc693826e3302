// Test-side builders: raw DHCP bytes written field by field (independent of the codec under test) and
// a default server configuration.
import { createDhcpServer, type DhcpEvent, type DhcpServerConfig } from '../../../../daemon/net/dhcp/server.js';

export const MAC = '52:54:00:12:34:56';
export const MAC_BYTES = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
export const OTHER_MAC_BYTES = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];
export const IP = '192.168.100.10';
export const IP_BYTES = [192, 168, 100, 10];
export const SERVER_IP = '192.168.100.1';
export const SERVER_IP_BYTES = [192, 168, 100, 1];

export interface RawMessage {
  op?: number;
  htype?: number;
  hlen?: number;
  hops?: number;
  xid?: number;
  secs?: number;
  flags?: number;
  ciaddr?: number[];
  yiaddr?: number[];
  siaddr?: number[];
  giaddr?: number[];
  chaddr?: number[];
  sname?: number[];
  file?: number[];
  cookie?: number[];
  /** Raw bytes of the options area (TLVs, PADs, END as the test wants them). */
  options?: number[];
  /** Minimum total length; zero-padded (PAD) up to it, like real clients pad to 300. */
  padTo?: number;
}

export function raw(m: RawMessage): Uint8Array {
  const len = Math.max(240 + (m.options?.length ?? 0), m.padTo ?? 0);
  const b = new Uint8Array(len);
  b[0] = m.op ?? 1;
  b[1] = m.htype ?? 1;
  b[2] = m.hlen ?? 6;
  b[3] = m.hops ?? 0;
  const xid = m.xid ?? 0x3903f326;
  b.set([(xid >>> 24) & 255, (xid >>> 16) & 255, (xid >>> 8) & 255, xid & 255], 4);
  b.set([((m.secs ?? 0) >>> 8) & 255, (m.secs ?? 0) & 255], 8);
  b.set([((m.flags ?? 0) >>> 8) & 255, (m.flags ?? 0) & 255], 10);
  b.set(m.ciaddr ?? [0, 0, 0, 0], 12);
  b.set(m.yiaddr ?? [0, 0, 0, 0], 16);
  b.set(m.siaddr ?? [0, 0, 0, 0], 20);
  b.set(m.giaddr ?? [0, 0, 0, 0], 24);
  b.set(m.chaddr ?? MAC_BYTES, 28);
  if (m.sname) b.set(m.sname, 44);
  if (m.file) b.set(m.file, 108);
  b.set(m.cookie ?? [99, 130, 83, 99], 236);
  if (m.options) b.set(m.options, 240);
  return b;
}

/** One TLV. */
export function opt(code: number, ...data: number[]): number[] {
  return [code, data.length, ...data];
}

export function ascii(s: string): number[] {
  return [...s].map((c) => c.charCodeAt(0));
}

export function testServer(extra: Partial<DhcpServerConfig> = {}) {
  const events: DhcpEvent[] = [];
  let clock = 1_700_000_000_000;
  const server = createDhcpServer({
    mac: MAC,
    ip: IP,
    prefixLength: 24,
    serverIp: SERVER_IP,
    router: SERVER_IP,
    dns: ['192.168.100.1', '9.9.9.9'],
    domainName: 'vm.example',
    hostname: 'web1',
    mtu: 1500,
    onEvent: (e) => events.push(e),
    now: () => clock,
    rateLimit: { ratePerSec: 1e9, burst: 1e9 },
    ...extra,
  });
  return {
    server,
    events,
    tick(ms: number) {
      clock += ms;
    },
    get now() {
      return clock;
    },
  };
}

export function hex(b: Uint8Array | number[]): string {
  return Buffer.from(b).toString('hex');
}

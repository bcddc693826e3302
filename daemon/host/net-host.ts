// The host side of networks that links.ts and nftables.ts do not cover: IPv4 addresses, routes, sysctls,
// STP, port isolation and VLAN sub-interfaces, through ip/sysctl (optionally inside a named netns).
import { runCommand } from './run-command.js';

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

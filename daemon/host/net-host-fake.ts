// A stateful in-memory NetHost for unit tests, on top of a Links (real or fake): addresses live on links,
// so a deleted link takes its addresses with it, as in the kernel; injected failures per step.
import { AppError } from '../lib/errors.js';
import type { Links } from './links.js';
import type { NetHost } from './net-host.js';

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

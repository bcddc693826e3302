// A stateful in-memory Links for unit tests: it keeps links, refuses what the kernel refuses (duplicate
// names, missing devices, a master that is not a bridge) with the same error codes, and can inject faults.
import { AppError } from '../lib/errors.js';
import { renderLinkOp, type LinkInfo, type LinkOp, type Links, type TapOptions } from './links.js';

export interface FakeLinks extends Links {
  /** Adds a link as if someone else made it (a physical NIC, a foreign bridge). */
  seed(link: Partial<LinkInfo> & { name: string }): void;
  /** Makes every step whose description passes `pred` fail with HOST_ERROR, e.g. s => s.includes('master'). */
  failOn(pred: ((step: string) => boolean) | undefined): void;
  /** Marks a tap as held open by a process (deleteTap then fails with EBUSY). */
  setBusy(name: string, busy: boolean): void;
  /** Every step run, in order: 'createTap X', 'deleteTap X', or an `ip -batch` line. */
  readonly log: string[];
}

export function createFakeLinks(): FakeLinks {
  const links = new Map<string, LinkInfo & { peer?: string; group?: number }>();
  const busy = new Set<string>();
  const log: string[] = [];
  let fail: ((s: string) => boolean) | undefined;
  let ifindex = 100;
  let macCounter = 1;

  const err = (msg: string, errno?: string) => new AppError('HOST_ERROR', msg, { extra: { errno, stderr: msg } });
  const step = (s: string) => {
    log.push(s);
    if (fail?.(s)) throw err(`injected failure: ${s}`, 'EIO');
  };
  const make = (name: string, kind: string | undefined, mtu = 1500): LinkInfo & { peer?: string } => ({
    name,
    ifindex: ifindex++,
    kind,
    mtu,
    master: undefined,
    up: false,
    mac: `aa:00:00:00:${((macCounter >> 8) & 255).toString(16).padStart(2, '0')}:${(macCounter++ & 255).toString(16).padStart(2, '0')}`,
  });
  const must = (name: string) => {
    const l = links.get(name);
    if (!l) throw err(`Cannot find device "${name}"`, 'ENODEV');
    return l;
  };
  const remove = (name: string) => {
    links.delete(name);
    for (const l of links.values()) if (l.master === name) l.master = undefined;
  };
  const copy = (l: LinkInfo): LinkInfo => ({ name: l.name, ifindex: l.ifindex, kind: l.kind, mtu: l.mtu, master: l.master, up: l.up, mac: l.mac });

  const applyOne = (o: LinkOp) => {
    switch (o.op) {
      case 'create-bridge':
        if (links.has(o.name)) throw err('RTNETLINK answers: File exists', 'EEXIST');
        links.set(o.name, make(o.name, 'bridge', o.mtu));
        return;
      case 'create-veth':
        if (links.has(o.name) || links.has(o.peer)) throw err('RTNETLINK answers: File exists', 'EEXIST');
        links.set(o.name, { ...make(o.name, 'veth', o.mtu), peer: o.peer });
        links.set(o.peer, { ...make(o.peer, 'veth', o.mtu), peer: o.name });
        return;
      case 'set': {
        const l = must(o.name);
        if (o.master !== undefined && o.master !== null) {
          const m = links.get(o.master);
          if (!m) throw err(`Cannot find device "${o.master}"`, 'ENODEV');
          if (m.kind !== 'bridge' || o.master === o.name) throw err('RTNETLINK answers: Operation not supported', 'EOPNOTSUPP');
        }
        if (o.mtu !== undefined) l.mtu = o.mtu;
        if (o.address !== undefined) l.mac = o.address.toLowerCase();
        if (o.master !== undefined) l.master = o.master ?? undefined;
        if (o.up !== undefined) l.up = o.up;
        if (o.group !== undefined) l.group = o.group;
        return;
      }
      case 'delete': {
        const l = must(o.name);
        remove(o.name);
        if (l.peer !== undefined) remove(l.peer);
        return;
      }
      case 'delete-group': {
        const members = [...links.values()].filter((l) => l.group === o.group);
        // Like the kernel: an empty group is ENODEV.
        if (members.length === 0) throw err('RTNETLINK answers: No such device', 'ENODEV');
        for (const l of members) {
          remove(l.name);
          if (l.peer !== undefined) remove(l.peer);
        }
        return;
      }
    }
  };

  return {
    log,
    seed(link) {
      links.set(link.name, { ...make(link.name, link.kind), ...link });
    },
    failOn(pred) {
      fail = pred;
    },
    setBusy(name, b) {
      if (b) busy.add(name);
      else busy.delete(name);
    },
    async createTap(name: string, _opts?: TapOptions) {
      step(`createTap ${name}`);
      if (name.length > 15 || name.length === 0) throw err(`create tap ${name}: Invalid argument`, 'EINVAL');
      if (links.has(name)) throw err(`create tap ${name}: File exists`, 'EEXIST');
      links.set(name, make(name, 'tap'));
    },
    async deleteTap(name) {
      step(`deleteTap ${name}`);
      const l = links.get(name);
      if (!l) return false;
      if (l.kind !== 'tap') throw err(`delete tap ${name}: Invalid argument`, 'EINVAL');
      if (busy.has(name)) throw err(`delete tap ${name}: Device or resource busy`, 'EBUSY');
      remove(name);
      return true;
    },
    async apply(ops) {
      for (const [i, o] of ops.entries()) {
        const line = renderLinkOp(o);
        try {
          step(line);
          applyOne(o);
        } catch (e) {
          const a = e as AppError;
          throw new AppError('HOST_ERROR', `ip ${line} failed: ${a.message}`, { cause: e, extra: { ...a.extra, failedIndex: i, op: o } });
        }
      }
    },
    async list(filter) {
      return [...links.values()].filter((l) => !filter || filter(l.name)).map(copy);
    },
    async get(name) {
      const l = links.get(name);
      return l ? copy(l) : undefined;
    },
  };
}

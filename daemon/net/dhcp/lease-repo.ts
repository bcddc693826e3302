// What each interface's DHCP client did (ACKs, declines, release), kept exact in memory and persisted to a
// store sublevel with coalesced writes, so a guest flooding REQUESTs or DECLINEs cannot hammer the disk.
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { KeySpace } from '../../store/store.js';
import type { LeaseSink } from './dhcp-service.js';
import type { DhcpEvent } from './server.js';

/** One interface's lease as the API shows it; times are ISO 8601 strings. */
export interface Lease {
  interface: string;
  mac: string;
  ip: string;
  /** Null when the client declined before it ever got an ACK. */
  firstAckAt: string | null;
  lastAckAt: string | null;
  acks: number;
  declines: { count: number; lastDeclineAt: string | null };
  /** Set by a RELEASE, cleared by the next ACK. */
  releasedAt: string | null;
}

/** The stored form: epoch ms, so the hot path never formats dates. */
export interface StoredLease {
  interface: string;
  mac: string;
  ip: string;
  firstAckAt: number | null;
  lastAckAt: number | null;
  acks: number;
  declines: number;
  lastDeclineAt: number | null;
  releasedAt: number | null;
}

export interface LeaseFilter {
  interface?: string;
  mac?: string;
}

export interface LeaseRepo extends LeaseSink {
  /** Loads what is stored; call once before events flow. */
  start(): Promise<void>;
  /** Writes everything still pending and stops the timers. */
  stop(): Promise<void>;
  list(filter?: LeaseFilter): Promise<Lease[]>;
  /** Forgets an interface's lease (its VM interface is gone). */
  remove(ifname: string): Promise<void>;
  /** Writes every pending change now. */
  flush(): Promise<void>;
}

export interface LeaseRepoDeps {
  leases: KeySpace<StoredLease>;
  logger?: Logger;
  /** At most one write per interface per this many ms; a new lease is written at once. Default 10 s. */
  flushIntervalMs?: number;
  now?: () => number;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function toLease(s: StoredLease): Lease {
  return {
    interface: s.interface,
    mac: s.mac,
    ip: s.ip,
    firstAckAt: iso(s.firstAckAt),
    lastAckAt: iso(s.lastAckAt),
    acks: s.acks,
    declines: { count: s.declines, lastDeclineAt: iso(s.lastDeclineAt) },
    releasedAt: iso(s.releasedAt),
  };
}

interface Entry {
  lease: StoredLease;
  /** Changed since the last write. */
  dirty: boolean;
  lastWriteAt: number;
  timer: NodeJS.Timeout | undefined;
  /** Writes of one key are chained, so an older value never lands after a newer one. */
  writing: Promise<void>;
}

export function createLeaseRepo(deps: LeaseRepoDeps): LeaseRepo {
  const interval = deps.flushIntervalMs ?? 10_000;
  const now = deps.now ?? Date.now;
  const log = deps.logger;
  const entries = new Map<string, Entry>();
  let writes = 0;
  let failedWrites = 0;

  function write(ifname: string, e: Entry): Promise<void> {
    if (e.timer !== undefined) clearTimeout(e.timer);
    e.timer = undefined;
    if (!e.dirty) return e.writing;
    e.dirty = false;
    e.lastWriteAt = now();
    const value = { ...e.lease };
    e.writing = e.writing.then(async () => {
      try {
        await deps.leases.put(ifname, value);
        writes++;
      } catch (err) {
        // The in-memory lease stays exact; the next change (or flush) writes it again.
        e.dirty = true;
        if (failedWrites++ % 100 === 0) log?.error({ ifname, err: errorMessage(err), failedWrites }, 'dhcp leases: write failed');
      }
    });
    return e.writing;
  }

  function changed(ifname: string, e: Entry, urgent: boolean): void {
    e.dirty = true;
    const wait = e.lastWriteAt + interval - now();
    if (urgent || wait <= 0) {
      void write(ifname, e);
    } else if (e.timer === undefined) {
      e.timer = setTimeout(() => void write(ifname, e), wait);
      e.timer.unref();
    }
  }

  async function flush(): Promise<void> {
    await Promise.all([...entries].map(([ifname, e]) => write(ifname, e)));
  }

  function fresh(ifname: string, ev: DhcpEvent): StoredLease {
    return { interface: ifname, mac: ev.mac, ip: ev.ip, firstAckAt: null, lastAckAt: null, acks: 0, declines: 0, lastDeclineAt: null, releasedAt: null };
  }

  return {
    async start() {
      for (const [ifname, lease] of await deps.leases.list()) {
        entries.set(ifname, { lease, dirty: false, lastWriteAt: -Infinity, timer: undefined, writing: Promise.resolve() });
      }
    },

    record(ifname, ev) {
      if (ev.type !== 'ack' && ev.type !== 'decline' && ev.type !== 'release') return;
      let e = entries.get(ifname);
      // A different MAC or address on the interface is a different lease: start over and write at once.
      let urgent = false;
      if (e === undefined || e.lease.mac !== ev.mac || e.lease.ip !== ev.ip) {
        if (ev.type === 'release') return;
        const lease = fresh(ifname, ev);
        if (e === undefined) {
          e = { lease, dirty: false, lastWriteAt: -Infinity, timer: undefined, writing: Promise.resolve() };
          entries.set(ifname, e);
        } else {
          e.lease = lease;
        }
        urgent = true;
      }
      const l = e.lease;
      if (ev.type === 'ack') {
        if (l.firstAckAt === null) urgent = true;
        l.firstAckAt ??= ev.at;
        l.lastAckAt = ev.at;
        l.acks++;
        l.releasedAt = null;
      } else if (ev.type === 'decline') {
        l.declines++;
        l.lastDeclineAt = ev.at;
      } else {
        l.releasedAt = ev.at;
      }
      changed(ifname, e, urgent);
    },

    async list(filter = {}) {
      const out: Lease[] = [];
      for (const e of entries.values()) {
        if (filter.interface !== undefined && e.lease.interface !== filter.interface) continue;
        if (filter.mac !== undefined && e.lease.mac !== filter.mac.toLowerCase()) continue;
        out.push(toLease(e.lease));
      }
      return out.sort((a, b) => (a.interface < b.interface ? -1 : a.interface > b.interface ? 1 : 0));
    },

    async remove(ifname) {
      const e = entries.get(ifname);
      entries.delete(ifname);
      if (e?.timer !== undefined) clearTimeout(e.timer);
      await e?.writing;
      await deps.leases.del(ifname);
    },

    flush,

    async stop() {
      await flush();
      log?.debug({ writes, failedWrites }, 'dhcp leases: stopped');
    },
  };
}

// The daemon's event log: every published event gets an id unique across daemon runs, the newest ones stay in
// a ring for reconnecting clients, and live subscribers get bounded queues (a slow one is dropped, never waited on).
import type { EventInput, EventSink } from './types.js';

export interface EventRecord {
  /** `<boot-epoch-ms>-<seq>`: ordered by seq within one daemon run; another run has another prefix. */
  id: string;
  type: string;
  subject: string;
  time: string;
  data?: Record<string, unknown>;
}

/** Why a subscriber got a `gap` event instead of a replay: it must re-list state. */
export type GapReason = 'too-old' | 'other-run' | 'unknown-id';

export interface SubscribeOptions {
  /** The last id the client saw (SSE Last-Event-ID): what came after it is replayed, or a `gap` is sent first. */
  lastEventId?: string;
  /** Type prefixes ('vm.', 'dhcp.ack'); none means every event. `gap` and `dropped` always pass. */
  types?: string[];
  /** Live events a subscriber may have waiting beyond its replay before it is dropped (default 256). */
  maxQueued?: number;
}

export interface EventSubscription extends AsyncIterable<EventRecord> {
  /** The next event, waiting for one; undefined once the subscription ended (closed, dropped, log closed). */
  next(): Promise<EventRecord | undefined>;
  /** Ends it at once: queued events are discarded and the subscriber count goes down. */
  close(): void;
  /** True once it was dropped for falling behind; its last event is of type `dropped`. */
  readonly dropped: boolean;
}

export interface EventLog extends EventSink {
  publish(e: EventInput): EventRecord;
  subscribe(opts?: SubscribeOptions): EventSubscription;
  subscriberCount(): number;
  /** The id of the newest event, undefined before the first. */
  lastId(): string | undefined;
  /** Ends every subscription (after what each has queued) and refuses new ones: for daemon shutdown. */
  close(): void;
}

export interface EventLogOptions {
  /** Events kept for replay (default 1000). */
  capacity?: number;
  now?: () => number;
  /** The run prefix of ids; defaults to now() at creation. */
  bootId?: number;
  /** Default SubscribeOptions.maxQueued. */
  maxQueued?: number;
}

export const DEFAULT_CAPACITY = 1000;
export const DEFAULT_MAX_QUEUED = 256;
const ID = /^(\d{1,16})-(\d{1,16})$/;

export function createEventLog(opts: EventLogOptions = {}): EventLog {
  const capacity = Math.max(1, opts.capacity ?? DEFAULT_CAPACITY);
  const now = opts.now ?? Date.now;
  const boot = String(opts.bootId ?? now());
  const defaultMaxQueued = opts.maxQueued ?? DEFAULT_MAX_QUEUED;
  // Ring: the event with sequence number s sits at ring[(s - 1) % capacity] while s > nextSeq - 1 - capacity.
  const ring: Array<EventRecord | undefined> = new Array<EventRecord | undefined>(capacity);
  let nextSeq = 1;
  let closed = false;
  const subscribers = new Set<Subscriber>();

  const oldestSeq = () => Math.max(1, nextSeq - capacity);
  const at = (seq: number) => ring[(seq - 1) % capacity]!;
  const iso = () => new Date(now()).toISOString();

  interface Subscriber {
    accepts(e: EventRecord): boolean;
    offer(e: EventRecord): void;
    end(): void;
  }

  function matcher(types: string[] | undefined): (e: EventRecord) => boolean {
    const prefixes = (types ?? []).filter((t) => t !== '');
    if (prefixes.length === 0) return () => true;
    return (e) => prefixes.some((p) => e.type.startsWith(p));
  }

  /** What a reconnecting client missed: the events after its id, or why they cannot be known. */
  function missedSince(lastEventId: string): { events: EventRecord[] } | { gap: GapReason } {
    const m = ID.exec(lastEventId);
    if (!m) return { gap: 'unknown-id' };
    if (m[1] !== boot) return { gap: 'other-run' };
    const seq = Number(m[2]);
    if (seq >= nextSeq) return { gap: 'unknown-id' };
    if (seq + 1 < oldestSeq()) return { gap: 'too-old' };
    const events: EventRecord[] = [];
    for (let s = seq + 1; s < nextSeq; s++) events.push(at(s));
    return { events };
  }

  function control(type: 'gap' | 'dropped', id: string, data: Record<string, unknown>): EventRecord {
    return { id, type, subject: 'events', time: iso(), data };
  }

  return {
    publish(input) {
      const e: EventRecord = { id: `${boot}-${nextSeq}`, type: input.type, subject: input.subject, time: iso() };
      if (input.data !== undefined) e.data = input.data;
      ring[(nextSeq - 1) % capacity] = e;
      nextSeq++;
      // Synchronous and bounded per subscriber: publishers (the DHCP path among them) never wait on a client.
      for (const s of subscribers) if (s.accepts(e)) s.offer(e);
      return e;
    },

    subscribe(sopts = {}) {
      const accepts = matcher(sopts.types);
      const queue: EventRecord[] = [];
      let head = 0;
      let ended = false;
      let dropped = false;
      let wake: ((e: EventRecord | undefined) => void) | undefined;
      // The id a reconnect resumes from: the last event this subscriber was given (or started after).
      let resumeId = sopts.lastEventId ?? (nextSeq > 1 ? `${boot}-${nextSeq - 1}` : `${boot}-0`);

      const pending = () => queue.length - head;
      const push = (e: EventRecord) => {
        if (wake) {
          const w = wake;
          wake = undefined;
          resumeId = e.id;
          w(e);
        } else {
          queue.push(e);
        }
      };

      if (sopts.lastEventId !== undefined) {
        const missed = missedSince(sopts.lastEventId);
        if ('gap' in missed) {
          const latest = nextSeq > 1 ? `${boot}-${nextSeq - 1}` : `${boot}-0`;
          // Carries the newest id, so a reconnect after the re-list resumes from here instead of gapping again.
          push(control('gap', latest, { reason: missed.gap, lastEventId: sopts.lastEventId, ...(nextSeq > 1 ? { oldestId: `${boot}-${oldestSeq()}` } : {}) }));
        } else {
          for (const e of missed.events) if (accepts(e)) push(e);
        }
      }
      const limit = pending() + (sopts.maxQueued ?? defaultMaxQueued);

      const sub: Subscriber = {
        accepts,
        offer(e) {
          if (ended) return;
          if (pending() >= limit) {
            // Falling behind: what is queued is still delivered, then one last event whose id is the last of
            // those, so a reconnect with it resumes exactly after what the client got.
            dropped = true;
            const lastQueued = pending() > 0 ? queue[queue.length - 1]!.id : resumeId;
            push(control('dropped', lastQueued, { reason: 'slow-consumer', queued: pending() }));
            sub.end();
            return;
          }
          push(e);
        },
        end() {
          ended = true;
          subscribers.delete(sub);
          if (wake && pending() === 0) {
            const w = wake;
            wake = undefined;
            w(undefined);
          }
        },
      };
      if (closed) ended = true;
      else subscribers.add(sub);

      const next = (): Promise<EventRecord | undefined> => {
        if (pending() > 0) {
          const e = queue[head++]!;
          // Compact now and then so a long-lived subscription does not keep consumed events alive.
          if (head > 64 && head * 2 > queue.length) {
            queue.splice(0, head);
            head = 0;
          }
          if (e.type !== 'dropped') resumeId = e.id;
          return Promise.resolve(e);
        }
        if (ended) return Promise.resolve(undefined);
        return new Promise((resolve) => {
          wake = resolve;
        });
      };

      return {
        next,
        close() {
          queue.length = 0;
          head = 0;
          sub.end();
        },
        get dropped() {
          return dropped;
        },
        async *[Symbol.asyncIterator]() {
          for (;;) {
            const e = await next();
            if (e === undefined) return;
            yield e;
          }
        },
      };
    },

    subscriberCount() {
      return subscribers.size;
    },

    lastId() {
      return nextSeq > 1 ? `${boot}-${nextSeq - 1}` : undefined;
    },

    close() {
      closed = true;
      for (const s of [...subscribers]) s.end();
    },
  };
}

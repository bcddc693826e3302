// ops/event-log.ts on its own: ids across runs, the ring, replay and gaps, filters, slow consumers, closing.
import { describe, expect, it } from 'vitest';
import { createEventLog, type EventRecord, type EventSubscription } from '../../../daemon/ops/event-log.js';

// A next() that lost the race below is still owed the following event: keep it for the next drain.
const outstanding = new WeakMap<EventSubscription, Promise<EventRecord | undefined>>();

/** Everything queued right now, without waiting for more. */
async function drain(sub: EventSubscription): Promise<EventRecord[]> {
  const out: EventRecord[] = [];
  for (;;) {
    const p = outstanding.get(sub) ?? sub.next();
    outstanding.delete(sub);
    const e = await Promise.race([p, new Promise<'none'>((r) => setImmediate(() => r('none')))]);
    if (e === 'none') {
      outstanding.set(sub, p);
      return out;
    }
    if (e === undefined) return out;
    out.push(e);
  }
}

const ev = (i: number, type = 'vm.started') => ({ type, subject: `vms/v${i}`, data: { i } });

describe('event log', () => {
  it('assigns ids <boot>-<seq>, increasing, with the time and the input', () => {
    const log = createEventLog({ bootId: 1700000000000, now: () => Date.parse('2026-01-01T00:00:00.000Z') });
    expect(log.lastId()).toBeUndefined();
    const a = log.publish(ev(1));
    const b = log.publish({ type: 'dhcp.ack', subject: 'interfaces/nvtap1' });
    expect(a).toEqual({ id: '1700000000000-1', type: 'vm.started', subject: 'vms/v1', time: '2026-01-01T00:00:00.000Z', data: { i: 1 } });
    expect(b.id).toBe('1700000000000-2');
    expect(b).not.toHaveProperty('data');
    expect(log.lastId()).toBe(b.id);
  });

  it('uses the creation time as the run prefix by default, so two runs never share ids', () => {
    let t = 1000;
    const first = createEventLog({ now: () => t });
    t = 2000;
    const second = createEventLog({ now: () => t });
    expect(first.publish(ev(1)).id).toBe('1000-1');
    expect(second.publish(ev(1)).id).toBe('2000-1');
  });

  it('delivers live events to every subscriber in order, waiting when there is none yet', async () => {
    const log = createEventLog();
    const a = log.subscribe();
    const b = log.subscribe();
    const waiting = a.next();
    const first = log.publish(ev(1));
    expect(await waiting).toEqual(first);
    log.publish(ev(2));
    expect((await drain(a)).map((e) => e.data?.i)).toEqual([2]);
    expect((await drain(b)).map((e) => e.data?.i)).toEqual([1, 2]);
  });

  it('filters by type prefix', async () => {
    const log = createEventLog();
    const sub = log.subscribe({ types: ['vm.', 'dhcp.ack'] });
    log.publish({ type: 'vm.started', subject: 'vms/a' });
    log.publish({ type: 'network.applied', subject: 'networks/n' });
    log.publish({ type: 'dhcp.ack', subject: 'i' });
    log.publish({ type: 'dhcp.nak', subject: 'i' });
    log.publish({ type: 'vm.stopped', subject: 'vms/a' });
    expect((await drain(sub)).map((e) => e.type)).toEqual(['vm.started', 'dhcp.ack', 'vm.stopped']);
  });

  it('replays exactly what came after Last-Event-ID, filtered, then continues live', async () => {
    const log = createEventLog({ capacity: 10 });
    const ids = [1, 2, 3, 4, 5].map((i) => log.publish(ev(i, i % 2 ? 'vm.started' : 'dhcp.ack')).id);
    const all = log.subscribe({ lastEventId: ids[1] });
    expect((await drain(all)).map((e) => e.id)).toEqual(ids.slice(2));
    const vms = log.subscribe({ lastEventId: ids[0], types: ['vm.'] });
    expect((await drain(vms)).map((e) => e.data?.i)).toEqual([3, 5]);
    const upToDate = log.subscribe({ lastEventId: ids[4] });
    expect(await drain(upToDate)).toEqual([]);
    log.publish(ev(6));
    expect((await drain(upToDate)).map((e) => e.data?.i)).toEqual([6]);
  });

  it('keeps only `capacity` events: an id older than the ring gets a gap (too-old) and then live events only', async () => {
    const log = createEventLog({ capacity: 3, bootId: 5 });
    const ids = [1, 2, 3, 4, 5].map((i) => log.publish(ev(i)).id);
    // 2 is the last one whose successors (3, 4, 5) are all still in the ring.
    expect((await drain(log.subscribe({ lastEventId: ids[1] }))).map((e) => e.data?.i)).toEqual([3, 4, 5]);
    const old = log.subscribe({ lastEventId: ids[0] });
    const got = await drain(old);
    expect(got).toEqual([{ id: '5-5', type: 'gap', subject: 'events', time: expect.any(String), data: { reason: 'too-old', lastEventId: '5-1', oldestId: '5-3' } }]);
    log.publish(ev(6));
    expect((await drain(old)).map((e) => e.data?.i)).toEqual([6]);
  });

  it('an id from another daemon run, from the future, or malformed gets a gap whatever the filter', async () => {
    const log = createEventLog({ bootId: 2000 });
    log.publish(ev(1));
    const reasons = async (lastEventId: string) => (await drain(log.subscribe({ lastEventId, types: ['dhcp.'] }))).map((e) => [e.type, e.data?.reason, e.id]);
    expect(await reasons('1000-1')).toEqual([['gap', 'other-run', '2000-1']]);
    expect(await reasons('2000-9')).toEqual([['gap', 'unknown-id', '2000-1']]);
    expect(await reasons('garbage')).toEqual([['gap', 'unknown-id', '2000-1']]);
    // Before any event the gap still carries an id a reconnect can resume from.
    expect((await drain(createEventLog({ bootId: 7 }).subscribe({ lastEventId: '6-3' })))[0]?.id).toBe('7-0');
    expect((await drain(createEventLog({ bootId: 7 }).subscribe({ lastEventId: '7-0' })))).toEqual([]);
  });

  it('drops a subscriber that falls maxQueued behind with a final `dropped` event naming where to resume; publish never waits', async () => {
    const log = createEventLog({ capacity: 100 });
    const slow = log.subscribe({ maxQueued: 5 });
    const fast = log.subscribe({ maxQueued: 5 });
    const first = log.publish(ev(0));
    expect(await fast.next()).toEqual(first);
    expect(await slow.next()).toEqual(first);
    for (let i = 1; i <= 20; i++) {
      log.publish(ev(i));
      await drain(fast);
    }
    expect(slow.dropped).toBe(true);
    expect(fast.dropped).toBe(false);
    expect(log.subscriberCount()).toBe(1);
    const got = await drain(slow);
    expect(got.map((e) => e.data?.i ?? e.type)).toEqual([1, 2, 3, 4, 5, 'dropped']);
    expect(got.at(-1)).toMatchObject({ type: 'dropped', id: got.at(-2)!.id, data: { reason: 'slow-consumer', queued: 5 } });
    expect(await slow.next()).toBeUndefined();
    // Resuming from the dropped event's id replays exactly what it did not see.
    const again = log.subscribe({ lastEventId: got.at(-1)!.id });
    expect((await drain(again)).map((e) => e.data?.i)).toEqual(Array.from({ length: 15 }, (_, i) => i + 6));
  });

  it('a replay does not count against maxQueued', async () => {
    const log = createEventLog({ capacity: 100 });
    for (let i = 1; i <= 50; i++) log.publish(ev(i));
    const sub = log.subscribe({ lastEventId: `${log.lastId()!.split('-')[0]}-0`, maxQueued: 3 });
    log.publish(ev(51));
    expect(sub.dropped).toBe(false);
    expect((await drain(sub)).length).toBe(51);
  });

  it('a subscriber waiting on next() with maxQueued 0 is woken by its dropped event', async () => {
    const log = createEventLog();
    const sub = log.subscribe({ maxQueued: 0 });
    const waiting = sub.next();
    log.publish(ev(1));
    expect((await waiting)?.type).toBe('dropped');
    expect(await sub.next()).toBeUndefined();
  });

  it('close() frees the subscription at once and wakes a waiting next() with undefined', async () => {
    const log = createEventLog();
    const a = log.subscribe();
    const b = log.subscribe();
    expect(log.subscriberCount()).toBe(2);
    const waiting = a.next();
    a.close();
    expect(await waiting).toBeUndefined();
    b.close();
    expect(log.subscriberCount()).toBe(0);
    log.publish(ev(1));
    expect(await a.next()).toBeUndefined();
  });

  it('closing the log ends every subscription after what it queued and refuses new ones', async () => {
    const log = createEventLog();
    const a = log.subscribe();
    log.publish(ev(1));
    log.close();
    expect(log.subscriberCount()).toBe(0);
    const seen: unknown[] = [];
    for await (const e of a) seen.push(e.data?.i);
    expect(seen).toEqual([1]);
    const late = log.subscribe();
    expect(log.subscriberCount()).toBe(0);
    expect(await late.next()).toBeUndefined();
  });

  it('handles many events and subscribers with bounded memory: the ring wraps, ids stay exact', async () => {
    const log = createEventLog({ capacity: 1000, bootId: 9 });
    const subs = Array.from({ length: 50 }, () => log.subscribe({ maxQueued: 100_000 }));
    const t0 = performance.now();
    for (let i = 1; i <= 20_000; i++) log.publish(ev(i));
    const ms = performance.now() - t0;
    expect(ms).toBeLessThan(5000);
    expect(log.lastId()).toBe('9-20000');
    const replay = await drain(log.subscribe({ lastEventId: '9-19000' }));
    expect(replay.map((e) => e.id)).toEqual(Array.from({ length: 1000 }, (_, i) => `9-${19001 + i}`));
    expect((await drain(log.subscribe({ lastEventId: '9-18999' })))[0]?.type).toBe('gap');
    for (const s of subs) s.close();
    expect(log.subscriberCount()).toBe(2);
  });
});

// The lease repository: exact counters in memory, coalesced writes (a flood costs one write per interval),
// decline/release semantics, filters, and a restart over a real level store.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLeaseRepo, type StoredLease } from '../../../../daemon/net/dhcp/lease-repo.js';
import type { DhcpEvent, DhcpEventType } from '../../../../daemon/net/dhcp/server.js';
import { createStore, type KeySpace } from '../../../../daemon/store/store.js';

const MAC = '52:54:00:12:34:56';
const IP = '192.168.100.10';
const T0 = Date.parse('2024-05-01T10:00:00.000Z');

/** A stateful in-memory key space that counts writes and can be told to fail. */
function memoryKeySpace() {
  const data = new Map<string, StoredLease>();
  let puts = 0;
  let failing = false;
  const ks: KeySpace<StoredLease> = {
    get: async (k) => data.get(k),
    put: async (k, v) => {
      if (failing) throw new Error('disk full');
      puts++;
      data.set(k, structuredClone(v));
    },
    del: async (k) => void data.delete(k),
    list: async () => [...data],
    batch: async () => {},
  };
  return { ks, data, puts: () => puts, fail: (f: boolean) => (failing = f) };
}

const ev = (type: DhcpEventType, at: number, mac = MAC, ip = IP): DhcpEvent => ({ type, mac, ip, at });
/** Lets chained write promises settle. */
const settle = () => new Promise<void>((r) => setImmediate(r));

afterEach(() => {
  vi.useRealTimers();
});

describe('lease repo', () => {
  it('writes a new lease at once and a flood of renewals at most once per interval, while memory stays exact', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const mem = memoryKeySpace();
    let now = T0;
    const repo = createLeaseRepo({ leases: mem.ks, flushIntervalMs: 10_000, now: () => now });
    await repo.start();
    repo.record('tap0', ev('ack', now));
    await settle();
    expect(mem.puts()).toBe(1);
    for (let i = 0; i < 5000; i++) {
      now += 1;
      repo.record('tap0', ev('ack', now));
      repo.record('tap0', ev('decline', now));
    }
    await settle();
    expect(mem.puts()).toBe(1);
    const [l] = await repo.list();
    expect(l).toMatchObject({ acks: 5001, declines: { count: 5000, lastDeclineAt: new Date(now).toISOString() }, lastAckAt: new Date(now).toISOString() });
    now = T0 + 10_000;
    vi.advanceTimersByTime(10_000);
    await settle();
    expect(mem.puts()).toBe(2);
    expect(mem.data.get('tap0')).toMatchObject({ acks: 5001, declines: 5000, lastAckAt: T0 + 5000 });
    // Nothing changed since: no more writes.
    vi.advanceTimersByTime(60_000);
    await settle();
    expect(mem.puts()).toBe(2);
    await repo.stop();
  });

  it('keeps writes per interface independent', async () => {
    const mem = memoryKeySpace();
    const repo = createLeaseRepo({ leases: mem.ks, now: () => T0 });
    await repo.start();
    repo.record('tap0', ev('ack', T0));
    repo.record('tap1', ev('ack', T0, '52:54:00:00:00:01', '192.168.100.11'));
    await settle();
    expect(mem.puts()).toBe(2);
    await repo.stop();
  });

  it('decline before any ACK, release, and the ACK after a release', async () => {
    const mem = memoryKeySpace();
    const repo = createLeaseRepo({ leases: mem.ks, now: () => T0 });
    await repo.start();
    repo.record('tap0', ev('offer', T0));
    repo.record('tap0', ev('nak', T0));
    expect(await repo.list()).toEqual([]);
    repo.record('tap0', ev('release', T0));
    expect(await repo.list()).toEqual([]);
    repo.record('tap0', ev('decline', T0));
    expect(await repo.list()).toEqual([
      { interface: 'tap0', mac: MAC, ip: IP, firstAckAt: null, lastAckAt: null, acks: 0, declines: { count: 1, lastDeclineAt: '2024-05-01T10:00:00.000Z' }, releasedAt: null },
    ]);
    repo.record('tap0', ev('ack', T0 + 1000));
    repo.record('tap0', ev('release', T0 + 2000));
    expect((await repo.list())[0]).toMatchObject({ acks: 1, firstAckAt: '2024-05-01T10:00:01.000Z', releasedAt: '2024-05-01T10:00:02.000Z' });
    repo.record('tap0', ev('ack', T0 + 3000));
    expect((await repo.list())[0]).toMatchObject({ acks: 2, firstAckAt: '2024-05-01T10:00:01.000Z', lastAckAt: '2024-05-01T10:00:03.000Z', releasedAt: null });
    await repo.stop();
    expect(mem.data.get('tap0')).toMatchObject({ acks: 2, declines: 1, releasedAt: null });
  });

  it('another MAC or address on the interface starts a new lease', async () => {
    const mem = memoryKeySpace();
    const repo = createLeaseRepo({ leases: mem.ks, now: () => T0 });
    await repo.start();
    repo.record('tap0', ev('ack', T0));
    repo.record('tap0', ev('ack', T0 + 1));
    repo.record('tap0', ev('ack', T0 + 5, '52:54:00:99:99:99'));
    expect(await repo.list()).toMatchObject([{ mac: '52:54:00:99:99:99', acks: 1, firstAckAt: new Date(T0 + 5).toISOString() }]);
    await settle();
    expect(mem.data.get('tap0')?.mac).toBe('52:54:00:99:99:99');
    await repo.stop();
  });

  it('filters by interface and MAC (any case) and sorts by interface', async () => {
    const repo = createLeaseRepo({ leases: memoryKeySpace().ks, now: () => T0 });
    await repo.start();
    repo.record('tap2', ev('ack', T0, '52:54:00:00:00:02', '10.0.0.2'));
    repo.record('tap1', ev('ack', T0, '52:54:00:00:00:01', '10.0.0.1'));
    expect((await repo.list()).map((l) => l.interface)).toEqual(['tap1', 'tap2']);
    expect((await repo.list({ interface: 'tap2' })).map((l) => l.ip)).toEqual(['10.0.0.2']);
    expect((await repo.list({ mac: '52:54:00:00:00:01' })).map((l) => l.interface)).toEqual(['tap1']);
    expect(await repo.list({ interface: 'tap1', mac: '52:54:00:00:00:02' })).toEqual([]);
    await repo.remove('tap1');
    expect((await repo.list()).map((l) => l.interface)).toEqual(['tap2']);
    await repo.stop();
  });

  it('a failed write is retried by the next flush and never throws into the packet path', async () => {
    const mem = memoryKeySpace();
    const repo = createLeaseRepo({ leases: mem.ks, now: () => T0 });
    await repo.start();
    mem.fail(true);
    expect(() => repo.record('tap0', ev('ack', T0))).not.toThrow();
    await settle();
    expect(mem.data.size).toBe(0);
    mem.fail(false);
    await repo.flush();
    expect(mem.data.get('tap0')).toMatchObject({ acks: 1 });
    await repo.stop();
  });

  it('survives a restart over a real level store, including changes still pending at stop', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nodevirt-leases-'));
    try {
      let store = createStore({ stateDir: dir });
      await store.open();
      let now = T0;
      let repo = createLeaseRepo({ leases: store.sublevel<StoredLease>('dhcp-leases'), now: () => now });
      await repo.start();
      repo.record('tap0', ev('ack', now));
      now += 500;
      repo.record('tap0', ev('ack', now)); // coalesced: only stop() writes it
      await repo.stop();
      await store.close();

      store = createStore({ stateDir: dir });
      await store.open();
      repo = createLeaseRepo({ leases: store.sublevel<StoredLease>('dhcp-leases') });
      await repo.start();
      expect(await repo.list()).toEqual([
        { interface: 'tap0', mac: MAC, ip: IP, firstAckAt: '2024-05-01T10:00:00.000Z', lastAckAt: '2024-05-01T10:00:00.500Z', acks: 2, declines: { count: 0, lastDeclineAt: null }, releasedAt: null },
      ]);
      await repo.stop();
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

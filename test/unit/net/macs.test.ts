// MAC validation and the node-unique allocator, over a real store in a temp dir.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError } from '../../../daemon/lib/errors.js';
import { createMacAllocator, macNodeId, nodeMac, parseMac, validateMac, type MacRecord } from '../../../daemon/net/macs.js';
import { createStore, type Store } from '../../../daemon/store/store.js';

let dir: string;
let store: Store;
let space = 0;
const macSpace = () => store.sublevel<MacRecord>(`macs${space++}`);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-macs-'));
  store = createStore({ stateDir: dir });
  await store.open();
});
afterAll(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isAppError(e) ? e.code : 'not-an-AppError';
  }
  return undefined;
}

describe('validateMac', () => {
  it('canonicalises usable unicast MACs', () => {
    expect(validateMac('52:54:00:AB:cd:01')).toBe('52:54:00:ab:cd:01');
    expect(validateMac('02-00-00-00-00-01')).toBe('02:00:00:00:00:01');
  });

  it('rejects garbage, all-zero, multicast and broadcast', () => {
    for (const bad of ['', 'zz:00:00:00:00:00', '52:54:00:ab:cd', '52:54:00:ab:cd:01:02', '5254.00ab.cd01', '00:00:00:00:00:00', '01:00:5e:00:00:01', '33:33:00:00:00:01', 'ff:ff:ff:ff:ff:ff']) {
      expect(codeOf(() => validateMac(bad)), bad).toBe('MAC_INVALID');
    }
  });
});

describe('node MAC layout', () => {
  it('is locally administered unicast with the node id in bytes 1-2', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: (1 << 24) - 1 }), (node, suffix) => {
        const mac = nodeMac(node, suffix);
        const b = parseMac(mac)!;
        expect(b[0]! & 0x02).toBe(0x02);
        expect(b[0]! & 0x01).toBe(0);
        expect(validateMac(mac)).toBe(mac);
        expect(macNodeId(mac)).toBe(node);
      }),
    );
  });

  it('never collides across nodes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: (1 << 24) - 1 }), (a, b, s) => {
        fc.pre(a !== b);
        expect(nodeMac(a, s)).not.toBe(nodeMac(b, s));
      }),
    );
  });

  it('refuses node ids and suffixes out of range', () => {
    expect(() => nodeMac(0x10000, 0)).toThrow();
    expect(() => nodeMac(-1, 0)).toThrow();
    expect(() => nodeMac(0, 1 << 24)).toThrow();
    expect(macNodeId('52:54:00:00:00:01')).toBeUndefined();
  });
});

describe('MAC allocator', () => {
  it('allocates distinct MACs on this node and records their owners', async () => {
    const macs = macSpace();
    const alloc = createMacAllocator({ macs, nodeId: 7 });
    const got = await Promise.all(Array.from({ length: 200 }, (_, i) => alloc.allocate(`vm/${i}`)));
    expect(new Set(got).size).toBe(200);
    for (const [i, mac] of got.entries()) {
      expect(macNodeId(mac)).toBe(7);
      expect(await alloc.ownerOf(mac)).toBe(`vm/${i}`);
    }
    expect((await macs.list()).length).toBe(200);
  });

  it('skips a random pick that is taken, even under concurrent allocation', async () => {
    // Every caller draws the same suffixes 5, 5, 6, 6, 7...: uniqueness has to come from the store check.
    let n = 0;
    const alloc = createMacAllocator({ macs: macSpace(), nodeId: 1, random: () => 5 + Math.floor(n++ / 2) });
    const got = await Promise.all([alloc.allocate('a'), alloc.allocate('b'), alloc.allocate('c')]);
    expect(new Set(got).size).toBe(3);
  });

  it('reserves a user MAC, refuses it to another owner with MAC_IN_USE, and is idempotent', async () => {
    const alloc = createMacAllocator({ macs: macSpace(), nodeId: 0 });
    expect(await alloc.reserve('52:54:00:AA:BB:CC', 'vm1/nic0')).toBe('52:54:00:aa:bb:cc');
    expect(await alloc.reserve('52:54:00:aa:bb:cc', 'vm1/nic0')).toBe('52:54:00:aa:bb:cc');
    const err = await alloc.reserve('52-54-00-aa-bb-cc', 'vm2/nic0').catch((e: unknown) => e);
    expect(isAppError(err, 'MAC_IN_USE')).toBe(true);
    const bad = await alloc.reserve('ff:ff:ff:ff:ff:ff', 'vm2/nic0').catch((e: unknown) => e);
    expect(isAppError(bad, 'MAC_INVALID')).toBe(true);
  });

  it('a daemon-assigned MAC cannot be claimed by a user for another NIC', async () => {
    const alloc = createMacAllocator({ macs: macSpace(), nodeId: 3 });
    const mac = await alloc.allocate('vm1/nic0');
    expect(isAppError(await alloc.reserve(mac.toUpperCase(), 'vm2/nic0').catch((e: unknown) => e), 'MAC_IN_USE')).toBe(true);
  });

  it('release frees a MAC, but not when a different owner asks', async () => {
    const alloc = createMacAllocator({ macs: macSpace(), nodeId: 0 });
    await alloc.reserve('02:00:00:00:00:01', 'a');
    await alloc.release('02:00:00:00:00:01', 'b');
    expect(await alloc.ownerOf('02:00:00:00:00:01')).toBe('a');
    await alloc.release('02:00:00:00:00:01', 'a');
    expect(await alloc.ownerOf('02:00:00:00:00:01')).toBeUndefined();
    expect(await alloc.reserve('02:00:00:00:00:01', 'b')).toBe('02:00:00:00:00:01');
    await alloc.release('not a mac');
  });

  it('survives a reopen: records are in the store, not in memory', async () => {
    const macs = macSpace();
    const mac = await createMacAllocator({ macs, nodeId: 9 }).allocate('x');
    const again = createMacAllocator({ macs, nodeId: 9 });
    expect(await again.ownerOf(mac)).toBe('x');
    expect(isAppError(await again.reserve(mac, 'y').catch((e: unknown) => e), 'MAC_IN_USE')).toBe(true);
  });

  it('refuses a node id outside 16 bits at construction', () => {
    expect(() => createMacAllocator({ macs: macSpace(), nodeId: 70000 })).toThrow(/node id/);
  });
});

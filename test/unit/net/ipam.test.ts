// IPAM: pool description (/8../32), address checks and the persisted allocator, with property tests over
// random operation sequences against a real store.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError, type ErrorCode } from '../../../daemon/lib/errors.js';
import { checkAddress, createIpam, describePool, formatIpv4, lowestFree, parseIpv4, type IpamEntry, type SubnetSpec } from '../../../daemon/net/ipam.js';
import { createStore, type Store } from '../../../daemon/store/store.js';

let dir: string;
let store: Store;
let space = 0;
const fresh = (subnet: SubnetSpec) => {
  const entries = store.sublevel<IpamEntry>(`ipam${space++}`);
  return { entries, ipam: createIpam({ entries, subnet }) };
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-ipam-'));
  store = createStore({ stateDir: dir });
  await store.open();
});
afterAll(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<ErrorCode | 'none' | 'not-app'> {
  try {
    await (typeof p === 'function' ? p() : p);
    return 'none';
  } catch (e) {
    return isAppError(e) ? e.code : 'not-app';
  }
}

describe('addresses', () => {
  it('parses and formats dotted quads, refusing ambiguity', () => {
    expect(parseIpv4('10.0.0.1')).toBe(0x0a000001);
    expect(parseIpv4('255.255.255.255')).toBe(0xffffffff);
    expect(formatIpv4(0xc0a80101)).toBe('192.168.1.1');
    for (const bad of ['10.0.0', '10.0.0.256', '010.0.0.1', ' 10.0.0.1', '1.2.3.4.5', 'a.b.c.d', '']) expect(parseIpv4(bad), bad).toBeUndefined();
  });
});

describe('describePool', () => {
  it('excludes network and broadcast for prefix <= 30', () => {
    const p = describePool({ cidr: '10.0.0.0/30', gateway: '10.0.0.1' });
    expect([p.first, p.last].map(formatIpv4)).toEqual(['10.0.0.1', '10.0.0.2']);
    expect(formatIpv4(lowestFree(p, new Set())!)).toBe('10.0.0.2');
  });

  it('/31 has two usable addresses, /32 one, and the gateway may lie outside', () => {
    const p31 = describePool({ cidr: '10.0.0.4/31', gateway: '10.0.0.4' });
    expect(formatIpv4(lowestFree(p31, new Set())!)).toBe('10.0.0.5');
    const p32 = describePool({ cidr: '10.0.0.9/32', gateway: '169.254.0.1' });
    expect(formatIpv4(lowestFree(p32, new Set())!)).toBe('10.0.0.9');
    expect(lowestFree(p32, new Set([parseIpv4('10.0.0.9')!]))).toBeUndefined();
  });

  it('refuses malformed subnets with SUBNET_INVALID', async () => {
    for (const bad of [
      { cidr: '10.0.0.1/24' },
      { cidr: '10.0.0.0' },
      { cidr: '10.0.0.0/33' },
      { cidr: '10.0.0.0/24/1' },
      { cidr: '10.0.0.0/24', gateway: '10.0.1.1' },
      { cidr: '10.0.0.0/24', gateway: '10.0.0.0' },
      { cidr: '10.0.0.0/24', gateway: '10.0.0.255' },
      { cidr: '10.0.0.0/24', reserved: [{ from: '10.0.0.9', to: '10.0.0.3' }] },
      { cidr: '10.0.0.0/24', reserved: [{ from: '10.0.0.9', to: '10.0.1.3' }] },
    ]) {
      expect(await codeOf(() => describePool(bad)), JSON.stringify(bad)).toBe('SUBNET_INVALID');
    }
  });

  it('skips reserved ranges and the gateway', () => {
    const p = describePool({ cidr: '10.0.0.0/24', gateway: '10.0.0.1', reserved: [{ from: '10.0.0.2', to: '10.0.0.9' }, { from: '10.0.0.11', to: '10.0.0.11' }] });
    expect(formatIpv4(lowestFree(p, new Set())!)).toBe('10.0.0.10');
    expect(formatIpv4(lowestFree(p, new Set([parseIpv4('10.0.0.10')!]))!)).toBe('10.0.0.12');
  });

  it('finds the lowest free address of a /8 with a huge reserved range quickly', () => {
    const p = describePool({ cidr: '10.0.0.0/8', gateway: '10.0.0.1', reserved: [{ from: '10.0.0.2', to: '10.254.255.255' }] });
    expect(formatIpv4(lowestFree(p, new Set())!)).toBe('10.255.0.0');
  });

  it('names why an address cannot be used', () => {
    const p = describePool({ cidr: '192.168.5.0/24', gateway: '192.168.5.1', reserved: [{ from: '192.168.5.200', to: '192.168.5.210' }] });
    expect(checkAddress(p, '192.168.6.1')?.code).toBe('IP_OUT_OF_SUBNET_INVALID');
    expect(checkAddress(p, 'x')?.code).toBe('IP_OUT_OF_SUBNET_INVALID');
    expect(checkAddress(p, '192.168.5.0')?.message).toMatch(/network address/);
    expect(checkAddress(p, '192.168.5.255')?.message).toMatch(/broadcast address/);
    expect(checkAddress(p, '192.168.5.1')?.message).toMatch(/gateway/);
    expect(checkAddress(p, '192.168.5.205')?.code).toBe('IP_RESERVED_INVALID');
    expect(checkAddress(p, '192.168.5.2')).toBeUndefined();
  });
});

describe('allocator', () => {
  it('allocates lowest free, is idempotent per owner, releases and reuses', async () => {
    const { ipam } = fresh({ cidr: '10.1.0.0/29', gateway: '10.1.0.1' });
    expect(await ipam.allocate('a')).toBe('10.1.0.2');
    expect(await ipam.allocate('b')).toBe('10.1.0.3');
    expect(await ipam.allocate('a')).toBe('10.1.0.2');
    await ipam.release('a');
    expect(await ipam.addressOf('a')).toBeUndefined();
    expect(await ipam.allocate('c')).toBe('10.1.0.2');
    await ipam.release('nobody');
  });

  it('reserves requested addresses with 400/409 codes', async () => {
    const { ipam } = fresh({ cidr: '10.2.0.0/24', gateway: '10.2.0.1' });
    expect(await ipam.reserve('10.2.0.50', 'a')).toBe('10.2.0.50');
    expect(await ipam.reserve('10.2.0.50', 'a')).toBe('10.2.0.50');
    expect(await codeOf(ipam.reserve('10.2.0.50', 'b'))).toBe('IP_IN_USE');
    expect(await codeOf(ipam.reserve('10.2.1.50', 'b'))).toBe('IP_OUT_OF_SUBNET_INVALID');
    expect(await codeOf(ipam.reserve('10.2.0.1', 'b'))).toBe('IP_RESERVED_INVALID');
    expect(await codeOf(ipam.reserve('10.2.0.0', 'b'))).toBe('IP_RESERVED_INVALID');
    expect(await codeOf(ipam.reserve('10.2.0.255', 'b'))).toBe('IP_RESERVED_INVALID');
    // Moving an owner frees its old address in the same batch.
    expect(await ipam.reserve('10.2.0.51', 'a')).toBe('10.2.0.51');
    expect(await ipam.ownerOf('10.2.0.50')).toBeUndefined();
    expect(await ipam.list()).toEqual([{ ip: '10.2.0.51', owner: 'a' }]);
  });

  it('reports exhaustion as IP_POOL_EXHAUSTED_CONFLICT', async () => {
    const { ipam } = fresh({ cidr: '10.3.0.0/30', gateway: '10.3.0.1' });
    await ipam.allocate('a');
    expect(await codeOf(ipam.allocate('b'))).toBe('IP_POOL_EXHAUSTED_CONFLICT');
  });

  it('keeps state in the store: a second allocator over the same sublevel sees it', async () => {
    const { entries, ipam } = fresh({ cidr: '10.4.0.0/24', gateway: '10.4.0.1' });
    await ipam.allocate('a');
    const again = createIpam({ entries, subnet: { cidr: '10.4.0.0/24', gateway: '10.4.0.1' } });
    expect(await again.allocate('b')).toBe('10.4.0.3');
    expect(await codeOf(again.reserve('10.4.0.2', 'c'))).toBe('IP_IN_USE');
  });

  type Op = { kind: 'alloc'; owner: number } | { kind: 'release'; owner: number } | { kind: 'reserve'; owner: number; host: number };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('alloc' as const), owner: fc.nat(12) }),
    fc.record({ kind: fc.constant('release' as const), owner: fc.nat(12) }),
    fc.record({ kind: fc.constant('reserve' as const), owner: fc.nat(12), host: fc.nat(17) }),
  );
  const subnetArb = fc.constantFrom<SubnetSpec>(
    { cidr: '10.9.0.0/28', gateway: '10.9.0.1' },
    { cidr: '10.9.0.0/28', gateway: '10.9.0.14', reserved: [{ from: '10.9.0.4', to: '10.9.0.6' }] },
    { cidr: '10.9.0.8/29' },
    { cidr: '10.9.0.2/31', gateway: '10.9.0.2' },
    { cidr: '10.9.0.7/32' },
  );

  it('property: no two owners share an address, nothing reserved is handed out, release then allocate reuses', async () => {
    await fc.assert(
      fc.asyncProperty(subnetArb, fc.array(opArb, { maxLength: 40 }), async (subnet, ops) => {
        const { ipam } = fresh(subnet);
        const pool = ipam.pool;
        const model = new Map<number, string>();
        for (const op of ops) {
          const owner = `nic${op.owner}`;
          if (op.kind === 'alloc') {
            const had = model.get(op.owner);
            const ip = await ipam.allocate(owner).catch((e: unknown) => (isAppError(e, 'IP_POOL_EXHAUSTED_CONFLICT') ? undefined : Promise.reject(e)));
            if (ip === undefined) {
              expect(had).toBeUndefined();
              expect(lowestFree(pool, new Set([...model.values()].map((v) => parseIpv4(v)!)))).toBeUndefined();
            } else {
              if (had !== undefined) expect(ip).toBe(had);
              // Lowest free: every lower allocatable address is taken by someone else.
              const n = parseIpv4(ip)!;
              const others = new Set([...model.entries()].filter(([o]) => o !== op.owner).map(([, v]) => parseIpv4(v)!));
              if (had === undefined) expect(lowestFree(pool, others)).toBe(n);
              model.set(op.owner, ip);
            }
          } else if (op.kind === 'release') {
            await ipam.release(owner);
            model.delete(op.owner);
          } else {
            const ip = formatIpv4(pool.network + op.host);
            const code = await codeOf(ipam.reserve(ip, owner));
            const holder = [...model.entries()].find(([, v]) => v === ip)?.[0];
            const why = checkAddress(pool, ip)?.code;
            if (why) expect(code).toBe(why);
            else if (holder !== undefined && holder !== op.owner) expect(code).toBe('IP_IN_USE');
            else {
              expect(code).toBe('none');
              model.set(op.owner, ip);
            }
          }
          // Invariants after every step, read back from the store.
          const list = await ipam.list();
          const ips = list.map((e) => e.ip);
          expect(new Set(ips).size).toBe(ips.length);
          for (const ip of ips) expect(checkAddress(pool, ip)).toBeUndefined();
          expect(new Map(list.map((e) => [e.owner, e.ip]))).toEqual(new Map([...model.entries()].map(([o, ip]) => [`nic${o}`, ip])));
        }
      }),
      { numRuns: 60 },
    );
  });

  it('property: concurrent allocations never collide', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 30 }), async (n) => {
        const { ipam } = fresh({ cidr: '10.8.0.0/27', gateway: '10.8.0.1' });
        const got = await Promise.all(Array.from({ length: n }, (_, i) => ipam.allocate(`o${i}`).catch(() => undefined)));
        const ok = got.filter((x): x is string => x !== undefined);
        expect(new Set(ok).size).toBe(ok.length);
        expect(ok.length).toBe(Math.min(n, 29));
      }),
      { numRuns: 20 },
    );
  });
});

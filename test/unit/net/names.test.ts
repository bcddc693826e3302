// Kernel names: shape, determinism, distinctness and the isOurs predicate the leak sweeps rely on.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  bridgeName,
  IFNAME_MAX,
  isOurs,
  kernelName,
  kindOf,
  NAME_KINDS,
  nftChainName,
  pickName,
  tapName,
  vethNames,
  vlanName,
  type NameKind,
} from '../../../daemon/net/names.js';

describe('names', () => {
  it('makes short prefixed names, stable for the same ids', () => {
    const t = tapName('vm-1', 'nic0');
    expect(t).toMatch(/^nvt[a-z2-7]{10}$/);
    expect(t.length).toBeLessThanOrEqual(IFNAME_MAX);
    expect(tapName('vm-1', 'nic0')).toBe(t);
    expect(bridgeName('net-a')).toMatch(/^nvb[a-z2-7]{10}$/);
    const v = vethNames('x');
    expect(v.host).toMatch(/^nvv/);
    expect(v.peer).toMatch(/^nvw/);
    // VLAN sub-interfaces have a kind of their own, so a sweep can tell them from veths.
    const q = vlanName('net-a', 'eth1', 100);
    expect(q).toMatch(/^nvq[a-z2-7]{10}$/);
    expect(kindOf(q)).toBe('vlan');
    expect(vlanName('net-a', 'eth1', 101)).not.toBe(q);
    expect(vlanName('net-a', 'eth2', 100)).not.toBe(q);
  });

  it('keeps id boundaries and kinds apart', () => {
    expect(tapName('ab', 'c')).not.toBe(tapName('a', 'bc'));
    expect(kernelName('tap', ['x']).slice(3)).not.toBe(kernelName('bridge', ['x']).slice(3));
    expect(tapName('vm', 'n', 1)).not.toBe(tapName('vm', 'n', 0));
  });

  it('names any ids (unicode, long, empty strings) within IFNAMSIZ and recognises them as ours', () => {
    const kinds = Object.keys(NAME_KINDS) as NameKind[];
    fc.assert(
      fc.property(fc.constantFrom(...kinds), fc.array(fc.string({ unit: 'binary' }), { minLength: 1, maxLength: 3 }), fc.nat(5), (kind, parts, attempt) => {
        const n = kernelName(kind, parts, attempt);
        expect(Buffer.byteLength(n)).toBeLessThanOrEqual(IFNAME_MAX);
        expect(isOurs(n)).toBe(true);
        expect(kindOf(n)).toBe(kind);
      }),
    );
  });

  it('does not claim anyone else\'s names', () => {
    for (const other of ['eth0', 'lo', 'virbr0', 'vnet3', 'tap0', 'nvdbr97f7', 'nvdw97f7', 'nvt', 'nvtABCDEFGHIJ', 'nvtabcdefghij0', 'nvxabcdefghij', 'xnvtabcdefghij', 'nvtabcdefgh1j']) {
      expect(isOurs(other), other).toBe(false);
      expect(kindOf(other)).toBeUndefined();
    }
  });

  it('names nft chains after our interfaces only', () => {
    const t = tapName('vm', 'n');
    expect(nftChainName(t)).toBe(t);
    expect(() => nftChainName('eth0')).toThrow(/not a nodevirt/);
  });

  it('rejects bad input', () => {
    expect(() => kernelName('tap', [])).toThrow();
    expect(() => kernelName('tap', ['a'], -1)).toThrow();
  });

  it('pickName skips names held by another owner and keeps the one held by the same owner', () => {
    const make = (a: number) => tapName('vm', 'n', a);
    const held = new Map([[make(0), 'other'], [make(1), 'other2']]);
    expect(pickName(make, 'me', (n) => held.get(n))).toBe(make(2));
    held.set(make(2), 'me');
    expect(pickName(make, 'me', (n) => held.get(n))).toBe(make(2));
    expect(() => pickName(() => 'nvtaaaaaaaaaa', 'me', () => 'other', 3)).toThrow(/after 3 attempts/);
  });
});

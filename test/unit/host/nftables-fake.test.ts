// The Nftables contract against the stateful fake, plus what the fake refuses to pretend to understand.
import { describe, expect, it } from 'vitest';
import { createFakeNftables } from '../../../daemon/host/nftables-fake.js';
import { isAppError } from '../../../daemon/lib/errors.js';
import { nftablesContract } from '../../contract/host-nftables.contract.js';

const fake = createFakeNftables();
nftablesContract('fake', () => ({ nft: fake, run: 'unit' }));

describe('fake nftables', () => {
  it('rejects syntax it does not model instead of ignoring it', async () => {
    const f = createFakeNftables();
    const err = await f.apply('add table bridge nodevirt\nadd set bridge nodevirt s { type ipv4_addr; }\n').catch((e: unknown) => e);
    expect(isAppError(err, 'HOST_ERROR')).toBe(true);
    expect(await f.listTable('bridge', 'nodevirt')).toBeUndefined();
  });

  it('injects failures without applying anything', async () => {
    const f = createFakeNftables();
    f.failOn(() => true);
    expect(isAppError(await f.apply('add table inet nodevirt\n').catch((e: unknown) => e), 'HOST_ERROR')).toBe(true);
    f.failOn(undefined);
    await f.apply('add table inet nodevirt\n');
    expect(f.batches).toHaveLength(1);
  });
});

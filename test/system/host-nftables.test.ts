// The Nftables contract against the real nft inside a fresh network namespace.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { createNftables, type Nftables } from '../../daemon/host/nftables.js';
import { nftablesContract } from '../contract/host-nftables.contract.js';
import { createTestNetns, netnsUnavailable, type TestNetns } from './helpers/netns.js';

const why = netnsUnavailable();
if (why !== undefined) {
  describe.skip(`host nftables (skipped: ${why})`, () => it('needs root', () => undefined));
} else {
  let ns: TestNetns;
  let nft: Nftables;
  beforeAll(() => {
    ns = createTestNetns('nft');
    nft = createNftables({ netns: ns.name });
  });
  afterAll(() => ns?.remove());
  nftablesContract('real, in a netns', () => ({ nft, run: ns.run }));
}

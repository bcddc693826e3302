// The Links contract against the real adapter (native taps + ip -batch) inside a fresh network namespace.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { createLinks, type Links } from '../../daemon/host/links.js';
import { linksContract } from '../contract/host-links.contract.js';
import { createTestNetns, netnsUnavailable, type TestNetns } from './helpers/netns.js';

const why = netnsUnavailable();
if (why !== undefined) {
  describe.skip(`host links (skipped: ${why})`, () => it('needs root', () => undefined));
} else {
  let ns: TestNetns;
  let links: Links;
  beforeAll(() => {
    ns = createTestNetns('links');
    links = createLinks({ netns: ns.name });
  });
  afterAll(() => ns?.remove());
  linksContract('real, in a netns', () => ({ links, run: ns.run }));
}

// What the network system tests share above the kernel helpers: the real adapters bound to one test
// namespace, and a throwaway store for the network service that works in it.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLinks } from '../../../daemon/host/links.js';
import { createNetHost } from '../../../daemon/host/net-host.js';
import { createNftables } from '../../../daemon/host/nftables.js';
import { createStore, type Store } from '../../../daemon/store/store.js';

/** links, nftables and the net host adapter, all working inside `netns`. */
export const netnsAdapters = (netns: string) => ({ links: createLinks({ netns }), nft: createNftables({ netns }), host: createNetHost({ netns }) });

/** An opened store in a new temp dir (the caller closes it and removes `dir`). */
export async function openTempStore(prefix: string): Promise<{ store: Store; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const store = createStore({ stateDir: dir });
  await store.open();
  return { store, dir };
}

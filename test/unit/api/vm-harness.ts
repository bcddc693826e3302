// A VM service for API tests: the real service over the libvirt, link and nft fakes, a DHCP service that never
// opens a socket, and a network service of its own (scoped sublevels) with an IPAM bridge network "lan".
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFakeLinks } from '../../../daemon/host/links-fake.js';
import { createFakeNftables } from '../../../daemon/host/nftables-fake.js';
import { createFakeLibvirtClient, type FakeLibvirtClient } from '../../../daemon/libvirt/fake.js';
import { createDhcpService } from '../../../daemon/net/dhcp/dhcp-service.js';
import { createMacAllocator, type MacRecord } from '../../../daemon/net/macs.js';
import { createFakeNetHost } from '../../../daemon/host/net-host-fake.js';
import { createNetworkService, type NetworkService } from '../../../daemon/net/network-service.js';
import { createNicPlumber, type NicRecord } from '../../../daemon/net/nic.js';
import { createPathGuard } from '../../../daemon/storage/paths.js';
import type { Store } from '../../../daemon/store/store.js';
import { createVmService, type VmService, type VmServiceDeps } from '../../../daemon/vm/vm-service.js';

export interface TestVms {
  vms: VmService;
  libvirt: FakeLibvirtClient;
  networks: NetworkService;
  /** Storage root holding `vmlinuz`, so kernelBoot examples resolve. */
  root: string;
}

/**
 * `rootDir`: where the storage root goes (created); default a fresh temp dir the caller removes via `root`.
 * `extra`: deps to override or add (events, a libvirt fake with other options).
 */
export function createTestVmService(store: Pick<Store, 'sublevel'>, rootDir?: string, extra: Partial<VmServiceDeps> = {}): TestVms {
  const scoped = { sublevel: <V>(n: string) => store.sublevel<V>(`vmtest:${n}`) };
  const links = createFakeLinks();
  const nft = createFakeNftables();
  const libvirt = createFakeLibvirtClient();
  void libvirt.start();
  const networks = createNetworkService({ store: scoped, adapters: { links, nft, host: createFakeNetHost(links) } });
  const root = rootDir ?? mkdtempSync(join(tmpdir(), 'nodevirt-vm-api-'));
  mkdirSync(root, { recursive: true });
  for (const f of ['vmlinuz', 'initramfs.gz']) writeFileSync(join(root, f), f);
  const vms = createVmService({
    store: scoped,
    libvirt,
    plumber: createNicPlumber({ links, nft, records: scoped.sublevel<NicRecord>('nics') }),
    networks,
    dhcp: createDhcpService({ openPacketSocket: () => Promise.reject(new Error('no sockets in API tests')) as never, link: () => undefined }),
    macs: createMacAllocator({ macs: scoped.sublevel<MacRecord>('macs'), nodeId: 1 }),
    guard: createPathGuard({ roots: [root] }),
    images: {
      inspect: async (path) => ({ path, format: 'raw', virtualSize: 1 << 20, actualSize: undefined, backingChain: [] }),
      createEmptyVolume: async (path) => ({ path, format: 'qcow2', virtualSize: 1 << 20, actualSize: undefined, backingChain: [] }),
    },
    host: async () => ({ virtType: 'qemu', emulator: '/usr/bin/qemu-system-x86_64', capacity: { cpus: 2, memoryMiB: 4096 } }),
    runDir: join(root, 'run'),
    vmDir: join(root, 'vms'),
    pollMs: 5,
    ...extra,
  });
  return { vms, libvirt, networks, root };
}

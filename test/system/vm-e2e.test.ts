// End to end through the VM service with every real adapter: a bridge network with IPAM made by the network
// service in the root namespace, the test guest (TCG, direct kernel boot) gets its IP from our DHCP server,
// pings the gateway, status shows the IP and the ACK, and delete leaves no domain, tap, guard chain or lease.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';

import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSerialOnce } from './helpers/serial.js';
import { createLinks } from '../../daemon/host/links.js';
import { openPacketSocket } from '../../daemon/host/native.js';
import { createNftables } from '../../daemon/host/nftables.js';
import { createLogger } from '../../daemon/lib/logger.js';
import { createLibvirtClient } from '../../daemon/libvirt/client.js';
import type { LibvirtClient } from '../../daemon/libvirt/types.js';
import { createDhcpService, type DhcpService } from '../../daemon/net/dhcp/dhcp-service.js';
import { createLeaseRepo, type LeaseRepo, type StoredLease } from '../../daemon/net/dhcp/lease-repo.js';
import { createMacAllocator, type MacRecord } from '../../daemon/net/macs.js';
import { createNetHost } from '../../daemon/host/net-host.js';
import { createNetworkService, type NetworkService } from '../../daemon/net/network-service.js';
import { createNicPlumber, type NicRecord } from '../../daemon/net/nic.js';
import { emulatorFromCapabilities } from '../../daemon/node/node-service.js';
import { createImageStore } from '../../daemon/storage/images.js';
import { createPathGuard } from '../../daemon/storage/paths.js';
import { createQemuImg } from '../../daemon/storage/qemu-img.js';
import { createStore, type Store } from '../../daemon/store/store.js';
import { createVmService, type VmService } from '../../daemon/vm/vm-service.js';
import { cleanupTestDomains } from '../contract/libvirt-client.contract.js';
import { testDomainName } from '../contract/test-domain.js';
import { GUEST_CMDLINE, GUEST_OUT } from '../guest/paths.js';

const BUS = '/run/dbus/system_bus_socket';
const GUEST = resolve('test/guest');
const RUN_DIR = '/run/nodevirt';
// Wide on purpose: two shared cores under TCG, and the guest waits up to its DHCP timeout.
const BOOT_TIMEOUT_MS = 120_000;

const missing = process.getuid?.() !== 0 ? 'needs root' : !existsSync(BUS) ? `no system bus at ${BUS}` : undefined;

const linkExists = (name: string) => existsSync(`/sys/class/net/${name}`);
const nftRuleset = () => execFileSync('nft', ['list', 'ruleset'], { encoding: 'utf8' });

describe.skipIf(missing !== undefined)(`a VM gets its IP from our DHCP end to end${missing ? ` (skipped: ${missing})` : ''}`, () => {
  const id = randomBytes(3).toString('hex');
  const network = `nve2e${id}`;
  const domain = testDomainName('e2e');
  // A /24 unlikely to clash with other suites running at the same time.
  const subnet = `10.${200 + (parseInt(id.slice(0, 2), 16) % 50)}.${parseInt(id.slice(2, 4), 16)}.0/24`;
  let work: string;
  let store: Store;
  let libvirt: LibvirtClient;
  let leases: LeaseRepo;
  let dhcp: DhcpService;
  let networks: NetworkService;
  let vms: VmService;
  let bridge: string | undefined;
  const taps: string[] = [];

  beforeAll(async () => {
    execFileSync('bash', [join(GUEST, 'build.sh')], { stdio: 'pipe' });
    mkdirSync(RUN_DIR, { recursive: true });
    work = mkdtempSync('/var/tmp/nvtest-e2e-');
    store = createStore({ stateDir: join(work, 'state') });
    await store.open();
    const logger = createLogger({ level: 'warn' });
    libvirt = createLibvirtClient({ busAddress: `unix:path=${BUS}`, logger });
    await libvirt.start();
    await libvirt.waitForConnection(10_000);
    leases = createLeaseRepo({ leases: store.sublevel<StoredLease>('dhcp-leases'), logger });
    await leases.start();
    dhcp = createDhcpService({ openPacketSocket, leases, logger, pollMs: 200 });
    dhcp.start();
    const links = createLinks();
    const nft = createNftables();
    const plumber = createNicPlumber({ links, nft, records: store.sublevel<NicRecord>('nics'), logger });
    networks = createNetworkService({ store, adapters: { links, nft, host: createNetHost() }, logger });
    const guard = createPathGuard({ roots: [GUEST_OUT, work] });
    const emulator = emulatorFromCapabilities(await libvirt.getCapabilities()) ?? '/usr/bin/qemu-system-x86_64';
    vms = createVmService({
      store,
      libvirt,
      plumber,
      networks,
      dhcp,
      leases,
      macs: createMacAllocator({ macs: store.sublevel<MacRecord>('macs'), nodeId: 0 }),
      guard,
      images: createImageStore({ qemuImg: createQemuImg(), guard }),
      host: async () => ({ virtType: 'qemu', emulator, capacity: { cpus: cpus().length, memoryMiB: Math.floor(totalmem() / 2 ** 20) } }),
      runDir: RUN_DIR,
      vmDir: join(work, 'vms'),
      domainName: () => domain,
      logger,
      pollMs: 200,
    });
  });

  afterAll(async () => {
    // Whatever a failed assertion left behind: the VM through the service first, then by name.
    await vms?.delete('e2e').catch(() => undefined);
    if (libvirt) {
      await cleanupTestDomains(libvirt, [domain]);
      await libvirt.stop();
    }
    await networks?.delete(network).catch(() => undefined);
    for (const t of taps) if (linkExists(t)) execFileSync('ip', ['link', 'del', t], { stdio: 'ignore' });
    if (bridge && linkExists(bridge)) execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    dhcp?.stop();
    await leases?.stop();
    await store?.close();
    if (work) rmSync(work, { recursive: true, force: true });
    rmSync(join(RUN_DIR, `${domain}.serial`), { force: true });
  });

  it('PUT + start: the guest gets the allocated IP from our DHCP, pings the gateway; status shows IP and dhcpAcked; delete leaves nothing', async () => {
    await networks.put(network, { type: 'bridge', ipam: { subnet } });
    const att = await networks.nicAttachment(network);
    bridge = att.bridge!;
    // A bridge network's gateway is the LAN's router; here the host plays it, so the guest's ping has an answer.
    execFileSync('ip', ['addr', 'add', `${att.ipam!.gateway}/${att.ipam!.prefixLength}`, 'dev', bridge]);

    const put = await vms.put('e2e', {
      name: 'e2e',
      memory: 256,
      machine: 'q35',
      interfaces: [{ network }],
      kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz'), cmdline: `${GUEST_CMDLINE} nodevirt.stay=1` },
    });
    const ip = put.vm.status.nics[0]!.ip!;
    const mac = put.vm.status.nics[0]!.mac;
    expect(ip).toMatch(/^10\.\d+\.\d+\.\d+$/);

    const t0 = performance.now();
    const started = await vms.start('e2e');
    const tap = started.status.nics[0]!.tap!;
    taps.push(tap);
    expect(started.status.phase).toBe('Running');
    const text = await readSerialOnce(join(RUN_DIR, `${domain}.serial`), /NODEVIRT-GUEST-READY/, BOOT_TIMEOUT_MS);
    console.info(`e2e guest: start -> READY in ${Math.round(performance.now() - t0)} ms (tap ${tap}, ${ip} on ${bridge})`);
    const dhcpLine = text.split('\n').find((l) => l.startsWith('NODEVIRT-DHCP'));
    expect(dhcpLine, text).toMatch(new RegExp(`mac=${mac} .*status=ok .*ip=${ip.replace(/\./g, '\\.')}(\\s|$)`));
    const pingLine = text.split('\n').find((l) => l.startsWith('NODEVIRT-PING'));
    expect(pingLine, text).toContain(`target=${att.ipam!.gateway} status=ok`);

    const got = await vms.get('e2e');
    expect(got.status.phase).toBe('Running');
    expect(got.status.nics[0]).toMatchObject({ ip, mac, tap, dhcpAcked: true });
    expect(nftRuleset()).toContain(tap);

    await vms.delete('e2e');
    expect(await libvirt.lookupDomain(domain)).toBeUndefined();
    expect(linkExists(tap)).toBe(false);
    expect(nftRuleset()).not.toContain(tap);
    expect(await leases.list({ interface: tap })).toEqual([]);
    expect(dhcp.status().filter((s) => s.ifname === tap)).toEqual([]);
    expect(await (await networks.ipam(network)).list()).toEqual([]);
    // With no NIC left the network can go too.
    await networks.delete(network);
    expect(linkExists(bridge)).toBe(false);
  });
});

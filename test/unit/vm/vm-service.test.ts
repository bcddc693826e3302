// The VM service over the stateful libvirt fake, the link and nft fakes (through the real NIC plumber and
// network service), a real DHCP service that never opens a socket and a real store: idempotent PUT,
// server-made MACs/IPs in status, dry run, start/stop/delete and what each leaves behind.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeLinks } from '../../../daemon/host/links-fake.js';
import { createFakeNftables } from '../../../daemon/host/nftables-fake.js';
import { isAppError } from '../../../daemon/lib/errors.js';
import { createFakeLibvirtClient } from '../../../daemon/libvirt/fake.js';
import { createDhcpService } from '../../../daemon/net/dhcp/dhcp-service.js';
import { createLeaseRepo, type StoredLease } from '../../../daemon/net/dhcp/lease-repo.js';
import { createMacAllocator, type MacRecord } from '../../../daemon/net/macs.js';
import { createFakeNetHost } from '../../../daemon/host/net-host-fake.js';
import { createNetworkService } from '../../../daemon/net/network-service.js';
import { createNicPlumber, type NicRecord } from '../../../daemon/net/nic.js';
import { createPathGuard } from '../../../daemon/storage/paths.js';
import { createStore, type Store } from '../../../daemon/store/store.js';
import type { ImageFacts } from '../../../daemon/storage/images.js';
import { createVmService, vmEtag } from '../../../daemon/vm/vm-service.js';
import type { VmSpec } from '../../../daemon/vm/vm-model.js';
import type { EventInput } from '../../../daemon/ops/types.js';

let dir: string;
let store: Store;
let space = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-vms-'));
  store = createStore({ stateDir: join(dir, 'state') });
  await store.open();
  await mkdir(join(dir, 'root', 'guest'), { recursive: true });
  await writeFile(join(dir, 'root', 'guest', 'vmlinuz'), 'kernel');
  await writeFile(join(dir, 'root', 'guest', 'initrd'), 'initrd');
});
afterAll(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

async function setup(opts: { guestHonoursAcpi?: boolean } = {}) {
  const published: EventInput[] = [];
  const sub = `t${space++}`;
  const scoped = { sublevel: <V>(n: string) => store.sublevel<V>(`${sub}:${n}`) };
  const links = createFakeLinks();
  const nft = createFakeNftables();
  const libvirt = createFakeLibvirtClient(opts);
  await libvirt.start();
  const plumber = createNicPlumber({ links, nft, records: scoped.sublevel<NicRecord>('nics') });
  const networks = createNetworkService({ store: scoped, adapters: { links, nft, host: createFakeNetHost(links) } });
  await networks.put('lan', { type: 'bridge', ipam: { subnet: '192.168.10.0/24' } });
  await networks.put('plain', { type: 'bridge' });
  const leases = createLeaseRepo({ leases: scoped.sublevel<StoredLease>('leases') });
  await leases.start();
  // No link is ever found, so no packet socket opens: the service only keeps the attachments.
  const dhcp = createDhcpService({ openPacketSocket: () => Promise.reject(new Error('no sockets in unit tests')) as never, leases, link: () => undefined });
  const macs = createMacAllocator({ macs: scoped.sublevel<MacRecord>('macs'), nodeId: 7 });
  const root = join(dir, 'root');
  const deps: Parameters<typeof createVmService>[0] = {
    store: scoped,
    libvirt,
    plumber,
    networks,
    dhcp,
    leases,
    macs,
    guard: createPathGuard({ roots: [root] }),
    images: {
      inspect: async (path: string) => ({ path, format: 'raw', virtualSize: 1 << 20, actualSize: undefined, backingChain: [] }) satisfies ImageFacts,
      createEmptyVolume: async (path: string) => ({ path, format: 'qcow2', virtualSize: 1 << 20, actualSize: undefined, backingChain: [] }),
    },
    host: async () => ({ virtType: 'qemu', emulator: '/usr/bin/qemu-system-x86_64', capacity: { cpus: 2, memoryMiB: 4096 } }),
    runDir: join(dir, 'run'),
    vmDir: join(root, `vms-${sub}`),
    pollMs: 5,
    events: { publish: (e) => void published.push(e) },
  };
  const vms = createVmService(deps);
  return { links, nft, libvirt, plumber, networks, dhcp, leases, macs, vms, scoped, deps, published };
}

const spec = (over: Partial<VmSpec> = {}): VmSpec => ({
  name: 'web',
  memory: 256,
  kernelBoot: { kernel: 'guest/vmlinuz', initrd: 'guest/initrd', cmdline: 'console=ttyS0' },
  interfaces: [{ network: 'lan' }],
  ...over,
});

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return isAppError(e) ? e.code : String(e);
  }
  return 'no error';
}

describe('PUT', () => {
  it('creates with a server-made MAC and IP in status; the same spec again is a no-op at the same generation', async () => {
    const { vms, libvirt } = await setup();
    const first = await vms.put('web', spec());
    expect(first).toMatchObject({ created: true, changed: true, dryRun: false });
    expect(first.vm.generation).toBe(1);
    expect(first.vm.spec).toEqual(spec());
    const nic = first.vm.status.nics[0]!;
    expect(nic).toMatchObject({ name: 'net0', network: 'lan', ip: '192.168.10.2', tap: null, dhcpAcked: false });
    expect(nic.mac).toMatch(/^0e:00:07(:[0-9a-f]{2}){3}$/);
    expect(first.vm.status.phase).toBe('Stopped');
    // Nothing reaches libvirt before start.
    expect(await libvirt.listDomains()).toEqual([]);

    const again = await vms.put('web', { ...spec(), interfaces: [{ network: 'lan' }] });
    expect(again).toMatchObject({ created: false, changed: false, diff: [] });
    expect(again.vm.generation).toBe(1);
    expect(again.vm.status.nics[0]).toEqual(nic);
  });

  it('moves the generation on a real change, keeps MAC and IP, and honours If-Match', async () => {
    const { vms } = await setup();
    const a = await vms.put('web', spec());
    expect(await code(vms.put('web', spec({ memory: 512 }), { ifMatch: '"7"' }))).toBe('PRECONDITION_FAILED');
    const b = await vms.put('web', spec({ memory: 512 }), { ifMatch: vmEtag(1) });
    expect(b).toMatchObject({ changed: true, diff: ['~ /memory: 256 -> 512'] });
    expect(b.vm.generation).toBe(2);
    expect(b.vm.status.nics).toEqual(a.vm.status.nics);
  });

  it('dry run returns the diff and the domain XML and stores nothing', async () => {
    const { vms } = await setup();
    const r = await vms.put('web', spec(), { dryRun: true });
    expect(r).toMatchObject({ dryRun: true, created: true, changed: true });
    expect(r.diff).toContain('+ /memory: 256');
    expect(r.domainXml).toContain("<domain type='qemu'>");
    expect(r.domainXml).toContain('<name>nodevirt-web</name>');
    expect(r.domainXml).toContain(join(dir, 'root', 'guest', 'vmlinuz'));
    expect(await code(vms.get('web'))).toBe('VM_NOT_FOUND');
  });

  it('refuses bad specs before anything is allocated: capacity, name mismatch, unknown network, paths outside the roots', async () => {
    const { vms, macs } = await setup();
    const err = await vms.put('web', spec({ memory: 8192, name: 'other' })).catch((e: unknown) => e);
    expect(isAppError(err, 'VM_SPEC_INVALID') && err.issues?.map((i) => i.pointer).sort()).toEqual(['/memory', '/name']);
    expect(await code(vms.put('web', spec({ kernelBoot: { kernel: '/etc/passwd' } })))).toBe('PATH_INVALID');
    expect(await code(vms.put('web', spec({ interfaces: [{ network: 'nope' }] })))).toBe('NETWORK_NOT_FOUND');
    expect(await code(vms.put('web', spec({ interfaces: [{ network: 'plain', ip: '10.0.0.5' }] })))).toBe('VM_SPEC_INVALID');
    expect(await code(vms.get('web'))).toBe('VM_NOT_FOUND');
    // The MAC made for the refused network was given back.
    expect(await macs.allocate('probe')).toMatch(/^0e:00:07/);
  });

  it('gives a user MAC and IP, and a second VM cannot take the same ones', async () => {
    const { vms } = await setup();
    const a = await vms.put('web', spec({ interfaces: [{ network: 'lan', mac: '02:00:00:00:00:aa', ip: '192.168.10.50' }] }));
    expect(a.vm.status.nics[0]).toMatchObject({ mac: '02:00:00:00:00:aa', ip: '192.168.10.50' });
    expect(await code(vms.put('db', spec({ name: 'db', interfaces: [{ network: 'lan', mac: '02:00:00:00:00:aa' }] })))).toBe('MAC_IN_USE');
    expect(await code(vms.put('db', spec({ name: 'db', interfaces: [{ network: 'lan', ip: '192.168.10.50' }] })))).toBe('IP_IN_USE');
  });
});

describe('lifecycle', () => {
  it('start plumbs the tap onto the bridge, attaches its DHCP server, defines and starts the domain', async () => {
    const { vms, libvirt, links, dhcp, networks } = await setup();
    await vms.put('web', spec());
    const started = await vms.start('web');
    expect(started.status.phase).toBe('Running');
    const nic = started.status.nics[0]!;
    expect(nic.tap).toMatch(/^nv/);
    const bridge = (await networks.nicAttachment('lan')).bridge;
    expect(await links.get(nic.tap!)).toMatchObject({ master: bridge, up: true });
    expect(dhcp.status()).toEqual([expect.objectContaining({ ifname: nic.tap, mac: nic.mac, ip: nic.ip, open: false })]);
    const xml = await libvirt.getDomainXml('nodevirt-web');
    expect(xml).toContain(`<target dev='${nic.tap}' managed='no'/>`);
    expect(xml).toContain(`<mac address='${nic.mac}'/>`);
    // Starting a running VM is a no-op.
    expect((await vms.start('web')).status.nics[0]!.tap).toBe(nic.tap);
  });

  it('dhcpAcked follows the lease repo for this tap, MAC and IP', async () => {
    const { vms, leases } = await setup();
    await vms.put('web', spec());
    const nic = (await vms.start('web')).status.nics[0]!;
    leases.record(nic.tap!, { type: 'ack', mac: '02:99:99:99:99:99', ip: nic.ip!, at: Date.now() });
    expect((await vms.get('web')).status.nics[0]!.dhcpAcked).toBe(false);
    leases.record(nic.tap!, { type: 'ack', mac: nic.mac, ip: nic.ip!, at: Date.now() });
    expect((await vms.get('web')).status.nics[0]!.dhcpAcked).toBe(true);
  });

  it('stop shuts down by ACPI and unplumbs the NIC, its DHCP server and its lease', async () => {
    const { vms, links, dhcp, leases } = await setup();
    await vms.put('web', spec());
    const started = (await vms.start('web')).status.nics[0]!;
    const tap = started.tap!;
    leases.record(tap, { type: 'ack', mac: started.mac, ip: started.ip!, at: Date.now() });
    expect((await vms.get('web')).status.nics[0]!.dhcpAcked).toBe(true);
    const stopped = await vms.stop('web');
    expect(stopped.status.phase).toBe('Stopped');
    expect(stopped.status.nics[0]!.tap).toBeNull();
    expect(await links.get(tap)).toBeUndefined();
    expect(dhcp.status()).toEqual([]);
    expect(await leases.list({ interface: tap })).toEqual([]);
    // Started again on a tap that may carry the same name: not acked until the guest asks again.
    expect((await vms.start('web')).status.nics[0]!.dhcpAcked).toBe(false);
    await vms.stop('web');
    expect(stopped.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'False', reason: 'Stopped' }));
    expect(stopped.status.running).toBe(false);
  });

  it('a guest that ignores ACPI is destroyed once the grace period is over', async () => {
    const { vms, libvirt } = await setup({ guestHonoursAcpi: false });
    await vms.put('web', spec({ stopGracePeriodSeconds: 1 }));
    await vms.start('web');
    const t0 = Date.now();
    expect((await vms.stop('web')).status.phase).toBe('Stopped');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect((await libvirt.getDomainState('nodevirt-web')).state).toBe('shutoff');
  });

  it('refuses an interface change while running but stores other changes as restartRequired', async () => {
    const { vms } = await setup();
    await vms.put('web', spec());
    await vms.start('web');
    expect(await code(vms.put('web', spec({ interfaces: [{ network: 'lan' }, { network: 'plain' }] })))).toBe('VM_CONFLICT');
    const r = await vms.put('web', spec({ memory: 300 }));
    expect(r.vm.status).toMatchObject({ phase: 'Running', restartRequired: true });
  });

  it('a failed start leaves no tap, DHCP server or domain and records why', async () => {
    const { vms, links, libvirt, dhcp } = await setup();
    await vms.put('web', spec());
    links.failOn((s) => s.includes('master'));
    expect(await code(vms.start('web'))).toBe('HOST_ERROR');
    links.failOn(undefined);
    expect((await links.list((n) => n.startsWith('nv') && !n.startsWith('nvbr'))).filter((l) => l.kind === 'tap')).toEqual([]);
    expect(dhcp.status()).toEqual([]);
    expect((await libvirt.lookupDomain('nodevirt-web'))?.active ?? false).toBe(false);
    const v = await vms.get('web');
    expect(v.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'False', reason: 'StartFailed' }));
  });

  it('delete stops the VM and leaves no domain, tap, guard chain, IP, MAC or lease', async () => {
    const { vms, libvirt, links, nft, networks, macs, leases, dhcp } = await setup();
    await vms.put('web', spec());
    const nic = (await vms.start('web')).status.nics[0]!;
    leases.record(nic.tap!, { type: 'ack', mac: nic.mac, ip: nic.ip!, at: Date.now() });
    await vms.delete('web');
    expect(await code(vms.get('web'))).toBe('VM_NOT_FOUND');
    expect(await libvirt.lookupDomain('nodevirt-web')).toBeUndefined();
    expect(await links.get(nic.tap!)).toBeUndefined();
    // The tap's guard chains are gone (with the guard table itself once no NIC is left in it).
    for (const fam of ['bridge', 'inet']) expect((await nft.listTable(fam, 'nodevirt')) ?? '').not.toContain(nic.tap!);
    expect(await (await networks.ipam('lan')).list()).toEqual([]);
    expect(await macs.ownerOf(nic.mac)).toBeUndefined();
    expect(await leases.list({ interface: nic.tap! })).toEqual([]);
    expect(dhcp.status()).toEqual([]);
    expect(await code(vms.delete('web'))).toBe('VM_NOT_FOUND');
  });

  it('delete re-plans the network after the IP goes back, so a forward naming the NIC stops pointing at it', async () => {
    const { vms, networks } = await setup();
    await vms.put('web', spec());
    await vms.start('web');
    const refreshed: string[] = [];
    const refresh = networks.refresh.bind(networks);
    networks.refresh = async (n) => (refreshed.push(n), refresh(n));
    await vms.delete('web');
    expect(refreshed).toEqual(['lan']);
  });

  it('after a daemon restart, adoptRunning re-attaches the DHCP servers of running VMs and leaves stopped ones alone', async () => {
    const t = await setup();
    await t.vms.put('web', spec());
    await t.vms.put('db', spec({ name: 'db' }));
    const nic = (await t.vms.start('web')).status.nics[0]!;
    // A new daemon: same store, libvirt and kernel, but an empty DHCP service.
    const dhcp = createDhcpService({ openPacketSocket: () => Promise.reject(new Error('no sockets')) as never, link: () => undefined });
    const vms2 = createVmService({ ...t.deps, dhcp });
    expect(await vms2.adoptRunning()).toEqual(['web']);
    expect(dhcp.status()).toEqual([expect.objectContaining({ ifname: nic.tap, mac: nic.mac, ip: nic.ip })]);
    expect((await vms2.get('web')).status.phase).toBe('Running');
    expect((await t.libvirt.getDomainState('nodevirt-web')).state).toBe('running');
  });

  it('list shows every VM with its status', async () => {
    const { vms } = await setup();
    await vms.put('web', spec());
    await vms.put('db', spec({ name: 'db' }));
    expect((await vms.list()).map((v) => v.name).sort()).toEqual(['db', 'web']);
  });
});

describe('actions', () => {
  it('pause freezes and resume thaws the same domain; repeats are no-ops or a clear 409; each publishes an event', async () => {
    const { vms, libvirt, published } = await setup();
    await vms.put('web', spec());
    await vms.start('web');
    expect((await vms.pause('web')).status.phase).toBe('Paused');
    expect((await libvirt.getDomainState('nodevirt-web')).state).toBe('paused');
    expect((await vms.pause('web')).status.phase).toBe('Paused');
    const resumed = await vms.resume('web');
    expect(resumed.status.phase).toBe('Running');
    expect(resumed.status.conditions).toContainEqual(expect.objectContaining({ type: 'Ready', status: 'True' }));
    expect(await code(vms.resume('web'))).toBe('VM_NOT_PAUSED');
    expect(published.map((e) => e.type)).toEqual(['vm.created', 'vm.started', 'vm.paused', 'vm.resumed']);
    expect(published[2]).toEqual({ type: 'vm.paused', subject: 'vms/web', data: { reason: 'api' } });
  });

  it('actions that need a live domain answer VM_NOT_RUNNING on a stopped VM, and VM_NOT_FOUND on none', async () => {
    const { vms } = await setup();
    await vms.put('web', spec());
    for (const a of ['pause', 'resume', 'reset', 'restart'] as const) expect(await code(vms[a]('web')), a).toBe('VM_NOT_RUNNING');
    for (const a of ['pause', 'resume', 'reset', 'restart', 'start', 'stop'] as const) expect(await code(vms[a]('nope')), a).toBe('VM_NOT_FOUND');
  });

  it('reset keeps the domain and its taps; restart redefines it from the current generation on fresh taps', async () => {
    const { vms, libvirt, links } = await setup();
    await vms.put('web', spec());
    const tap = (await vms.start('web')).status.nics[0]!.tap!;
    const uuid = (await libvirt.lookupDomain('nodevirt-web'))!.uuid;
    expect((await vms.reset('web')).status).toMatchObject({ phase: 'Running', nics: [expect.objectContaining({ tap })] });
    expect((await libvirt.lookupDomain('nodevirt-web'))!.uuid).toBe(uuid);

    expect((await vms.put('web', spec({ memory: 300 }))).vm.status.restartRequired).toBe(true);
    const r = await vms.restart('web');
    expect(r.status).toMatchObject({ phase: 'Running', restartRequired: false, running: true });
    expect(await libvirt.getDomainXml('nodevirt-web')).toContain('300');
    const newTap = r.status.nics[0]!.tap!;
    expect(await links.get(newTap)).toMatchObject({ up: true });
    expect(r.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'True', reason: 'Restarted' }));
  });

  it('a Halted VM refuses start with VM_CONFLICT and nothing is plumbed', async () => {
    const { vms, libvirt, plumber } = await setup();
    await vms.put('web', spec({ runStrategy: 'Halted' }));
    expect(await code(vms.start('web'))).toBe('VM_CONFLICT');
    expect(await libvirt.lookupDomain('nodevirt-web')).toBeUndefined();
    expect(await plumber.list()).toEqual([]);
  });

  it('an action on a VM mid-stop waits for the stop and then sees the stopped VM', async () => {
    const { vms } = await setup({ guestHonoursAcpi: false });
    await vms.put('web', spec({ stopGracePeriodSeconds: 1 }));
    await vms.start('web');
    const stopping = vms.stop('web');
    await new Promise((ok) => setTimeout(ok, 50));
    expect((await vms.get('web')).status.phase).toBe('Stopping');
    const t0 = Date.now();
    expect(await code(vms.pause('web'))).toBe('VM_NOT_RUNNING');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(500);
    expect((await stopping).status.phase).toBe('Stopped');
  });
});

// Proves libvirt accepts what buildDomainXml produces: defines a domain with every device kind through the real
// libvirt client (no start: the files and taps need not exist for a definition), reads it back, undefines it.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLibvirtClient } from '../../daemon/libvirt/client.js';
import { children, child, parseXml } from '../../daemon/libvirt/xml.js';
import { createLogger } from '../../daemon/lib/logger.js';
import type { LibvirtClient } from '../../daemon/libvirt/types.js';
import { emulatorFromCapabilities } from '../../daemon/node/node-service.js';
import { buildDomainXml } from '../../daemon/vm/domain-xml.js';
import type { VmSpec } from '../../daemon/vm/vm-model.js';
import { cleanupTestDomains } from '../contract/libvirt-client.contract.js';
import { testDomainName } from '../contract/test-domain.js';

const BUS = '/run/dbus/system_bus_socket';
const missing = process.getuid?.() !== 0 ? 'needs root' : !existsSync(BUS) ? `no system bus at ${BUS}` : undefined;

describe.skipIf(missing !== undefined)(`domain XML accepted by libvirt${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let client: LibvirtClient;
  let emulator: string;
  const names: string[] = [];

  beforeAll(async () => {
    client = createLibvirtClient({ busAddress: `unix:path=${BUS}`, logger: createLogger({ level: 'warn' }) });
    await client.start();
    await client.waitForConnection(10_000);
    emulator = emulatorFromCapabilities(await client.getCapabilities()) ?? '/usr/bin/qemu-system-x86_64';
  });

  afterAll(async () => {
    if (!client) return;
    await cleanupTestDomains(client, names);
    await client.stop();
  });

  it.each(['q35', 'pc'] as const)('defines a %s guest with every disk bus, a read-only disk, a CD-ROM, a seed, two ethernet NICs, serial and VNC', async (machine) => {
    const name = testDomainName(`xml-${machine}`);
    names.push(name);
    const spec: VmSpec = {
      name: 'xml-test',
      cpu: { sockets: 1, cores: 2, threads: 1 },
      memory: 128,
      machine,
      runStrategy: 'RerunOnFailure',
      disks: [
        { name: 'root', image: { name: 'img' }, bootOrder: 1 },
        { name: 'data', volume: { sizeBytes: 2 ** 30 }, bus: 'scsi' },
        { name: 'logs', host: { path: 'l.raw' }, bus: 'sata' },
        { name: 'ro', host: { path: 'ro.raw' }, bus: 'scsi', readonly: true },
        { name: 'iso', cdrom: { image: 'iso' }, bootOrder: 2 },
      ],
      interfaces: [{ network: 'lan' }, { network: 'nat', model: 'e1000' }],
      kernelBoot: { kernel: 'k', initrd: 'i', cmdline: `console=ttyS0 x='<&>"'` },
    };
    const dir = `/var/lib/nodevirt-test/${name}`;
    const xml = buildDomainXml(spec, {
      domainName: name,
      uuid: crypto.randomUUID(),
      virtType: 'qemu',
      emulator,
      generation: 7,
      disks: {
        root: { path: `${dir}/root.qcow2`, format: 'qcow2' },
        data: { path: `${dir}/data.qcow2`, format: 'qcow2' },
        logs: { path: `${dir}/l.raw`, format: 'raw' },
        ro: { path: `${dir}/ro.raw`, format: 'raw' },
        iso: { path: `${dir}/x.iso`, format: 'raw' },
      },
      nics: [
        { tap: 'nvtxmltest0', mac: '0e:00:00:aa:00:01', model: 'virtio' },
        { tap: 'nvtxmltest1', mac: '0e:00:00:aa:00:02', model: 'e1000' },
      ],
      serialSocket: `/run/nodevirt/${name}.serial`,
      vncSocket: `/run/nodevirt/${name}.vnc`,
      cloudInitIso: `${dir}/seed.iso`,
      kernelBoot: { kernel: `${dir}/vmlinuz`, initrd: `${dir}/initrd` },
    });
    const info = await client.defineDomain(xml);
    expect(info).toMatchObject({ name, persistent: true, active: false });

    const back = parseXml(await client.getDomainXml(name, { inactive: true }));
    const devices = child(back, 'devices')!;
    // libvirt keeps disks sorted by target name.
    const targets = children(devices, 'disk').map((d) => `${child(d, 'target')!.attrs.dev}/${child(d, 'target')!.attrs.bus}`);
    expect(targets.sort()).toEqual(['sda/scsi', 'sdb/sata', 'sdc/scsi', 'sdd/sata', 'sde/sata', 'vda/virtio']);
    expect(children(devices, 'interface').map((i) => `${child(i, 'target')!.attrs.dev}/${child(i, 'mac')!.attrs.address}`)).toEqual([
      'nvtxmltest0/0e:00:00:aa:00:01',
      'nvtxmltest1/0e:00:00:aa:00:02',
    ]);
    expect(child(child(back, 'os')!, 'cmdline')!.text).toBe(`console=ttyS0 x='<&>"'`);
    expect(child(devices, 'graphics')!.attrs).toMatchObject({ type: 'vnc', socket: `/run/nodevirt/${name}.vnc` });
    expect(child(child(devices, 'serial')!, 'source')!.attrs.path).toBe(`/run/nodevirt/${name}.serial`);
    const meta = child(child(back, 'metadata')!, 'nodevirt:vm');
    expect(meta && child(meta, 'nodevirt:generation')!.text).toBe('7');
    expect(child(back, 'on_crash')!.text).toBe('destroy');

    await client.undefineDomain(name);
    expect(await client.lookupDomain(name)).toBeUndefined();
  });
});

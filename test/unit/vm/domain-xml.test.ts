// buildDomainXml: golden files for representative specs, the virt-type and firmware rules, and a property
// test that hostile strings (markup characters, unicode) always yield parseable XML that round-trips them.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { child, children, parseXml, type XmlElement } from '../../../daemon/libvirt/xml.js';
import { isAppError } from '../../../daemon/lib/errors.js';
import { buildDomainXml, lifecycleActions, NODEVIRT_XMLNS, type DomainXmlContext } from '../../../daemon/vm/domain-xml.js';
import { validateVmSpec, type VmSpec } from '../../../daemon/vm/vm-model.js';

const ctx = (over: Partial<DomainXmlContext> = {}): DomainXmlContext => ({
  domainName: 'nv-vm1',
  uuid: '6f1c7a52-3d1e-4b8e-9a53-0c4f5e6d7a81',
  virtType: 'qemu',
  emulator: '/usr/bin/qemu-system-x86_64',
  generation: 3,
  disks: {},
  nics: [],
  serialSocket: '/run/nodevirt/vms/vm1/serial.sock',
  vncSocket: '/run/nodevirt/vms/vm1/vnc.sock',
  ...over,
});

const path = (root: XmlElement, ...names: string[]): XmlElement | undefined =>
  names.reduce<XmlElement | undefined>((el, n) => (el ? child(el, n) : undefined), root);

describe('buildDomainXml golden files', () => {
  it('minimal q35 guest under TCG', async () => {
    await expect(buildDomainXml({ name: 'vm1', memory: 256 }, ctx())).toMatchFileSnapshot('golden/minimal-tcg.xml');
  });

  it('full guest under KVM: uefi, all disk kinds and buses, two NICs, seed, kernel boot', async () => {
    const spec: VmSpec = {
      name: 'web',
      cpu: { sockets: 1, cores: 2, threads: 2 },
      memory: 2048,
      firmware: 'uefi',
      runStrategy: 'Always',
      disks: [
        { name: 'root', image: { name: 'debian12' }, bootOrder: 1 },
        { name: 'data', volume: { sizeBytes: 2 ** 30 }, bus: 'scsi' },
        { name: 'logs', host: { path: 'logs.raw' }, bus: 'sata' }, { name: 'ro', host: { path: 'ro.raw' }, readonly: true },
        { name: 'iso', cdrom: { image: 'installer' }, bootOrder: 2 },
      ],
      interfaces: [{ network: 'lan', bootOrder: 3 }, { name: 'mgmt', network: 'nat', model: 'e1000' }],
      kernelBoot: { kernel: 'k/vmlinuz', initrd: 'k/initrd', cmdline: "console=ttyS0 root=LABEL='a&b'" },
    };
    expect(validateVmSpec(spec, { cpus: 2, memoryMiB: 4096 })).toEqual([]);
    const xml = buildDomainXml(
      spec,
      ctx({
        domainName: 'nv-web',
        virtType: 'kvm',
        disks: {
          root: { path: '/var/lib/nodevirt/overlays/web-root.qcow2', format: 'qcow2' },
          data: { path: '/var/lib/nodevirt/volumes/web-data.qcow2', format: 'qcow2' },
          logs: { path: '/srv/vm/logs.raw', format: 'raw' },
          ro: { path: '/srv/vm/ro.raw', format: 'raw' },
          iso: { path: '/var/lib/nodevirt/images/installer', format: 'raw' },
        },
        nics: [
          { tap: 'nvt0123456789', mac: '0e:00:00:12:34:56', model: 'virtio' },
          { tap: 'nvt9876543210', mac: '0e:00:00:65:43:21', model: 'e1000' },
        ],
        cloudInitIso: '/var/lib/nodevirt/seeds/web.iso',
        ovmf: { code: '/usr/share/OVMF/OVMF_CODE_4M.fd', varsTemplate: '/usr/share/OVMF/OVMF_VARS_4M.fd', nvram: '/var/lib/nodevirt/nvram/web.fd' },
        kernelBoot: { kernel: '/srv/vm/k/vmlinuz', initrd: '/srv/vm/k/initrd' },
      }),
    );
    await expect(xml).toMatchFileSnapshot('golden/full-kvm.xml');
  });
});

describe('buildDomainXml rules', () => {
  it('uses host-passthrough only under kvm', () => {
    const tcg = parseXml(buildDomainXml({ name: 'a', memory: 64 }, ctx()));
    expect(tcg.attrs.type).toBe('qemu');
    expect(path(tcg, 'cpu')!.attrs.mode).toBeUndefined();
    const kvm = parseXml(buildDomainXml({ name: 'a', memory: 64 }, ctx({ virtType: 'kvm' })));
    expect(kvm.attrs.type).toBe('kvm');
    expect(path(kvm, 'cpu')!.attrs.mode).toBe('host-passthrough');
  });

  it('lets libvirt keep the NVRAM file when no path is given', () => {
    const dom = parseXml(buildDomainXml({ name: 'a', memory: 64, firmware: 'uefi' }, ctx({ ovmf: { code: '/c.fd', varsTemplate: '/v.fd' } })));
    expect(path(dom, 'os', 'loader')!.text).toBe('/c.fd');
    expect(path(dom, 'os', 'nvram')!.attrs).toEqual({ template: '/v.fd' });
    expect(path(dom, 'os', 'nvram')!.text).toBe('');
  });

  it('lets libvirt pick the VNC socket when none is given', () => {
    const dom = parseXml(buildDomainXml({ name: 'a', memory: 64 }, ctx({ vncSocket: undefined })));
    const g = path(dom, 'devices', 'graphics')!;
    expect(g.attrs).toEqual({ type: 'vnc' });
    expect(child(g, 'listen')!.attrs).toEqual({ type: 'socket' });
  });

  it('refuses uefi without OVMF with a typed error', () => {
    let err: unknown;
    try {
      buildDomainXml({ name: 'a', memory: 64, firmware: 'uefi' }, ctx());
    } catch (e) {
      err = e;
    }
    expect(isAppError(err, 'FIRMWARE_INVALID')).toBe(true);
  });

  it('maps machine, ACPI, lifecycle actions and the metadata generation', () => {
    const dom = parseXml(buildDomainXml({ name: 'a', memory: 64, machine: 'pc', runStrategy: 'Halted' }, ctx({ generation: 42 })));
    expect(path(dom, 'os', 'type')!.attrs.machine).toBe('pc');
    expect(path(dom, 'features', 'acpi')).toBeDefined();
    expect(path(dom, 'on_reboot')!.text).toBe('destroy');
    const meta = path(dom, 'metadata', 'nodevirt:vm')!;
    expect(meta.attrs['xmlns:nodevirt']).toBe(NODEVIRT_XMLNS);
    expect(child(meta, 'nodevirt:generation')!.text).toBe('42');
    for (const s of ['Always', 'RerunOnFailure', 'Manual'] as const) expect(lifecycleActions(s)).toEqual({ onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy' });
  });

  it('names disk targets per bus (virtio vdX; sata and scsi share sdX) and puts the seed last', () => {
    const spec: VmSpec = {
      name: 'a',
      memory: 64,
      disks: [
        { name: 'a', image: { name: 'i' } },
        { name: 'b', image: { name: 'i' }, bus: 'sata' },
        { name: 'c', image: { name: 'i' } },
        { name: 'd', image: { name: 'i' }, bus: 'scsi' },
      ],
    };
    const disks = Object.fromEntries(['a', 'b', 'c', 'd'].map((n) => [n, { path: `/s/${n}`, format: 'qcow2' as const }]));
    const dom = parseXml(buildDomainXml(spec, ctx({ disks, cloudInitIso: '/s/seed.iso' })));
    const targets = children(path(dom, 'devices')!, 'disk').map((d) => `${child(d, 'target')!.attrs.dev}/${child(d, 'target')!.attrs.bus}`);
    expect(targets).toEqual(['vda/virtio', 'sda/sata', 'vdb/virtio', 'sdb/scsi', 'sdc/sata']);
    expect(children(path(dom, 'devices')!, 'controller').map((c) => c.attrs.model)).toEqual(['virtio-scsi']);
  });
});

describe('buildDomainXml escaping (property)', () => {
  const hostile = fc.string({ unit: fc.constantFrom('<', '>', '&', "'", '"', 'a', ' ', '/', 'é', '✓', '😀', ';', '=', ']]>'), minLength: 1, maxLength: 24 });
  const unicode = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 16 }).filter((s) => !/[\u0000-\u001f\u007f]/.test(s));
  const str = fc.oneof(hostile, unicode);

  it('always parses and round-trips every user and context string', () => {
    fc.assert(
      fc.property(str, str, str, str, str, str, str, (cmdline, kernel, diskPath, serial, vnc, tap, seed) => {
        const spec: VmSpec = {
          name: 'p',
          memory: 64,
          disks: [{ name: 'd', host: { path: 'x' } }],
          interfaces: [{ network: 'n' }],
          kernelBoot: { kernel: 'k', cmdline },
        };
        const xml = buildDomainXml(
          spec,
          ctx({
            disks: { d: { path: diskPath, format: 'raw' } },
            nics: [{ tap, mac: '0e:00:00:00:00:01', model: 'virtio' }],
            serialSocket: serial,
            vncSocket: vnc,
            cloudInitIso: seed,
            kernelBoot: { kernel },
          }),
        );
        const dom = parseXml(xml);
        expect(path(dom, 'os', 'cmdline')!.text).toBe(cmdline);
        expect(path(dom, 'os', 'kernel')!.text).toBe(kernel);
        const disks = children(path(dom, 'devices')!, 'disk');
        expect(child(disks[0]!, 'source')!.attrs.file).toBe(diskPath);
        expect(child(disks[1]!, 'source')!.attrs.file).toBe(seed);
        expect(path(dom, 'devices', 'serial', 'source')!.attrs.path).toBe(serial);
        expect(path(dom, 'devices', 'console', 'source')!.attrs.path).toBe(serial);
        expect(path(dom, 'devices', 'graphics')!.attrs.socket).toBe(vnc);
        expect(path(dom, 'devices', 'interface', 'target')!.attrs.dev).toBe(tap);
        // Nothing user-made ever opens an element: the element names are exactly ours.
        const names = new Set<string>();
        const walk = (el: XmlElement): void => {
          names.add(el.name);
          el.children.forEach(walk);
        };
        walk(dom);
        for (const n of names) expect(n).toMatch(/^(nodevirt:)?[a-z_]+$/);
      }),
      { numRuns: 300 },
    );
  });
});

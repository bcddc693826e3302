// Spec validation: capacity, names, disks and boot orders, control characters; a property test that any
// spec built from valid parts validates and any control character injected anywhere is reported at its pointer.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { validateVmSpec, VCPU_OVERCOMMIT, type VmSpec } from '../../../daemon/vm/vm-model.js';

const HOST = { cpus: 2, memoryMiB: 4096 };
const base = (over: Partial<VmSpec> = {}): VmSpec => ({ name: 'vm1', memory: 256, ...over });
const pointers = (spec: VmSpec) => validateVmSpec(spec, HOST).map((i) => i.pointer);

describe('validateVmSpec', () => {
  it('accepts a minimal and a full spec', () => {
    expect(validateVmSpec(base(), HOST)).toEqual([]);
    const full: VmSpec = {
      name: 'web-01',
      cpu: { sockets: 1, cores: 2, threads: 2 },
      memory: 1024,
      machine: 'pc',
      firmware: 'uefi',
      disks: [
        { name: 'root', image: { name: 'debian12' }, bootOrder: 1 },
        { name: 'data', volume: { sizeBytes: 2 ** 30 }, bus: 'scsi' },
        { name: 'scratch', host: { path: 'scratch/x.qcow2', sizeBytes: 2 ** 20 } },
        { name: 'iso', cdrom: { image: 'installer' }, bootOrder: 2 },
      ],
      interfaces: [{ network: 'lan', model: 'e1000', mac: '52:54:00:12:34:56', ip: '10.0.0.5', bootOrder: 3 }, { network: 'nat' }],
      cloudInit: { userData: '#cloud-config\n\thostname: x\r\n', metaData: 'instance-id: a\n' },
      runStrategy: 'RerunOnFailure',
      kernelBoot: { kernel: 'k/vmlinuz', initrd: 'k/initrd', cmdline: 'console=ttyS0' },
      stopGracePeriodSeconds: 30,
    };
    expect(validateVmSpec(full, HOST)).toEqual([]);
  });

  it('refuses more vCPUs than the host allows with overcommit, and more memory than the host has', () => {
    expect(pointers(base({ cpu: { cores: HOST.cpus * VCPU_OVERCOMMIT } }))).toEqual([]);
    const issues = validateVmSpec(base({ cpu: { cores: HOST.cpus * VCPU_OVERCOMMIT + 1 }, memory: 4097 }), HOST);
    expect(issues.map((i) => i.pointer)).toEqual(['/cpu', '/memory']);
    expect(issues[0]!.reason).toContain('5 vCPUs exceed');
    expect(pointers(base({ memory: 4096 }))).toEqual([]);
    expect(pointers(base({ memory: 8 }))).toEqual(['/memory']);
    expect(pointers(base({ memory: 256.5 }))).toEqual(['/memory']);
    expect(pointers(base({ cpu: { sockets: 0 } }))).toEqual(['/cpu/sockets']);
  });

  it.each(['', 'A', '-a', 'a-', 'a_b', 'a.b', 'x'.repeat(64), 'é'])('refuses the name %j', (name) => {
    expect(pointers(base({ name }))).toContain('/name');
  });

  it('needs exactly one source per disk and unique disk names', () => {
    expect(pointers(base({ disks: [{ name: 'a' }] }))).toEqual(['/disks/0']);
    expect(pointers(base({ disks: [{ name: 'a', image: { name: 'i' }, cdrom: { image: 'c' } }] }))).toEqual(['/disks/0']);
    expect(pointers(base({ disks: [{ name: 'a', image: { name: 'i' } }, { name: 'a', image: { name: 'i' } }] }))).toEqual(['/disks/1/name']);
    expect(pointers(base({ disks: [{ name: 'a', volume: {} }] }))).toEqual(['/disks/0/volume']);
    expect(pointers(base({ disks: [{ name: 'a', volume: { sizeBytes: 10 } }] }))).toEqual(['/disks/0/volume/sizeBytes']);
  });

  it('keeps CD-ROMs off virtio and read-only', () => {
    expect(pointers(base({ disks: [{ name: 'c', cdrom: { image: 'iso' }, bus: 'virtio' }] }))).toEqual(['/disks/0/bus']);
    expect(pointers(base({ disks: [{ name: 'c', cdrom: { image: 'iso' }, readonly: false }] }))).toEqual(['/disks/0/readonly']);
    expect(pointers(base({ disks: [{ name: 'd', image: { name: 'i' }, bus: 'sata', readonly: true }] }))).toEqual(['/disks/0/readonly']);
  });

  it('refuses boot orders used twice across disks and interfaces', () => {
    const issues = validateVmSpec(
      base({ disks: [{ name: 'a', image: { name: 'i' }, bootOrder: 1 }], interfaces: [{ network: 'n', bootOrder: 1 }] }),
      HOST,
    );
    expect(issues).toEqual([{ pointer: '/interfaces/0/bootOrder', reason: 'boot order 1 is already used by /disks/0' }]);
    expect(pointers(base({ disks: [{ name: 'a', image: { name: 'i' }, bootOrder: 0 }] }))).toEqual(['/disks/0/bootOrder']);
  });

  it('checks interface names, MACs and IPs', () => {
    expect(pointers(base({ interfaces: [{ network: 'n' }, { network: 'n', name: 'net0' }] }))).toEqual(['/interfaces/1/name']);
    expect(pointers(base({ interfaces: [{ network: 'n', mac: '01:00:00:00:00:01' }] }))).toEqual(['/interfaces/0/mac']);
    expect(pointers(base({ interfaces: [{ network: 'n', mac: 'nope' }] }))).toEqual(['/interfaces/0/mac']);
    expect(pointers(base({ interfaces: [{ network: 'n', mac: '52:54:00:00:00:01' }, { network: 'm', mac: '52-54-00-00-00-01' }] }))).toEqual([
      '/interfaces/1/mac',
    ]);
    expect(pointers(base({ interfaces: [{ network: 'n', ip: '10.0.0.256' }] }))).toEqual(['/interfaces/0/ip']);
  });

  it("refuses '..' and empty paths before looking at the disk", () => {
    expect(pointers(base({ disks: [{ name: 'a', host: { path: '../etc/shadow' } }] }))).toEqual(['/disks/0/host/path']);
    expect(pointers(base({ kernelBoot: { kernel: 'k/../../x', initrd: '' } }))).toEqual(['/kernelBoot/kernel', '/kernelBoot/initrd']);
  });

  it('refuses control characters in every string, allowing tab/LF/CR only in cloud-init documents', () => {
    expect(pointers(base({ kernelBoot: { kernel: 'k', cmdline: 'a\nb' } }))).toEqual(['/kernelBoot/cmdline']);
    expect(pointers(base({ cloudInit: { userData: 'a\u0000b' } }))).toEqual(['/cloudInit/userData']);
    expect(pointers(base({ disks: [{ name: 'a', host: { path: 'x\u001by' } }] }))).toEqual(['/disks/0/host/path']);
  });

  it('property: a control character anywhere in a string field is reported at that pointer', () => {
    const fields: Array<[string, (s: string) => VmSpec]> = [
      ['/disks/0/host/path', (s) => base({ disks: [{ name: 'd', host: { path: s } }] })],
      ['/kernelBoot/kernel', (s) => base({ kernelBoot: { kernel: s } })],
      ['/kernelBoot/cmdline', (s) => base({ kernelBoot: { kernel: 'k', cmdline: s } })],
      ['/cloudInit/metaData', (s) => base({ cloudInit: { metaData: s } })],
    ];
    fc.assert(
      fc.property(
        fc.constantFrom(...fields),
        fc.string({ minLength: 1, maxLength: 20 }),
        fc.integer({ min: 0, max: 0x1f }).filter((c) => ![9, 10, 13].includes(c)),
        fc.nat(),
        ([pointer, make], s, code, at) => {
          const i = at % (s.length + 1);
          const issues = validateVmSpec(make(s.slice(0, i) + String.fromCharCode(code) + s.slice(i)), HOST);
          expect(issues.some((x) => x.pointer === pointer && x.reason.includes('control'))).toBe(true);
        },
      ),
    );
  });

  it('property: specs made of valid parts have no issues', () => {
    const name = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
    fc.assert(
      fc.property(
        name,
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 16, max: HOST.memoryMiB }),
        fc.uniqueArray(name, { maxLength: 4 }),
        fc.array(fc.constantFrom('virtio', 'e1000') as fc.Arbitrary<'virtio' | 'e1000'>, { maxLength: 4 }),
        (n, cores, memory, diskNames, models) => {
          const spec: VmSpec = {
            name: n,
            cpu: { cores },
            memory,
            disks: diskNames.map((d, i) => (i % 2 ? { name: d, cdrom: { image: 'iso' }, bootOrder: i + 1 } : { name: d, image: { name: 'img' } })),
            interfaces: models.map((model, i) => ({ network: 'lan', model, bootOrder: 100 + i })),
          };
          expect(validateVmSpec(spec, HOST)).toEqual([]);
        },
      ),
    );
  });
});

import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../daemon/lib/logger.js';
import { createNodeService, emulatorFromCapabilities, type LibvirtInfoSource } from '../../../daemon/node/node-service.js';
import { facts } from './fixtures.js';

const CAPS = `<capabilities><guest><os_type>hvm</os_type><arch name='i686'><emulator>/usr/bin/qemu-system-i386</emulator></arch></guest>
<guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize><emulator>/usr/bin/qemu-system-x86_64</emulator></arch></guest></capabilities>`;

function libvirt(connected: boolean, fail = false): LibvirtInfoSource {
  return {
    connected,
    async getVersions() {
      if (fail) throw new Error('boom');
      return { libvirt: '9.0.0', hypervisor: { type: 'QEMU', version: '7.2.22' } };
    },
    async getCapabilities() {
      return CAPS;
    },
  };
}

describe('node service', () => {
  it('picks the x86_64 emulator from capabilities', () => {
    expect(emulatorFromCapabilities(CAPS)).toBe('/usr/bin/qemu-system-x86_64');
    expect(emulatorFromCapabilities('<capabilities/>')).toBeNull();
  });

  it('combines facts, libvirt versions and the virt type', async () => {
    let probes = 0;
    let t = 1_000_000;
    const svc = createNodeService({
      probe: { facts: async () => (probes++, facts({ cpu: { count: 2, model: 'x', virtualizationFlag: 'none' } })) },
      libvirt: libvirt(true),
      logger: silentLogger(),
      version: '0.1.0',
      uri: 'qemu:///system',
      configuredVirtType: 'auto',
      now: () => t,
    });
    t += 2500;
    const info = await svc.info();
    expect(info.virtType).toBe('qemu');
    expect(info.libvirt).toEqual({ connected: true, version: '9.0.0', uri: 'qemu:///system', error: null });
    expect(info.qemu).toEqual({ version: '7.2.22', emulator: '/usr/bin/qemu-system-x86_64' });
    expect(info.daemon.uptimeSeconds).toBe(2.5);
    expect(info.checks.length).toBeGreaterThan(5);
    await svc.info();
    expect(probes).toBe(1); // cached within cacheMs
    t += 60_000;
    await svc.info();
    expect(probes).toBe(2);
  });

  it('reports libvirt as disconnected instead of failing', async () => {
    const base = { probe: { facts: async () => facts() }, logger: silentLogger(), version: 'x', uri: 'qemu:///system', configuredVirtType: 'auto' as const };
    const off = await createNodeService({ ...base, libvirt: libvirt(false) }).info();
    expect(off.libvirt.connected).toBe(false);
    expect(off.qemu.version).toBeNull();
    const err = await createNodeService({ ...base, libvirt: libvirt(true, true) }).info();
    expect(err.libvirt).toMatchObject({ connected: false, error: 'boom' });
  });
});

import { describe, expect, it } from 'vitest';
import { decideVirtType, hostChecks } from '../../../daemon/node/host-checks.js';
import { facts } from './fixtures.js';


describe('decideVirtType', () => {
  it('kvm when /dev/kvm opens and the CPU has svm/vmx', () => {
    expect(decideVirtType(facts(), 'auto')).toMatchObject({ virtType: 'kvm', virtTypeSource: 'detected' });
  });
  it('qemu when the CPU lacks vmx/svm even though /dev/kvm opens (this CI machine)', () => {
    const d = decideVirtType(facts({ cpu: { count: 2, model: 'x', virtualizationFlag: 'none' } }), 'auto');
    expect(d.virtType).toBe('qemu');
    expect(d.virtTypeReason).toMatch(/neither vmx nor svm/);
    expect(d.virtTypeReason).toMatch(/TCG/);
  });
  it('qemu when /dev/kvm is missing', () => {
    const d = decideVirtType(facts({ devices: { kvm: { ok: false, detail: '/dev/kvm: ENOENT' }, tun: { ok: true }, vhostNet: { ok: true } } }), 'auto');
    expect(d).toMatchObject({ virtType: 'qemu', virtTypeSource: 'detected' });
    expect(d.virtTypeReason).toContain('ENOENT');
  });
  it('config overrides detection and warns when forcing kvm on a host without it', () => {
    const d = decideVirtType(facts({ cpu: { count: 1, model: 'x', virtualizationFlag: 'none' } }), 'kvm');
    expect(d).toMatchObject({ virtType: 'kvm', virtTypeSource: 'config' });
    expect(d.virtTypeReason).toMatch(/warning/);
    expect(decideVirtType(facts(), 'qemu')).toMatchObject({ virtType: 'qemu', virtTypeSource: 'config' });
  });
});

describe('hostChecks', () => {
  it('all pass on a capable host', () => {
    const checks = hostChecks(facts());
    expect(checks.map((c) => c.name)).toEqual([
      'kvm-device', 'cpu-virtualization', 'tun-device', 'vhost-net', 'bridge', 'veth', 'vlan-8021q',
      'bridge-vlan-filtering', 'vxlan', 'nftables', 'cgroups', 'iommu',
    ]);
    expect(checks.filter((c) => c.status !== 'pass')).toEqual([]);
  });
  it('grades missing features: tun/bridge/nftables fail, VLAN and IOMMU warn', () => {
    const bad = { ok: false as const, detail: 'Operation not supported' };
    const checks = hostChecks(
      facts({
        devices: { kvm: bad, tun: bad, vhostNet: bad },
        net: { bridge: bad, veth: { ok: true }, vlan8021q: bad, bridgeVlanFiltering: bad, vxlan: { ok: true }, nftables: bad },
        cgroups: { version: 'v1', controllers: ['cpu'] },
        iommuGroups: 0,
      }),
    );
    const by = Object.fromEntries(checks.map((c) => [c.name, c]));
    expect(by['tun-device']!.status).toBe('fail');
    expect(by['bridge']!.status).toBe('fail');
    expect(by['nftables']!.status).toBe('fail');
    expect(by['vlan-8021q']!.status).toBe('warn');
    expect(by['vlan-8021q']!.message).toContain('Operation not supported');
    expect(by['kvm-device']!.status).toBe('warn');
    expect(by['cgroups']!.message).toContain('missing memory devices');
    expect(by['iommu']!.status).toBe('warn');
  });
  it('cgroup v2 needs cpu and memory too', () => {
    const by = Object.fromEntries(hostChecks(facts({ cgroups: { version: 'v2', controllers: ['io', 'pids'] } })).map((c) => [c.name, c]));
    expect(by['cgroups']).toMatchObject({ status: 'warn' });
    expect(by['cgroups']!.message).toContain('missing cpu memory');
  });
});

// A capable host's facts; tests override what they need.
import type { HostFacts } from '../../../daemon/host/host-probe.js';

export function facts(over: Partial<HostFacts> = {}): HostFacts {
  const ok = { ok: true as const };
  return {
    hostname: 'h1',
    kernel: { release: '6.1.0', version: '#1 SMP', arch: 'x86_64' },
    cpu: { count: 2, model: 'AMD EPYC', virtualizationFlag: 'svm' },
    memory: { totalBytes: 1 << 30, availableBytes: 1 << 29 },
    devices: { kvm: ok, tun: ok, vhostNet: ok },
    net: { bridge: ok, veth: ok, vlan8021q: ok, bridgeVlanFiltering: ok, vxlan: ok, nftables: ok },
    cgroups: { version: 'v2', controllers: ['cpu', 'memory', 'io'] },
    iommuGroups: 4,
    ...over,
  };
}

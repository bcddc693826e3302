// Pure: turns host facts into virt-host-validate style checks and decides the virtualization type.
import type { HostFacts, Probe } from '../host/host-probe.js';

export type CheckStatus = 'pass' | 'warn' | 'fail';
export interface HostCheck {
  name: string;
  title: string;
  status: CheckStatus;
  message: string;
}

export type VirtType = 'kvm' | 'qemu';
export interface VirtDecision {
  virtType: VirtType;
  virtTypeReason: string;
  virtTypeSource: 'detected' | 'config';
}

function fromProbe(name: string, title: string, p: Probe, failStatus: CheckStatus, okMsg: string, failMsg: string): HostCheck {
  return p.ok
    ? { name, title, status: 'pass', message: okMsg }
    : { name, title, status: failStatus, message: `${failMsg} (${p.detail})` };
}

export function kvmUsable(f: HostFacts): { usable: boolean; why: string } {
  if (!f.devices.kvm.ok) return { usable: false, why: `/dev/kvm is not usable (${f.devices.kvm.detail})` };
  if (f.cpu.virtualizationFlag === 'none') {
    return { usable: false, why: '/dev/kvm opens but the CPU shows neither vmx nor svm (hardware virtualization not exposed to this host)' };
  }
  return { usable: true, why: `/dev/kvm opens and the CPU has ${f.cpu.virtualizationFlag}` };
}

export function decideVirtType(f: HostFacts, configured: 'auto' | 'kvm' | 'qemu'): VirtDecision {
  const kvm = kvmUsable(f);
  if (configured !== 'auto') {
    const note = configured === 'kvm' && !kvm.usable ? `; warning: ${kvm.why}` : '';
    return { virtType: configured, virtTypeSource: 'config', virtTypeReason: `virtType: ${configured} set in the configuration${note}` };
  }
  return kvm.usable
    ? { virtType: 'kvm', virtTypeSource: 'detected', virtTypeReason: `${kvm.why}: hardware acceleration` }
    : { virtType: 'qemu', virtTypeSource: 'detected', virtTypeReason: `${kvm.why}: guests run under QEMU TCG software emulation` };
}

export function hostChecks(f: HostFacts): HostCheck[] {
  const kvm = kvmUsable(f);
  const checks: HostCheck[] = [
    fromProbe('kvm-device', '/dev/kvm usable', f.devices.kvm, 'warn', '/dev/kvm exists and opens read-write', 'no KVM device: VMs fall back to TCG software emulation'),
    {
      name: 'cpu-virtualization',
      title: 'CPU hardware virtualization flags',
      status: f.cpu.virtualizationFlag === 'none' ? 'warn' : 'pass',
      message:
        f.cpu.virtualizationFlag === 'none'
          ? `the CPU (${f.cpu.model}) shows neither vmx nor svm: ${kvm.usable ? '' : 'KVM cannot run guests, '}VMs use TCG`
          : `the CPU has ${f.cpu.virtualizationFlag}`,
    },
    fromProbe('tun-device', '/dev/net/tun usable', f.devices.tun, 'fail', 'tap devices can be created', 'no tap devices: VM networking is unavailable'),
    fromProbe('vhost-net', '/dev/vhost-net usable', f.devices.vhostNet, 'warn', 'in-kernel virtio-net acceleration available', 'virtio-net runs in QEMU userspace (slower)'),
    fromProbe('bridge', 'Linux bridge support', f.net.bridge, 'fail', 'bridges can be created', 'bridged and NAT networks are unavailable'),
    fromProbe('veth', 'veth support', f.net.veth, 'warn', 'veth pairs can be created', 'veth pairs unavailable'),
    fromProbe('vlan-8021q', '802.1Q VLAN sub-interfaces', f.net.vlan8021q, 'warn', '802.1Q sub-interfaces can be created', 'VLAN-tagged networks via sub-interfaces are unavailable'),
    fromProbe('bridge-vlan-filtering', 'bridge VLAN filtering', f.net.bridgeVlanFiltering, 'warn', 'VLAN-aware bridges can be created', 'VLAN-aware bridges are unavailable'),
    fromProbe('vxlan', 'VXLAN support', f.net.vxlan, 'warn', 'VXLAN devices can be created', 'VXLAN overlays are unavailable'),
    fromProbe('nftables', 'nftables', f.net.nftables, 'fail', 'nftables rulesets can be loaded', 'no nftables: NAT, port forwards and anti-spoofing are unavailable'),
  ];
  // cgroup v2 has no devices controller (device access is a BPF program); v1 needs it.
  const needed = f.cgroups.version === 'v2' ? ['cpu', 'memory'] : ['cpu', 'memory', 'devices'];
  const missing = needed.filter((c) => !f.cgroups.controllers.includes(c));
  checks.push({
    name: 'cgroups',
    title: 'cgroup controllers',
    status: f.cgroups.version !== 'none' && missing.length === 0 ? 'pass' : 'warn',
    message:
      f.cgroups.version === 'none'
        ? 'no cgroup hierarchy mounted: VM resource limits are not enforced'
        : `cgroup ${f.cgroups.version}, controllers: ${f.cgroups.controllers.join(' ') || 'none'}${missing.length ? `; missing ${missing.join(' ')}` : ''}`,
  });
  checks.push({
    name: 'iommu',
    title: 'IOMMU (device passthrough)',
    status: f.iommuGroups > 0 ? 'pass' : 'warn',
    message: f.iommuGroups > 0 ? `${f.iommuGroups} IOMMU groups` : 'no IOMMU groups: PCI device passthrough is unavailable',
  });
  return checks;
}

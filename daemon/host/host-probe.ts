// Reads the facts `GET /v1/node` reports from the running host. Kernel network features are probed by
// really creating the objects inside a throwaway network namespace (unshare), so nothing on the host changes.
import { execFile } from 'node:child_process';
import { constants, promises as fs } from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export type Probe = { ok: true; detail?: string } | { ok: false; detail: string };

export interface HostFacts {
  hostname: string;
  kernel: { release: string; version: string; arch: string };
  cpu: { count: number; model: string; virtualizationFlag: 'vmx' | 'svm' | 'none' };
  memory: { totalBytes: number; availableBytes: number };
  devices: { kvm: Probe; tun: Probe; vhostNet: Probe };
  net: { bridge: Probe; veth: Probe; vlan8021q: Probe; bridgeVlanFiltering: Probe; vxlan: Probe; nftables: Probe };
  cgroups: { version: 'v1' | 'v2' | 'hybrid' | 'none'; controllers: string[] };
  iommuGroups: number;
}

export interface HostProbe {
  facts(): Promise<HostFacts>;
}

async function openable(path: string): Promise<Probe> {
  try {
    const fh = await fs.open(path, constants.O_RDWR);
    await fh.close();
    return { ok: true };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { ok: false, detail: `${path}: ${err.code ?? err.message}` };
  }
}

export function parseCpuinfo(text: string): { model: string; virtualizationFlag: 'vmx' | 'svm' | 'none' } {
  const model = /^model name\s*:\s*(.*)$/m.exec(text)?.[1]?.trim() ?? 'unknown';
  const flags = /^flags\s*:\s*(.*)$/m.exec(text)?.[1]?.split(/\s+/) ?? [];
  const virtualizationFlag = flags.includes('vmx') ? 'vmx' : flags.includes('svm') ? 'svm' : 'none';
  return { model, virtualizationFlag };
}

export function parseMeminfo(text: string): { totalBytes: number; availableBytes: number } {
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { totalBytes: kb('MemTotal'), availableBytes: kb('MemAvailable') };
}

// One shell script, one unshare: each line reports `<name> ok|fail <reason>`. Probing costs ~0.1 s.
const NET_PROBE_SCRIPT = `
p() { n=$1; shift; if out=$("$@" 2>&1); then echo "$n ok"; else echo "$n fail $(echo "$out" | head -n1)"; fi; }
p bridge ip link add nvp-br type bridge
p veth ip link add nvp-a type veth peer name nvp-b
p vlan8021q ip link add link nvp-a name nvp-a.5 type vlan id 5
p bridgeVlanFiltering ip link add nvp-vf type bridge vlan_filtering 1
p vxlan ip link add nvp-vx type vxlan id 42 dstport 4789 local 127.0.0.1
p nftables sh -c 'echo "table inet nvprobe { chain c { type filter hook input priority 0; }; }" | nft -f -'
`;

const NET_KEYS = ['bridge', 'veth', 'vlan8021q', 'bridgeVlanFiltering', 'vxlan', 'nftables'] as const;

export function parseNetProbe(stdout: string): HostFacts['net'] {
  const res = {} as HostFacts['net'];
  for (const key of NET_KEYS) res[key] = { ok: false, detail: 'not probed' };
  for (const line of stdout.split('\n')) {
    const m = /^(\w+) (ok|fail)(?: (.*))?$/.exec(line.trim());
    if (!m || !(NET_KEYS as readonly string[]).includes(m[1]!)) continue;
    res[m[1] as (typeof NET_KEYS)[number]] = m[2] === 'ok' ? { ok: true } : { ok: false, detail: m[3] || 'failed' };
  }
  return res;
}

async function probeNet(): Promise<HostFacts['net']> {
  try {
    const { stdout } = await execFileP('unshare', ['--net', 'sh', '-c', NET_PROBE_SCRIPT], { timeout: 10_000 });
    return parseNetProbe(stdout);
  } catch (e) {
    const reason = `probe could not run: ${(e as Error).message.split('\n')[0]}`;
    const res = {} as HostFacts['net'];
    for (const key of NET_KEYS) res[key] = { ok: false, detail: reason };
    return res;
  }
}

async function probeCgroups(): Promise<HostFacts['cgroups']> {
  const v2 = await fs.readFile('/sys/fs/cgroup/cgroup.controllers', 'utf8').catch(() => null);
  if (v2 !== null) return { version: 'v2', controllers: v2.trim().split(/\s+/).filter(Boolean) };
  const mounts = await fs.readFile('/proc/self/mounts', 'utf8').catch(() => '');
  const controllers = new Set<string>();
  let hybrid = false;
  for (const line of mounts.split('\n')) {
    const [, mnt, type, opts] = line.split(' ');
    if (type === 'cgroup2' && mnt) hybrid = true;
    if (type !== 'cgroup' || !opts) continue;
    for (const o of opts.split(',')) if (['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids'].includes(o)) controllers.add(o);
  }
  if (controllers.size === 0) return { version: 'none', controllers: [] };
  return { version: hybrid ? 'hybrid' : 'v1', controllers: [...controllers].sort() };
}

export function createHostProbe(): HostProbe {
  return {
    async facts() {
      const [cpuinfo, meminfo, kvm, tun, vhostNet, net, cgroups, iommu] = await Promise.all([
        fs.readFile('/proc/cpuinfo', 'utf8').catch(() => ''),
        fs.readFile('/proc/meminfo', 'utf8').catch(() => ''),
        openable('/dev/kvm'),
        openable('/dev/net/tun'),
        openable('/dev/vhost-net'),
        probeNet(),
        probeCgroups(),
        fs.readdir('/sys/kernel/iommu_groups').catch(() => [] as string[]),
      ]);
      const cpu = parseCpuinfo(cpuinfo);
      const mem = parseMeminfo(meminfo);
      return {
        hostname: os.hostname(),
        kernel: { release: os.release(), version: os.version(), arch: os.machine() },
        cpu: { count: os.availableParallelism(), ...cpu },
        memory: mem.totalBytes > 0 ? mem : { totalBytes: os.totalmem(), availableBytes: os.freemem() },
        devices: { kvm, tun, vhostNet },
        net,
        cgroups,
        iommuGroups: iommu.length,
      };
    },
  };
}

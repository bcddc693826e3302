// Serves `GET /v1/node`: host facts, libvirt/QEMU versions and capability checks, with the virt type decision.
import type { HostProbe, HostFacts } from '../host/host-probe.js';
import type { Logger } from '../lib/logger.js';
import { errorMessage } from '../lib/errors.js';
import { decideVirtType, hostChecks, type HostCheck, type VirtDecision } from './host-checks.js';

/** What the node service needs from libvirt (the real client and the fake both satisfy it). */
export interface LibvirtInfoSource {
  readonly connected: boolean;
  getVersions(): Promise<{ libvirt: string; hypervisor: { type: string; version: string } }>;
  getCapabilities(): Promise<string>;
}

export interface NodeInfo extends VirtDecision {
  hostname: string;
  daemon: { version: string; startedAt: string; uptimeSeconds: number };
  kernel: HostFacts['kernel'];
  cpu: HostFacts['cpu'];
  memory: HostFacts['memory'];
  libvirt: { connected: boolean; version: string | null; uri: string | null; error: string | null };
  qemu: { version: string | null; emulator: string | null };
  checks: HostCheck[];
}

export interface NodeService {
  info(): Promise<NodeInfo>;
  /** The decision VMs are defined with; computed once at start, stable for the process. */
  virtType(): Promise<VirtDecision>;
}

/** The x86_64 emulator path from libvirt's capabilities XML (first <emulator> under an x86_64 guest). */
export function emulatorFromCapabilities(xml: string): string | null {
  const guest = /<arch name=['"]x86_64['"]>([\s\S]*?)<\/arch>/.exec(xml);
  const m = /<emulator>([^<]+)<\/emulator>/.exec(guest?.[1] ?? xml);
  return m?.[1]?.trim() ?? null;
}

export function createNodeService(deps: {
  probe: HostProbe;
  libvirt: LibvirtInfoSource;
  logger: Logger;
  version: string;
  uri: string;
  configuredVirtType: 'auto' | 'kvm' | 'qemu';
  /** How long probed facts are reused; memory is always fresh enough at this interval. */
  cacheMs?: number;
  /** When the daemon process started (epoch ms); defaults to when this service was created. */
  startedAt?: number;
  now?: () => number;
}): NodeService {
  const now = deps.now ?? Date.now;
  const startedAt = deps.startedAt ?? now();
  const cacheMs = deps.cacheMs ?? 10_000;
  let cached: { at: number; facts: Promise<HostFacts> } | null = null;
  let decision: VirtDecision | null = null;

  function facts(): Promise<HostFacts> {
    if (!cached || now() - cached.at > cacheMs) {
      const p = deps.probe.facts();
      cached = { at: now(), facts: p };
      p.catch(() => (cached = null));
    }
    return cached.facts;
  }

  async function virtType(): Promise<VirtDecision> {
    decision ??= decideVirtType(await facts(), deps.configuredVirtType);
    return decision;
  }

  async function libvirtPart(): Promise<Pick<NodeInfo, 'libvirt' | 'qemu'>> {
    if (!deps.libvirt.connected) {
      return { libvirt: { connected: false, version: null, uri: deps.uri, error: 'not connected to libvirt-dbus' }, qemu: { version: null, emulator: null } };
    }
    try {
      const [versions, caps] = await Promise.all([deps.libvirt.getVersions(), deps.libvirt.getCapabilities()]);
      return {
        libvirt: { connected: true, version: versions.libvirt, uri: deps.uri, error: null },
        qemu: { version: versions.hypervisor.version, emulator: emulatorFromCapabilities(caps) },
      };
    } catch (e) {
      deps.logger.warn({ err: errorMessage(e) }, 'libvirt query for node info failed');
      return { libvirt: { connected: false, version: null, uri: deps.uri, error: errorMessage(e) }, qemu: { version: null, emulator: null } };
    }
  }

  return {
    virtType,
    async info() {
      const [f, lv, vt] = await Promise.all([facts(), libvirtPart(), virtType()]);
      const t = now();
      return {
        hostname: f.hostname,
        daemon: { version: deps.version, startedAt: new Date(startedAt).toISOString(), uptimeSeconds: Math.round((t - startedAt) / 100) / 10 },
        kernel: f.kernel,
        cpu: f.cpu,
        memory: f.memory,
        ...lv,
        ...vt,
        checks: hostChecks(f),
      };
    },
  };
}

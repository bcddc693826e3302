// The VM service: desired state (spec, generation, the user's run intent) in the store, server-made values
// (MACs, IPs) in status, the actions (start = plumb NICs -> seed -> define -> start, stop = ACPI then destroy
// -> unplumb, restart, pause, resume, reset) and the effects the reconciler (reconciler.ts) decides on.
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError, errorMessage, type ErrorIssue } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { createReverter } from '../lib/revert.js';
import type { DomainInfo, DomainState, LibvirtClient } from '../libvirt/types.js';
import type { EventSink } from '../ops/types.js';
import type { DhcpService } from '../net/dhcp/dhcp-service.js';
import type { LeaseRepo } from '../net/dhcp/lease-repo.js';
import type { MacAllocator } from '../net/macs.js';
import { dhcpOffer } from '../net/network-model.js';
import type { NetworkService } from '../net/network-service.js';
import { nicId, type NicPlumber } from '../net/nic.js';
import { seedFiles, writeSeedIso } from '../storage/cloud-init.js';
import type { Store } from '../store/store.js';
import { buildDomainXml } from './domain-xml.js';
import type { GuestAgentCache, GuestAgentInfo } from './guest-agent.js';
import { createVmDisks, type VmDisksDeps } from './vm-disks.js';
import { DEFAULTS, nicName, validateVmSpec, type HostCapacity, type VmSpec } from './vm-model.js';

export type VmPhase = 'Stopped' | 'Starting' | 'Running' | 'Paused' | 'Stopping' | 'Failed';

export interface VmCondition {
  type: string;
  status: 'True' | 'False';
  reason: string;
  message: string;
  lastTransitionTime: string;
}

/** A NIC's server-made values: chosen once at creation, kept across updates and restarts. */
export interface VmNicAllocation {
  name: string;
  network: string;
  mac: string;
  /** Only on networks with IPAM. */
  ip?: string;
}

export interface VmRecord {
  name: string;
  /** Also the VM's id for NIC/MAC/IP owners and the seed's instance-id. */
  uuid: string;
  generation: number;
  spec: VmSpec;
  nics: VmNicAllocation[];
  createdAt: string;
  updatedAt: string;
  /** The generation the domain was last defined with (undefined: never started). */
  definedGeneration?: number;
  conditions: VmCondition[];
  /**
   * The user's run intent: true after start/restart, false after stop (or a clean guest shutdown of a
   * RerunOnFailure VM), undefined before either. Always and RerunOnFailure VMs are kept running while it
   * is not false; Manual VMs are never acted on; Halted VMs are kept off whatever it says.
   */
  running?: boolean;
  /** How the domain last went down when the daemon did not ask for it (kept until the next start). */
  lastExit?: { cause: VmExitCause; at: string };
  /** The phase last published as an event, so each transition is published once, whoever notices it first. */
  observed?: VmPhase;
}

/**
 * Why a domain went down on its own: `shutdown` the guest powered off, `crashed` QEMU died or the guest
 * crashed, `destroyed` forced off outside the daemon (virsh destroy), `vanished` its definition is gone.
 */
export type VmExitCause = 'shutdown' | 'crashed' | 'destroyed' | 'vanished';
export const isFailure = (c: VmExitCause | undefined): boolean => c === 'crashed' || c === 'vanished';

/** What the reconciler sees of one VM (read under the VM's lock). */
export interface VmObservation {
  name: string;
  runStrategy: NonNullable<VmSpec['runStrategy']>;
  running: boolean | undefined;
  domain: DomainInfo | undefined;
  /** The record believes the domain runs (Started=True): false after our stop, a failed start or a noticed exit. */
  started: boolean;
  /** Some NIC of the VM is still plumbed. */
  plumbed: boolean;
  lastExit: VmRecord['lastExit'];
}

/** What the reconciler asks the service to do for one VM; pure values from reconciler.ts's decide(). */
export type VmReconcileAction =
  | { kind: 'none' }
  /** The domain went down on its own: record why, unplumb its NICs, maybe drop the run intent. */
  | { kind: 'settle'; cause: VmExitCause; running?: boolean }
  /** Start it again (the strategy says it should run). */
  | { kind: 'start'; reason: string }
  /** Stop it (Halted, or stopped intent while it runs). */
  | { kind: 'stop'; reason: string }
  /** It runs but the record says it does not: started behind the daemon's back; take it over. */
  | { kind: 'adopt'; reason: string }
  /** A restart is due but held back; shown as the RestartBackoff condition. */
  | { kind: 'backoff'; until: Date; failures: number };

export interface VmNicStatus {
  name: string;
  network: string;
  mac: string;
  ip: string | null;
  tap: string | null;
  dhcpAcked: boolean;
}

export interface VmStatus {
  phase: VmPhase;
  domain: string;
  uuid: string;
  /** True when the running domain was defined from an older generation (applies at the next start). */
  restartRequired: boolean;
  conditions: VmCondition[];
  nics: VmNicStatus[];
  /** The user's run intent (see VmRecord.running); null before any start or stop. */
  running: boolean | null;
  /** Guest agent data from the background cache (vm/guest-agent.ts); null while no guest agent answers. */
  guestAgent: GuestAgentInfo | null;
}

export interface VmView {
  name: string;
  generation: number;
  createdAt: string;
  updatedAt: string;
  spec: VmSpec;
  status: VmStatus;
}

export interface VmPutResult {
  vm: VmView;
  created: boolean;
  changed: boolean;
  dryRun: boolean;
  /** Top-level spec fields that differ from the stored spec, e.g. "~ /memory: 256 -> 512". */
  diff: string[];
  /** Dry run only: the domain XML a start would define (taps and MACs as they would be). */
  domainXml?: string;
}

export interface VmServiceDeps {
  store: Pick<Store, 'sublevel'>;
  libvirt: LibvirtClient;
  plumber: Pick<NicPlumber, 'plumb' | 'unplumb' | 'get'>;
  networks: Pick<NetworkService, 'nicAttachment' | 'ipam' | 'refresh'>;
  dhcp: Pick<DhcpService, 'attach' | 'detach' | 'linkChanged'>;
  leases?: Pick<LeaseRepo, 'list' | 'remove'>;
  macs: MacAllocator;
  /** Confines kernel and host-disk paths to the storage roots. */
  guard: VmDisksDeps['guard'];
  images: VmDisksDeps['images'];
  /** The host facts validation and the XML need; node service + capabilities in main. */
  host: () => Promise<{ virtType: 'kvm' | 'qemu'; emulator: string; capacity: HostCapacity }>;
  /** Serial sockets live here (libvirt creates them). */
  runDir: string;
  /** Per-VM directories (seed ISO, volumes) live here; must be inside a storage root libvirt's qemu can read. */
  vmDir: string;
  logger?: Logger;
  /** libvirt domain name of a VM; default `nodevirt-<name>`. */
  domainName?: (name: string) => string;
  /** Poll interval while waiting for an ACPI shutdown. Default 250 ms. */
  pollMs?: number;
  now?: () => Date;
  /** Cached guest-agent answers per libvirt domain; without it status.guestAgent stays null. */
  guestAgent?: Pick<GuestAgentCache, 'get'>;
  /** vm.created/updated/deleted/started/stopped/paused/resumed/crashed/restarted, each with a reason. */
  events?: EventSink;
}

export interface VmService {
  put(name: string, spec: VmSpec, opts?: { ifMatch?: string; dryRun?: boolean }): Promise<VmPutResult>;
  get(name: string): Promise<VmView>;
  list(): Promise<VmView[]>;
  delete(name: string, opts?: { ifMatch?: string; keepDisks?: boolean }): Promise<void>;
  /** 409 VM_CONFLICT for a Halted VM (change its runStrategy first). Records the intent to run. */
  start(name: string): Promise<VmView>;
  /** ACPI, forced after the grace period (or at once with force). Records the intent to be stopped. */
  stop(name: string, opts?: { force?: boolean }): Promise<VmView>;
  /** stop (ACPI, grace period) then start: re-plumbs and redefines, so a newer generation applies. */
  restart(name: string): Promise<VmView>;
  /** Freezes the vCPUs. 409 VM_NOT_RUNNING when off; a paused VM stays paused (no-op). */
  pause(name: string): Promise<VmView>;
  /** 409 VM_NOT_RUNNING when off, VM_NOT_PAUSED when it runs unpaused. */
  resume(name: string): Promise<VmView>;
  /** Hard reset (the reset button): same domain, same QEMU, same taps. 409 VM_NOT_RUNNING when off. */
  reset(name: string): Promise<VmView>;
  /** VM names in the store. */
  names(): Promise<string[]>;
  /** Under the VM's lock: observes it, asks decide() what to do and does it; undefined if the VM is gone. */
  reconcile(name: string, decide: (o: VmObservation) => VmReconcileAction): Promise<VmReconcileAction | undefined>;
  /** Called with the VM's name after every stored change (put, delete), so the reconciler acts at once. */
  onChange(fn: (name: string) => void): () => void;
  /**
   * At daemon start: for every VM whose domain runs (adopted, never restarted), attaches the DHCP servers of
   * its plumbed NICs again, so the guest's renewals are answered. Returns the VMs it adopted.
   */
  adoptRunning(): Promise<string[]>;
}

/**
 * The VM records as stored. Services built before the VM service (networks, images) read them through this
 * instead of naming the key space themselves.
 */
export const vmRecords = (store: Pick<Store, 'sublevel'>) => store.sublevel<VmRecord>('vms');

export const vmEtag = (generation: number) => `"${generation}"`;

/** Stable JSON (sorted keys, no undefined) so equal specs compare equal whatever their key order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

export function specDiff(before: VmSpec | undefined, after: VmSpec): string[] {
  const keys = [...new Set([...Object.keys(before ?? {}), ...Object.keys(after)])].sort();
  const out: string[] = [];
  for (const k of keys) {
    const a = (before as unknown as Record<string, unknown> | undefined)?.[k];
    const b = (after as unknown as Record<string, unknown>)[k];
    if (canonical(a) === canonical(b)) continue;
    if (a === undefined) out.push(`+ /${k}: ${canonical(b)}`);
    else if (b === undefined) out.push(`- /${k}: ${canonical(a)}`);
    else out.push(`~ /${k}: ${canonical(a)} -> ${canonical(b)}`);
  }
  return out;
}

function phaseOf(state: DomainState | undefined, lastExit?: VmRecord['lastExit']): VmPhase {
  switch (state) {
    case 'running':
    case 'blocked':
      return 'Running';
    case 'paused':
    case 'pmsuspended':
      return 'Paused';
    case 'shutdown':
      return 'Stopping';
    case 'crashed':
      return 'Failed';
    default:
      return isFailure(lastExit?.cause) ? 'Failed' : 'Stopped';
  }
}

const isUp = (d: DomainInfo | undefined): d is DomainInfo => d !== undefined && d.active;

/** libvirt's virDomainShutoffReason -> why the domain is off (2 destroyed, 3 crashed, 6 failed to start/QEMU died). */
export function exitCauseOf(d: DomainInfo | undefined): VmExitCause {
  if (d === undefined) return 'vanished';
  if (d.state === 'crashed') return 'crashed';
  switch (d.reason) {
    case 2:
      return 'destroyed';
    case 3:
    case 6:
      return 'crashed';
    default:
      return 'shutdown';
  }
}

export function createVmService(deps: VmServiceDeps): VmService {
  const records = vmRecords(deps.store);
  const log = deps.logger?.child({ component: 'vm' });
  const now = () => (deps.now ?? (() => new Date()))().toISOString();
  const domainOf = deps.domainName ?? ((name: string) => `nodevirt-${name}`);
  const pollMs = deps.pollMs ?? 250;
  const owner = (r: Pick<VmRecord, 'uuid'>, nic: string) => nicId(r.uuid, nic);
  const disks = createVmDisks(deps);
  const vmPath = (name: string) => disks.dirOf(name);
  const listeners = new Set<(name: string) => void>();
  const notifyChange = (name: string) => {
    for (const fn of listeners) {
      try {
        fn(name);
      } catch (e) {
        log?.warn({ vm: name, err: errorMessage(e) }, 'VM change listener failed');
      }
    }
  };
  const publish = (type: string, name: string, reason: string, data: Record<string, unknown> = {}) =>
    deps.events?.publish({ type: `vm.${type}`, subject: `vms/${name}`, data: { reason, ...data } });
  // Start and stop take seconds; GET shows them as Starting/Stopping meanwhile.
  const transitions = new Map<string, 'Starting' | 'Stopping'>();

  // One operation per VM at a time; different VMs proceed concurrently.
  const locks = new Map<string, Promise<unknown>>();
  const locked = <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const prev = locks.get(name) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    locks.set(name, tail);
    void tail.then(() => {
      if (locks.get(name) === tail) locks.delete(name);
    });
    return run;
  };

  const load = async (name: string): Promise<VmRecord> => {
    const r = await records.get(name);
    if (r === undefined) throw new AppError('VM_NOT_FOUND', `no VM named ${name}`, { extra: { name } });
    return r;
  };

  const setCondition = (r: VmRecord, type: string, ok: boolean, reason: string, message: string): void => {
    const status = ok ? 'True' : 'False';
    const old = r.conditions.find((c) => c.type === type);
    const lastTransitionTime = old && old.status === status ? old.lastTransitionTime : now();
    r.conditions = [...r.conditions.filter((c) => c.type !== type), { type, status, reason, message, lastTransitionTime }];
  };

  const domainState = async (name: string): Promise<DomainState | undefined> => (await deps.libvirt.lookupDomain(domainOf(name)))?.state;

  const view = async (given: VmRecord): Promise<VmView> => {
    // Transition, then domain state, then the record: a start that ends between these reads is either still
    // Starting here or has its conditions in the record read last, never a running domain with stale conditions.
    const transition = transitions.get(given.name);
    let state: DomainState | undefined;
    try {
      state = await domainState(given.name);
    } catch (e) {
      // libvirt away: the spec is still ours to show; the phase is the last we can say for sure.
      log?.debug({ vm: given.name, err: errorMessage(e) }, 'domain state unavailable');
    }
    const r = (await records.get(given.name)) ?? given;
    const leases = deps.leases ? await deps.leases.list() : [];
    const nics: VmNicStatus[] = [];
    for (const n of r.nics) {
      const plumbed = await deps.plumber.get(owner(r, n.name));
      const tap = plumbed?.tap ?? null;
      const acked =
        tap !== null && leases.some((l) => l.interface === tap && l.mac === n.mac && l.ip === n.ip && l.lastAckAt !== null && l.releasedAt === null);
      nics.push({ name: n.name, network: n.network, mac: n.mac, ip: n.ip ?? null, tap, dhcpAcked: acked });
    }
    const phase = transition ?? transitions.get(r.name) ?? phaseOf(state, r.lastExit);
    return {
      name: r.name,
      generation: r.generation,
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
      spec: r.spec,
      status: {
        phase,
        domain: domainOf(r.name),
        uuid: r.uuid,
        restartRequired: phase !== 'Stopped' && r.definedGeneration !== undefined && r.definedGeneration !== r.generation,
        conditions: r.conditions,
        nics,
        running: r.running ?? null,
        guestAgent: deps.guestAgent?.get(domainOf(r.name)) ?? null,
      },
    };
  };

  /** MACs and IPs for the spec's NICs: kept for NICs that stay, made for new ones. Returns the undo for the new ones. */
  const allocateNics = async (r: Pick<VmRecord, 'uuid' | 'nics'>, spec: VmSpec): Promise<{ nics: VmNicAllocation[]; release: VmNicAllocation[]; undo: () => Promise<void> }> => {
    const undo = createReverter();
    const out: VmNicAllocation[] = [];
    try {
      for (const [i, n] of (spec.interfaces ?? []).entries()) {
        const name = nicName(n, i);
        const id = owner(r, name);
        const old = r.nics.find((o) => o.name === name && o.network === n.network);
        let mac = old?.mac;
        if (n.mac !== undefined && n.mac.toLowerCase() !== mac) {
          mac = await deps.macs.reserve(n.mac, id);
          const m = mac;
          undo.add(() => deps.macs.release(m, id));
        } else if (mac === undefined) {
          mac = await deps.macs.allocate(id);
          const m = mac;
          undo.add(() => deps.macs.release(m, id));
        }
        const att = await deps.networks.nicAttachment(n.network);
        let ip: string | undefined;
        if (att.ipam !== undefined) {
          const ipam = await deps.networks.ipam(n.network);
          const had = await ipam.addressOf(id);
          if (n.ip !== undefined && n.ip !== had) ip = await ipam.reserve(n.ip, id);
          else ip = had ?? (await ipam.allocate(id));
          if (ip !== had) undo.add(() => (had === undefined ? ipam.release(id) : ipam.reserve(had, id).then(() => undefined)));
        } else if (n.ip !== undefined) {
          throw new AppError('VM_SPEC_INVALID', `network ${n.network} has no IPAM: the IP is the LAN's to give`, {
            issues: [{ pointer: `/interfaces/${i}/ip`, reason: `network ${n.network} has no IPAM, so no fixed IP can be given` }],
          });
        }
        out.push({ name, network: n.network, mac, ...(ip === undefined ? {} : { ip }) });
      }
    } catch (e) {
      await undo.fail();
      throw e;
    }
    // NICs that went away or moved network, and MACs a NIC no longer uses, are released after the store write.
    const release = r.nics.filter((o) => !out.some((n) => n.name === o.name && n.network === o.network && n.mac === o.mac));
    return { nics: out, release, undo: async () => void (await undo.fail()) };
  };

  const releaseNic = async (r: Pick<VmRecord, 'uuid'>, n: VmNicAllocation, keep: VmNicAllocation[]): Promise<void> => {
    const id = owner(r, n.name);
    if (!keep.some((k) => k.mac === n.mac)) await deps.macs.release(n.mac, id);
    const still = keep.find((k) => k.name === n.name);
    if (n.ip !== undefined && (still === undefined || still.network !== n.network)) {
      await (await deps.networks.ipam(n.network)).release(id).catch((e: unknown) => log?.warn({ nic: id, err: errorMessage(e) }, 'IP release failed'));
      // A port forward or floating IP that named this NIC must stop pointing at the released address now.
      await deps.networks.refresh(n.network).catch((e: unknown) => log?.warn({ network: n.network, err: errorMessage(e) }, 'network refresh after an IP release failed'));
    }
  };

  const checkSpec = async (name: string, spec: VmSpec): Promise<void> => {
    const issues: ErrorIssue[] = [];
    if (spec.name !== name) issues.push({ pointer: '/name', reason: `must equal the name in the path (${name})` });
    const { capacity } = await deps.host();
    issues.push(...validateVmSpec(spec, capacity));
    if (!issues.length) issues.push(...(await disks.check(spec)));
    if (issues.length) throw new AppError('VM_SPEC_INVALID', `the VM spec has ${issues.length} problem(s)`, { issues });
  };

  const xmlFor = async (r: VmRecord, taps: string[], dryRun: boolean): Promise<string> => {
    const host = await deps.host();
    const storage = await disks.resolve(r.name, r.spec, dryRun);
    const seed = r.spec.cloudInit !== undefined ? join(vmPath(r.name), 'seed.iso') : undefined;
    return buildDomainXml(r.spec, {
      domainName: domainOf(r.name),
      uuid: r.uuid,
      virtType: host.virtType,
      emulator: host.emulator,
      generation: r.generation,
      ...storage,
      nics: (r.spec.interfaces ?? []).map((n, i) => ({ tap: taps[i] ?? '', mac: r.nics[i]?.mac ?? '', model: n.model ?? 'virtio' })),
      serialSocket: join(deps.runDir, `${domainOf(r.name)}.serial`),
      ...(seed === undefined ? {} : { cloudInitIso: seed }),
    });
  };

  /** Unplumbs every NIC of the VM and stops its DHCP servers; tolerates NICs never plumbed. */
  const unplumbAll = async (r: VmRecord, nics: VmNicAllocation[]): Promise<string[]> => {
    const taps: string[] = [];
    for (const n of nics) {
      const id = owner(r, n.name);
      const rec = await deps.plumber.get(id);
      if (rec === undefined) continue;
      taps.push(rec.tap);
      deps.dhcp.detach(rec.tap);
      await deps.plumber.unplumb(id);
      // The lease was the tap's: a re-plumbed NIC (a restart may reuse the name) is dhcpAcked only after a new ACK.
      await deps.leases?.remove(rec.tap);
    }
    return taps;
  };

  const waitInactive = async (name: string, ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const info = await deps.libvirt.lookupDomain(domainOf(name));
      if (info === undefined || !info.active) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((ok) => setTimeout(ok, pollMs));
    }
  };

  const stopDomain = async (r: VmRecord, force: boolean): Promise<void> => {
    const info = await deps.libvirt.lookupDomain(domainOf(r.name));
    if (info?.active) {
      const grace = (r.spec.stopGracePeriodSeconds ?? DEFAULTS.stopGracePeriodSeconds) * 1000;
      let down = false;
      if (!force && grace > 0 && info.state === 'running') {
        await deps.libvirt.shutdownDomain(domainOf(r.name));
        down = await waitInactive(r.name, grace);
      }
      if (!down) {
        log?.info({ vm: r.name, force }, force ? 'destroying domain' : 'ACPI shutdown not finished within the grace period: destroying');
        await deps.libvirt.destroyDomain(domainOf(r.name)).catch(async (e: unknown) => {
          // It may have gone down between the last poll and the destroy.
          if ((await deps.libvirt.lookupDomain(domainOf(r.name)))?.active) throw e;
        });
      }
    }
    await unplumbAll(r, r.nics);
  };

  /** (Re)attaches the DHCP servers of the VM's plumbed NICs with IPAM: after a daemon restart, or a takeover. */
  const attachDhcp = async (r: VmRecord): Promise<void> => {
    for (const n of r.nics) {
      const rec = await deps.plumber.get(owner(r, n.name));
      if (rec === undefined || n.ip === undefined) continue;
      const offer = dhcpOffer(await deps.networks.nicAttachment(n.network), { mac: n.mac, ip: n.ip, hostname: r.name });
      if (offer === undefined) continue;
      deps.dhcp.detach(rec.tap);
      deps.dhcp.attach({ ifname: rec.tap, ...offer });
      deps.dhcp.linkChanged(rec.tap);
    }
  };

  /**
   * Plumbs (or reuses, when a restart finds them still plumbed: plumb is idempotent for the same spec) the
   * NICs, writes the seed, defines and starts the domain. On failure everything it did is undone and the
   * Started condition says why.
   */
  const startDomain = async (r: VmRecord, reason: string): Promise<void> => {
    const name = r.name;
    const undo = createReverter();
    transitions.set(name, 'Starting');
    try {
      const taps: string[] = [];
      for (const n of r.nics) {
        const att = await deps.networks.nicAttachment(n.network);
        const id = owner(r, n.name);
        const p = await deps.plumber.plumb({
          vmId: r.uuid,
          nicId: n.name,
          mac: n.mac,
          mtu: att.mtu,
          ...(n.ip === undefined ? {} : { ipv4: n.ip }),
          ...(att.bridge === undefined ? {} : { bridge: att.bridge }),
        });
        undo.add(() => deps.plumber.unplumb(id).then(() => undefined));
        taps.push(p.tap);
        const offer = n.ip === undefined ? undefined : dhcpOffer(att, { mac: n.mac, ip: n.ip, hostname: r.name });
        if (offer !== undefined) {
          // A restart reuses the tap: its old server (and its leases) is replaced by one for the current spec.
          deps.dhcp.detach(p.tap);
          deps.dhcp.attach({ ifname: p.tap, ...offer });
          undo.add(() => void deps.dhcp.detach(p.tap));
          deps.dhcp.linkChanged(p.tap);
        }
        // Port isolation and routed /32 routes apply to ports that exist: now the tap does.
        await deps.networks.refresh(n.network);
      }
      if (r.spec.cloudInit !== undefined) {
        await mkdir(vmPath(name), { recursive: true, mode: 0o755 });
        await writeSeedIso(seedFiles(r.spec, r.nics.map((n) => ({ name: n.name, mac: n.mac })), r.uuid), join(vmPath(name), 'seed.iso'));
      }
      await deps.libvirt.defineDomain(await xmlFor(r, taps, false));
      await deps.libvirt.startDomain(domainOf(name));
      undo.success();
      // Starting until the record says it started, so no reader sees a running domain with stale conditions.
      r.definedGeneration = r.generation;
      delete r.lastExit;
      setCondition(r, 'Started', true, reason, `started generation ${r.generation}`);
      setCondition(r, 'Ready', true, 'Running', 'the domain runs');
      r.conditions = r.conditions.filter((c) => c.type !== 'RestartBackoff');
      r.observed = 'Running';
      await records.put(name, r);
    } catch (e) {
      const errors = await undo.fail();
      if (errors.length) log?.warn({ vm: name, errors: errors.map(errorMessage) }, 'undo after a failed start left errors');
      setCondition(r, 'Started', false, 'StartFailed', errorMessage(e));
      setCondition(r, 'Ready', false, 'StartFailed', errorMessage(e));
      await records.put(name, r);
      throw e;
    } finally {
      transitions.delete(name);
    }
    log?.info({ vm: name, generation: r.generation, reason }, 'VM started');
  };

  const stopAndRecord = async (r: VmRecord, force: boolean, reason: string): Promise<void> => {
    // Stopping until the record says why it is off, so no reader sees an off domain with stale conditions.
    transitions.set(r.name, 'Stopping');
    try {
      await stopDomain(r, force);
      delete r.lastExit;
      setCondition(r, 'Started', false, reason, force ? 'forced off' : 'stopped');
      setCondition(r, 'Ready', false, reason, 'the domain is off');
      r.observed = 'Stopped';
      await records.put(r.name, r);
    } finally {
      transitions.delete(r.name);
    }
  };

  const requireUp = async (r: VmRecord, action: string): Promise<DomainInfo> => {
    const info = await deps.libvirt.lookupDomain(domainOf(r.name));
    if (!isUp(info) || info.state === 'shutdown') {
      throw new AppError('VM_NOT_RUNNING', `cannot ${action} VM ${r.name}: it is not running`, { extra: { name: r.name, phase: phaseOf(info?.state, r.lastExit) } });
    }
    return info;
  };

  const observe = async (r: VmRecord): Promise<VmObservation> => {
    const domain = await deps.libvirt.lookupDomain(domainOf(r.name));
    const plumbed = (await Promise.all(r.nics.map((n) => deps.plumber.get(owner(r, n.name))))).some((x) => x !== undefined);
    return {
      name: r.name,
      runStrategy: r.spec.runStrategy ?? DEFAULTS.runStrategy,
      running: r.running,
      domain,
      started: r.conditions.some((c) => c.type === 'Started' && c.status === 'True'),
      plumbed,
      lastExit: r.lastExit,
    };
  };

  const apply = async (r: VmRecord, a: VmReconcileAction): Promise<void> => {
    switch (a.kind) {
      case 'none':
        return;
      case 'settle': {
        await unplumbAll(r, r.nics);
        const failed = isFailure(a.cause);
        r.lastExit = { cause: a.cause, at: now() };
        if (a.running !== undefined) r.running = a.running;
        const why = { shutdown: 'GuestShutdown', crashed: 'Crashed', destroyed: 'DestroyedOutsideDaemon', vanished: 'DomainVanished' }[a.cause];
        const msg = {
          shutdown: 'the guest powered itself off',
          crashed: 'QEMU died or the guest crashed',
          destroyed: 'the domain was forced off outside the daemon',
          vanished: 'the libvirt domain is gone (undefined outside the daemon)',
        }[a.cause];
        setCondition(r, 'Started', false, why, msg);
        setCondition(r, 'Ready', false, why, msg);
        const phase: VmPhase = failed ? 'Failed' : 'Stopped';
        if (r.observed !== phase) publish(failed ? 'crashed' : 'stopped', r.name, why, { message: msg });
        r.observed = phase;
        await records.put(r.name, r);
        log?.info({ vm: r.name, cause: a.cause }, 'VM went down on its own; NICs unplumbed');
        return;
      }
      case 'start': {
        const again = r.lastExit !== undefined;
        await startDomain(r, a.reason);
        publish(again ? 'restarted' : 'started', r.name, a.reason);
        return;
      }
      case 'stop': {
        await stopAndRecord(r, false, a.reason);
        publish('stopped', r.name, a.reason);
        return;
      }
      case 'adopt': {
        await attachDhcp(r);
        delete r.lastExit;
        setCondition(r, 'Started', true, a.reason, 'the domain was started outside the daemon');
        setCondition(r, 'Ready', true, 'Running', 'the domain runs');
        if (r.observed !== 'Running') publish('started', r.name, a.reason);
        r.observed = 'Running';
        await records.put(r.name, r);
        return;
      }
      case 'backoff': {
        const secs = Math.max(0, Math.round((a.until.getTime() - Date.now()) / 1000));
        setCondition(r, 'RestartBackoff', true, 'CrashLoop', `${a.failures} failure(s) in a row; next restart in ${secs} s (at ${a.until.toISOString()})`);
        await records.put(r.name, r);
        return;
      }
    }
  };

  return {
    put: (name, spec, opts = {}) =>
      locked(name, async () => {
        await checkSpec(name, spec);
        const old = await records.get(name);
        if (opts.ifMatch !== undefined && opts.ifMatch !== '*' && (old === undefined || opts.ifMatch !== vmEtag(old.generation))) {
          throw new AppError('PRECONDITION_FAILED', `If-Match ${opts.ifMatch} does not match the VM's current ETag`, {
            extra: { current: old === undefined ? null : vmEtag(old.generation) },
          });
        }
        const diff = specDiff(old?.spec, spec);
        const changed = diff.length > 0;
        const base: VmRecord = old ?? { name, uuid: randomUUID(), generation: 0, spec, nics: [], createdAt: now(), updatedAt: now(), conditions: [] };
        if (opts.dryRun) {
          const draft: VmRecord = { ...base, spec, generation: changed ? base.generation + 1 : base.generation };
          // MACs/IPs of new NICs are unknown until applied; existing ones keep theirs.
          draft.nics = (spec.interfaces ?? []).map((n, i) => {
            const had = base.nics.find((o) => o.name === nicName(n, i) && o.network === n.network);
            return { name: nicName(n, i), network: n.network, mac: n.mac ?? had?.mac ?? '00:00:00:00:00:00' };
          });
          const taps = await Promise.all(draft.nics.map(async (n) => (await deps.plumber.get(owner(base, n.name)))?.tap ?? '(assigned at start)'));
          const domainXml = await xmlFor(draft, taps, true);
          return { vm: await view(old ?? draft), created: old === undefined, changed, dryRun: true, diff, domainXml };
        }
        if (!changed && old !== undefined) return { vm: await view(old), created: false, changed: false, dryRun: false, diff };

        const state = old === undefined ? undefined : await domainState(name);
        const running = state !== undefined && phaseOf(state) !== 'Stopped';
        if (running && canonical(old?.spec.interfaces ?? []) !== canonical(spec.interfaces ?? [])) {
          throw new AppError('VM_CONFLICT', 'interfaces cannot change while the VM runs (no hotplug yet): stop it first', { extra: { name } });
        }
        const alloc = await allocateNics(base, spec);
        const next: VmRecord = { ...base, spec, nics: alloc.nics, generation: base.generation + 1, updatedAt: now() };
        // A new run strategy is a new statement of intent: an earlier stop no longer holds an Always VM down.
        if (old !== undefined && (old.spec.runStrategy ?? DEFAULTS.runStrategy) !== (spec.runStrategy ?? DEFAULTS.runStrategy)) delete next.running;
        try {
          await records.put(name, next);
        } catch (e) {
          await alloc.undo();
          throw e;
        }
        for (const n of alloc.release) await releaseNic(base, n, alloc.nics);
        log?.info({ vm: name, generation: next.generation, diff }, old === undefined ? 'VM created' : 'VM updated');
        publish(old === undefined ? 'created' : 'updated', name, 'api', { generation: next.generation, diff });
        notifyChange(name);
        return { vm: await view(next), created: old === undefined, changed: true, dryRun: false, diff };
      }),

    get: async (name) => view(await load(name)),

    list: async () => Promise.all((await records.list()).map(([, r]) => view(r))),

    delete: (name, opts = {}) =>
      locked(name, async () => {
        const r = await load(name);
        if (opts.ifMatch !== undefined && opts.ifMatch !== '*' && opts.ifMatch !== vmEtag(r.generation)) {
          throw new AppError('PRECONDITION_FAILED', `If-Match ${opts.ifMatch} does not match the VM's current ETag`, { extra: { current: vmEtag(r.generation) } });
        }
        // Deletion does not wait for the guest: its disks go (or stay, with keepDisks) either way.
        const taps = (await Promise.all(r.nics.map((n) => deps.plumber.get(owner(r, n.name))))).flatMap((x) => (x ? [x.tap] : []));
        await stopDomain(r, true);
        if (await deps.libvirt.lookupDomain(domainOf(name))) await deps.libvirt.undefineDomain(domainOf(name));
        for (const n of r.nics) await releaseNic(r, n, []);
        if (deps.leases) for (const t of taps) await deps.leases.remove(t);
        await disks.remove(name, opts.keepDisks ?? false);
        await records.del(name);
        log?.info({ vm: name, keepDisks: opts.keepDisks ?? false }, 'VM deleted');
        publish('deleted', name, 'api');
        notifyChange(name);
      }),

    start: (name) =>
      locked(name, async () => {
        const r = await load(name);
        if ((r.spec.runStrategy ?? DEFAULTS.runStrategy) === 'Halted') {
          throw new AppError('VM_CONFLICT', `VM ${name} has runStrategy Halted, which keeps it stopped: change its runStrategy to start it`, { extra: { name } });
        }
        const info = await deps.libvirt.lookupDomain(domainOf(name));
        if (r.running !== true) {
          r.running = true;
          await records.put(name, r);
        }
        if (info?.active) return view(r);
        await startDomain(r, 'Started');
        publish('started', name, 'api');
        return view(r);
      }),

    stop: (name, opts = {}) =>
      locked(name, async () => {
        const r = await load(name);
        const wasUp = isUp(await deps.libvirt.lookupDomain(domainOf(name)));
        // The intent is stored first: an Always VM whose guest goes down during the grace period stays down.
        r.running = false;
        await records.put(name, r);
        await stopAndRecord(r, opts.force ?? false, 'Stopped');
        if (wasUp) publish('stopped', name, opts.force ? 'api-forced' : 'api');
        return view(r);
      }),

    restart: (name) =>
      locked(name, async () => {
        const r = await load(name);
        await requireUp(r, 'restart');
        r.running = true;
        await records.put(name, r);
        await stopAndRecord(r, false, 'Restarting');
        await startDomain(r, 'Restarted');
        publish('restarted', name, 'api');
        return view(r);
      }),

    pause: (name) =>
      locked(name, async () => {
        const r = await load(name);
        const info = await requireUp(r, 'pause');
        if (info.state === 'paused' || info.state === 'pmsuspended') return view(r);
        await deps.libvirt.suspendDomain(domainOf(name));
        r.observed = 'Paused';
        setCondition(r, 'Ready', false, 'Paused', 'the vCPUs are paused');
        await records.put(name, r);
        publish('paused', name, 'api');
        return view(r);
      }),

    resume: (name) =>
      locked(name, async () => {
        const r = await load(name);
        const info = await requireUp(r, 'resume');
        if (info.state !== 'paused') throw new AppError('VM_NOT_PAUSED', `cannot resume VM ${name}: it is not paused`, { extra: { name, phase: phaseOf(info.state) } });
        await deps.libvirt.resumeDomain(domainOf(name));
        r.observed = 'Running';
        setCondition(r, 'Ready', true, 'Running', 'the domain runs');
        await records.put(name, r);
        publish('resumed', name, 'api');
        return view(r);
      }),

    reset: (name) =>
      locked(name, async () => {
        const r = await load(name);
        await requireUp(r, 'reset');
        await deps.libvirt.resetDomain(domainOf(name));
        publish('reset', name, 'api');
        return view(r);
      }),

    adoptRunning: async () => {
      const adopted: string[] = [];
      for (const [name, r] of await records.list()) {
        await locked(name, async () => {
          const info = await deps.libvirt.lookupDomain(domainOf(name));
          if (!info?.active) return;
          await attachDhcp(r);
          adopted.push(name);
        });
      }
      if (adopted.length) log?.info({ vms: adopted }, 'running VMs adopted; their DHCP servers answer again');
      return adopted;
    },

    names: async () => (await records.list()).map(([name]) => name),

    reconcile: (name, decide) =>
      locked(name, async () => {
        const r = await records.get(name);
        if (r === undefined) return undefined;
        const action = decide(await observe(r));
        await apply(r, action);
        return action;
      }),

    onChange: (fn) => {
      listeners.add(fn);
      return () => void listeners.delete(fn);
    },
  };
}

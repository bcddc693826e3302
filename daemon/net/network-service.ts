// The Networks service: declarative PUT (plan from what the host has, apply with a revert stack, persist),
// GET with per-check status, DELETE refused while NICs use the network. The generation moves only when
// the spec really changes; it is the ETag, and If-Match guards against lost updates.
import { randomBytes } from 'node:crypto';
import { AppError, errorMessage, isAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { KeySpace, Store } from '../store/store.js';
import { createIpam, type Ipam, type IpamEntry } from './ipam.js';
import { captureCheckpoint, renderHostOp } from './checkpoint.js';
import type { HostChanges } from './host-change.js';
import { addressedUplinks, bridgeMovePlan, networkBridge, vlanLinkName } from './network-bridge.js';
import { driverFor, planNetwork } from './network-drivers.js';
import { nftTableBatch, readHostState, type NetAdapters } from './network-apply.js';
import { isOurs } from './names.js';
import { floatingIpChecks } from './network-routed.js';
import type { HostState } from './network-model.js';
import { isIpv4, normaliseSpec, renderDiff, sameSpec, describeChange, type FloatingIp, type NetworkSpec, type NicAttachment, type NormalSpec, type StatusCheck } from './network-model.js';

export interface NetworkRecord {
  name: string;
  spec: NormalSpec;
  generation: number;
  createdAt: string;
  updatedAt: string;
  /** The nft scripts we last applied, keyed "family table": what "unchanged" is compared against. */
  nft: Record<string, string>;
  /**
   * The host change (with rollback) that moved the host's address onto this network's bridge, and the
   * spec before it: if the change ends reverted, reconcile() puts that spec back (or drops a new network).
   */
  hostChange?: { id: string; before: NormalSpec | undefined };
}

/** A host change as a network's status shows it. */
export interface HostChangeView {
  id: string;
  state: 'pending' | 'confirmed' | 'reverted' | 'failed';
  /** When an unconfirmed change is reverted (ISO time). */
  deadline: string;
  reason?: string;
}

export interface NetworkView {
  name: string;
  generation: number;
  spec: NormalSpec;
  status: { ready: boolean; bridge: string | undefined; checks: StatusCheck[]; hostChange?: HostChangeView };
  createdAt: string;
  updatedAt: string;
}

export interface PutResult {
  network: NetworkView;
  created: boolean;
  /** The spec changed (the generation moved) or the host needed changes. */
  changed: boolean;
  dryRun: boolean;
  changes: string[];
  diff: string;
}

/** A floating IP as stored, with what the host shows for it (the network's `floating:IP` check). */
export interface FloatingIpView extends FloatingIp {
  /** The NIC's address on the network, once it has one. */
  nicAddress: string | undefined;
  ready: boolean;
  message: string;
}

export interface NetworkServiceDeps {
  store: Pick<Store, 'sublevel'>;
  adapters: NetAdapters;
  /** The VM layer's answer to "which NICs use this network" (ids "vmId/nicId"). */
  nicsUsing?: (network: string) => Promise<string[]>;
  /**
   * Port forwards and floating IPs name their target "<vm name>/<nic>", while IPAM owners are "<vm id>/<nic>"
   * (ids survive nothing but the VM itself, names are what users type): the VM layer maps one to the other.
   */
  nicOwnerByName?: () => Promise<ReadonlyMap<string, string>>;
  logger?: Logger;
  now?: () => Date;
  /**
   * Host changes with rollback (host-change.ts): a managed bridge that takes an uplink carrying the host's
   * addresses is applied through it. Without it such a PUT is refused rather than risk cutting the node off.
   */
  hostChanges?: HostChanges;
  /** The namespace the host changes work in (tests; the adapters carry their own). */
  hostChangeNetns?: string;
}

export interface PutOptions {
  ifMatch?: string;
  dryRun?: boolean;
  /** A host change with rollback confirms itself when its probes pass (default true); false waits for confirm(). */
  autoConfirm?: boolean;
  /** Its deadline (default 60000 ms, 1000..3600000): unconfirmed by then, it is reverted. */
  rollbackTimeoutMs?: number;
  /**
   * Extra probes of such a change besides the default gateway: http(s) URLs (cluster peers...), GET, 2xx/3xx
   * passes. Only those that pass before the change count (host-change.ts); a bad URL is HOST_CHANGE_INVALID.
   */
  probeUrls?: string[];
}

export interface NetworkService {
  put(name: string, spec: NetworkSpec, opts?: PutOptions): Promise<PutResult>;
  /** Confirms the network's pending host change; HOST_CHANGE_NOT_FOUND without one, HOST_CHANGE_CONFLICT once reverted. */
  confirm(name: string): Promise<NetworkView>;
  get(name: string): Promise<NetworkView>;
  list(): Promise<NetworkView[]>;
  delete(name: string, opts?: { ifMatch?: string }): Promise<void>;
  /** How a NIC attaches to this network (nic.ts spec fields); NETWORK_NOT_FOUND. */
  nicAttachment(name: string): Promise<NicAttachment>;
  /** The network's address allocator (IPAM networks only); NETWORK_INVALID without IPAM. */
  ipam(name: string): Promise<Ipam>;
  /**
   * Kernel links the networks own (managed bridges, VLAN sub-interfaces), for nic.ts's sweep
   * (`alsoOwned`): a bridge of ours that no network record names is then reported as an orphan.
   */
  ownedLinks(): Promise<string[]>;
  /** A routed network's floating IPs; NETWORK_NOT_FOUND, NETWORK_INVALID for other types. */
  floatingIps(name: string): Promise<FloatingIpView[]>;
  /** FLOATING_IP_NOT_FOUND when the network has no such floating IP. */
  floatingIp(name: string, ip: string): Promise<FloatingIpView>;
  /**
   * Maps `ip` to a NIC (creates or re-targets it): a spec change of the network, applied like its PUT
   * (so persisted, reconciled at start and visible in the network's spec and generation).
   */
  floatingIpPut(name: string, ip: string, target: { vm: string; nic: string }): Promise<{ floatingIp: FloatingIpView; created: boolean; changed: boolean; changes: string[] }>;
  floatingIpDelete(name: string, ip: string): Promise<void>;
  /** Re-plans against the host (e.g. after a NIC got its address, so its port forward appears). */
  refresh(name: string): Promise<string[]>;
  /**
   * At start-up: finishes any apply a crash interrupted (rolled forward to the spec it was applying) and
   * re-converges every network (after a host reboot its bridges and tables are gone). Never throws for
   * one network: each result says what changed or why it could not.
   */
  reconcile(): Promise<Array<{ name: string; changes: string[]; interrupted: boolean; error?: string }>>;
  /**
   * Deletes nft tables named with our prefix (NAT and routed networks' own tables) that no network record
   * or interrupted apply owns, e.g. left by a crash between deleting a network's record and its table.
   * Others' tables and the NICs' shared guard tables (nic.ts) are never touched. Part of reconcile().
   */
  sweepTables(): Promise<Array<{ family: string; name: string }>>;
}

/** Strong ETag of a generation. */
export const etagOf = (generation: number) => `"${generation}"`;

function checkIfMatch(ifMatch: string | undefined, rec: NetworkRecord | undefined, name: string): void {
  if (ifMatch === undefined) return;
  const tags = ifMatch.split(',').map((t) => t.trim().replace(/^W\//, ''));
  if (tags.includes('*') ? rec !== undefined : rec !== undefined && tags.includes(etagOf(rec.generation))) return;
  throw new AppError('PRECONDITION_FAILED', rec === undefined ? `network ${name} does not exist (If-Match: ${ifMatch})` : `network ${name} is at generation ${rec.generation}, not ${ifMatch}`, {
    extra: { generation: rec?.generation },
  });
}

/**
 * NIC addresses keyed by IPAM owner ("<vm id>/<nic>"), which is what iteration yields (routes, status), that
 * also answers get() for "<vm name>/<nic>", the form forwards and floating IPs use.
 */
class NicAddressMap extends Map<string, string> {
  constructor(private readonly ownerByName: ReadonlyMap<string, string>) {
    super();
  }

  override get(key: string): string | undefined {
    const direct = super.get(key);
    if (direct !== undefined) return direct;
    const owner = this.ownerByName.get(key);
    return owner === undefined ? undefined : super.get(owner);
  }
}

export function createNetworkService(deps: NetworkServiceDeps): NetworkService {
  const records: KeySpace<NetworkRecord> = deps.store.sublevel<NetworkRecord>('networks');
  const a = deps.adapters;
  const now = deps.now ?? (() => new Date());
  const log = deps.logger?.child({ component: 'networks' });
  const nicsUsing = deps.nicsUsing ?? (async () => []);
  // One change at a time: plans read the host, and two concurrent plans would race on it.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };
  const intents: KeySpace<{ spec: NormalSpec; at: string }> = deps.store.sublevel('network-intents');
  const ipamEntries = (name: string) => deps.store.sublevel<IpamEntry>(`ipam:${name}`);
  // One allocator per network and subnet: its queue is what makes check-then-record atomic.
  const ipams = new Map<string, { key: string; ipam: Ipam }>();

  const must = async (name: string) => {
    const r = await records.get(name);
    if (!r) throw new AppError('NETWORK_NOT_FOUND', `no network ${name}`);
    return r;
  };

  const nicAddresses = async (name: string, spec: NormalSpec): Promise<Map<string, string>> => {
    const byName = spec.ipam === undefined && spec.routed === undefined ? new Map<string, string>() : ((await deps.nicOwnerByName?.()) ?? new Map<string, string>());
    const m = new NicAddressMap(byName);
    if (spec.ipam === undefined && spec.routed === undefined) return m;
    for (const [k, v] of await ipamEntries(name).list()) if (k.startsWith('ip/')) m.set(v.owner, v.ip);
    return m;
  };

  const host = (name: string, spec: NormalSpec, rec: NetworkRecord | undefined) => readHostState(a, driverFor(spec.type).query(name, spec), rec?.nft ?? {});

  // This daemon's mark on the nft tables its networks create, made once and kept with the networks.
  const meta = deps.store.sublevel<string>('network-meta');
  let tag: string | undefined;
  const tableTag = async () => {
    if (tag === undefined) {
      tag = await meta.get('tableTag');
      if (tag === undefined) {
        tag = `nodevirt:${randomBytes(6).toString('hex')}`;
        await meta.put('tableTag', tag);
      }
    }
    return tag;
  };
  const tagged = async (): Promise<NetAdapters> => ({ ...a, tableTag: await tableTag() });

  const sweepTablesLocked = async () => {
    const owned = new Set<string>();
    const specs = [...(await records.list()).map(([n, r]) => [n, r.spec] as const), ...(await intents.list()).map(([n, i]) => [n, i.spec] as const)];
    for (const [name, spec] of specs) {
      for (const t of driverFor(spec.type).query(name, spec).tables) owned.add(`${t.family} ${t.table}`);
      // Whatever an earlier apply recorded as applied stays owned until its network converges again.
      for (const k of Object.keys((await records.get(name))?.nft ?? {})) owned.add(k);
    }
    const tag = await tableTag();
    const orphans: Array<{ family: string; name: string }> = [];
    for (const t of await a.nft.listTables()) {
      // Only tables this daemon made (its tag): another daemon's or a test's in the same namespace stay.
      if (isOurs(t.name) && !owned.has(`${t.family} ${t.name}`) && (await a.nft.tableComment(t.family, t.name)) === tag) orphans.push(t);
    }
    if (orphans.length > 0) {
      await a.nft.apply(orphans.map((t) => nftTableBatch(t.family, t.name, undefined)).join(''));
      log?.warn({ tables: orphans.map((t) => `${t.family} ${t.name}`) }, 'removed nft tables of ours that no network owns');
    }
    return orphans;
  };

  const view = async (rec: NetworkRecord): Promise<NetworkView> => {
    const d = driverFor(rec.spec.type);
    const h = await host(rec.name, rec.spec, rec);
    const checks = d.status(rec.name, rec.spec, h, await nicAddresses(rec.name, rec.spec));
    const hc = rec.hostChange === undefined ? undefined : await deps.hostChanges?.get(rec.hostChange.id);
    const hostChange: HostChangeView | undefined =
      hc === undefined ? undefined : { id: hc.id, state: hc.state, deadline: new Date(hc.deadline).toISOString(), ...(hc.reason === undefined ? {} : { reason: hc.reason }) };
    if (hostChange !== undefined && hostChange.state !== 'confirmed') checks.push({ name: 'host-change', ok: false, message: `host change ${hostChange.id} is ${hostChange.state}` });
    return {
      name: rec.name,
      generation: rec.generation,
      spec: rec.spec,
      status: { ready: checks.every((c) => c.ok), bridge: d.nicAttachment(rec.name, rec.spec).bridge, checks, ...(hostChange === undefined ? {} : { hostChange }) },
      createdAt: rec.createdAt,
      updatedAt: rec.updatedAt,
    };
  };

  /**
   * Plans and (unless dry) applies; returns the record to store and the change lines. The intent is
   * recorded before the kernel is touched, so a daemon killed mid-apply (when no revert can run) leaves
   * a trace that reconcile() rolls forward; a failure that the revert stack undid clears it.
   */
  const converge = async (name: string, desired: NormalSpec, prev: NetworkRecord | undefined, dryRun: boolean) => {
    const h = await host(name, desired, prev);
    const { changes, diff } = planNetwork({ name, desired, previous: prev?.spec, host: h, nicAddresses: await nicAddresses(name, desired) });
    const nft = { ...(prev?.nft ?? {}) };
    for (const c of changes) {
      if (c.kind !== 'nft-table') continue;
      const k = `${c.family} ${c.table}`;
      if (c.script === undefined) delete nft[k];
      else nft[k] = c.script;
    }
    if (!dryRun && changes.length > 0) {
      await intents.put(name, { spec: desired, at: now().toISOString() });
      try {
        await driverFor(desired.type).apply(await tagged(), changes);
      } catch (e) {
        // The revert stack ran; if it failed too, the intent stays so reconcile() finishes the job.
        if (!(isAppError(e) && /undoing the applied changes failed/.test(e.message))) await intents.del(name);
        throw e;
      }
      log?.info({ network: name, changes: changes.length }, 'network applied');
    }
    return { changes, diff, nft };
  };

  /**
   * The vmbr0 move through a host change with rollback: checkpoint, apply (bridge + the uplink's addresses
   * and routes), probe the default gateway, then auto-confirm or wait. A reverted change fails the PUT and
   * stores nothing; otherwise the record names the change, and the usual plan finishes the rest.
   */
  const moveWithRollback = async (name: string, desired: NormalSpec, prev: NetworkRecord | undefined, uplinks: string[], h: HostState, opts: PutOptions) => {
    const bridge = networkBridge(name, desired);
    if (uplinks.length > 1) throw new AppError('NETWORK_INVALID', `network ${name}: uplinks ${uplinks.join(', ')} all carry addresses; move one host address at a time`);
    const uplink = uplinks[0]!;
    if (h.links.has(bridge)) throw new AppError('NETWORK_CONFLICT', `network ${name}: uplink ${uplink} carries ${h.addresses.get(uplink)!.join(', ')}; the address moves only while the bridge ${bridge} is created (move it by hand or delete the network first)`);
    const hc = deps.hostChanges;
    if (hc === undefined) throw new AppError('NETWORK_CONFLICT', `network ${name}: uplink ${uplink} carries the host's addresses and host changes with rollback are not available here`);
    const timeoutMs = opts.rollbackTimeoutMs ?? 60_000;
    const autoConfirm = opts.autoConfirm ?? true;
    const header = `! host change with rollback: ${h.addresses.get(uplink)!.join(', ')} and routes move from ${uplink} to ${bridge}; probe the default gateway${(opts.probeUrls ?? []).map((u) => ` and ${u}`).join('')}; ${autoConfirm ? 'auto-confirm' : 'confirm'} within ${timeoutMs / 1000} s or it is reverted`;
    if (opts.dryRun) {
      const cp = await captureCheckpoint([uplink, bridge], deps.hostChangeNetns === undefined ? {} : { netns: deps.hostChangeNetns });
      const lines = [header, ...bridgeMovePlan(cp, uplink, bridge, desired).map((o) => `~ ip ${renderHostOp(o)}`)];
      return { lines, rec: undefined };
    }
    const c = await hc.applyWithRollback({
      ...(deps.hostChangeNetns === undefined ? {} : { netns: deps.hostChangeNetns }),
      links: [uplink, bridge],
      apply: (cp) => bridgeMovePlan(cp, uplink, bridge, desired),
      probes: { gateway: true, ...(opts.probeUrls === undefined ? {} : { urls: opts.probeUrls }) },
      timeoutMs,
      autoConfirm,
    });
    log?.info({ network: name, hostChange: c.id, state: c.state }, 'network host change');
    if (c.state === 'reverted' || c.state === 'failed') {
      throw new AppError('HOST_CHANGE_CONFLICT', `network ${name}: the host change ${c.id} was ${c.state} (${c.reason ?? 'unknown'}${c.error ? `: ${c.error}` : ''}); nothing was stored`, {
        extra: { hostChange: { id: c.id, state: c.state, reason: c.reason, probes: c.probes } },
      });
    }
    return { lines: [header, ...c.applyPlan.map((l) => `~ ip ${l}`)], rec: { id: c.id, before: prev?.spec } };
  };

  const routedRecord = async (name: string) => {
    const rec = await must(name);
    if (rec.spec.type !== 'routed') throw new AppError('NETWORK_INVALID', `network ${name} is a ${rec.spec.type} network; floating IPs are for routed networks`);
    return rec;
  };
  const fipViews = async (rec: NetworkRecord): Promise<FloatingIpView[]> => {
    const addrs = await nicAddresses(rec.name, rec.spec);
    const h = await host(rec.name, rec.spec, rec);
    const checks = new Map(floatingIpChecks(rec.name, rec.spec, h, addrs).map((c) => [c.name, c]));
    return rec.spec.routed!.floatingIps.map((f) => {
      const c = checks.get(`floating:${f.ip}`)!;
      return { ...f, nicAddress: addrs.get(`${f.vm}/${f.nic}`), ready: c.ok, message: c.message };
    });
  };
  const fipNotFound = (name: string, ip: string) => new AppError('FLOATING_IP_NOT_FOUND', `network ${name} has no floating IP ${ip}`);
  /** The stored spec, as input again (normaliseSpec accepts its own output). */
  const asInput = (spec: NormalSpec): NetworkSpec => JSON.parse(JSON.stringify(spec)) as NetworkSpec;

  const service: NetworkService = {
    async floatingIps(name) {
      return fipViews(await routedRecord(name));
    },

    async floatingIp(name, ip) {
      const v = (await fipViews(await routedRecord(name))).find((f) => f.ip === ip);
      if (!v) throw fipNotFound(name, ip);
      return v;
    },

    async floatingIpPut(name, ip, target) {
      if (!isIpv4(ip)) throw new AppError('NETWORK_INVALID', `floating IP ${JSON.stringify(ip)} is not an IPv4 address`);
      const rec = await routedRecord(name);
      const spec = asInput(rec.spec);
      const list = (spec.routed!.floatingIps ?? []).filter((f) => f.ip !== ip);
      const created = list.length === rec.spec.routed!.floatingIps.length;
      spec.routed!.floatingIps = [...list, { ip, vm: target.vm, nic: target.nic }];
      // If-Match on what was read: a concurrent change of the network answers 412 instead of being lost.
      const r = await service.put(name, spec, { ifMatch: etagOf(rec.generation) });
      return { floatingIp: await service.floatingIp(name, ip), created, changed: r.changed, changes: r.changes };
    },

    async floatingIpDelete(name, ip) {
      const rec = await routedRecord(name);
      if (!rec.spec.routed!.floatingIps.some((f) => f.ip === ip)) throw fipNotFound(name, ip);
      const spec = asInput(rec.spec);
      spec.routed!.floatingIps = rec.spec.routed!.floatingIps.filter((f) => f.ip !== ip);
      await service.put(name, spec, { ifMatch: etagOf(rec.generation) });
    },

    put(name, raw, opts = {}) {
      return serial(async () => {
        const desired = normaliseSpec(raw);
        const d = driverFor(desired.type);
        d.validate(name, desired);
        const prev = await records.get(name);
        checkIfMatch(opts.ifMatch, prev, name);
        if (prev !== undefined) {
          if (prev.spec.type !== desired.type) throw new AppError('NETWORK_INVALID', `network ${name} is a ${prev.spec.type} network; its type cannot change (delete it and create it again)`);
          const users = await nicsUsing(name);
          const moved =
            JSON.stringify(prev.spec.ipam?.subnet) !== JSON.stringify(desired.ipam?.subnet) ||
            prev.spec.routed?.pool !== desired.routed?.pool || d.nicAttachment(name, prev.spec).bridge !== d.nicAttachment(name, desired).bridge;
          if (moved && users.length > 0) throw new AppError('NETWORK_IN_USE', `network ${name}: its subnet or bridge cannot change while ${users.length} NIC(s) use it`, { extra: { nics: users } });
        }
        const specChanged = !sameSpec(prev?.spec, desired);
        const dryRun = opts.dryRun ?? false;
        const moving = addressedUplinks(name, desired, await host(name, desired, prev));
        if (moving.length > 0) {
          const moved = await moveWithRollback(name, desired, prev, moving, await host(name, desired, prev), opts);
          if (moved.rec === undefined) {
            const network = { ...(prev ? await view(prev) : { name, generation: 0, spec: desired, status: { ready: false, bridge: networkBridge(name, desired), checks: [] }, createdAt: now().toISOString(), updatedAt: now().toISOString() }), generation: prev?.generation ?? 0, spec: desired };
            return { network, created: prev === undefined, changed: true, dryRun: true, changes: moved.lines, diff: moved.lines.join('\n') + '\n' };
          }
          // The move is applied (confirmed or pending): store it first, so a crash from here keeps the link to the change.
          const at = now().toISOString();
          let rec: NetworkRecord = { name, spec: desired, generation: (prev?.generation ?? 0) + 1, createdAt: prev?.createdAt ?? at, updatedAt: at, nft: prev?.nft ?? {}, hostChange: moved.rec };
          await records.put(name, rec);
          const rest = await converge(name, desired, rec, false);
          rec = { ...rec, nft: rest.nft };
          await records.put(name, rec);
          if (rest.changes.length > 0) await intents.del(name);
          const changes = [...moved.lines, ...rest.changes.flatMap(describeChange)];
          return { network: await view(rec), created: prev === undefined, changed: true, dryRun: false, changes, diff: changes.join('\n') + '\n' };
        }
        const { changes, diff, nft } = await converge(name, desired, prev, dryRun);
        const at = now().toISOString();
        const rec: NetworkRecord = prev && !specChanged
          ? { ...prev, nft }
          : { name, spec: desired, generation: (prev?.generation ?? 0) + 1, createdAt: prev?.createdAt ?? at, updatedAt: at, nft };
        if (!dryRun && (specChanged || changes.length > 0)) await records.put(name, rec);
        if (!dryRun && changes.length > 0) await intents.del(name);
        const network = dryRun ? { ...(await view(prev ?? rec)), ...(prev ? {} : { generation: 0 }), spec: desired } : await view(rec);
        return { network, created: prev === undefined, changed: specChanged || changes.length > 0, dryRun, changes: changes.flatMap(describeChange), diff };
      });
    },

    async get(name) {
      return view(await must(name));
    },

    async confirm(name) {
      const rec = await must(name);
      if (rec.hostChange === undefined || deps.hostChanges === undefined) throw new AppError('HOST_CHANGE_NOT_FOUND', `network ${name} has no host change to confirm`);
      await deps.hostChanges.confirm(rec.hostChange.id);
      return view(rec);
    },

    async list() {
      const out: NetworkView[] = [];
      for (const [, r] of await records.list()) out.push(await view(r));
      return out.sort((x, y) => (x.name < y.name ? -1 : 1));
    },

    delete(name, opts = {}) {
      return serial(async () => {
        const rec = await must(name);
        checkIfMatch(opts.ifMatch, rec, name);
        const users = await nicsUsing(name);
        if (users.length > 0) throw new AppError('NETWORK_IN_USE', `network ${name} is used by ${users.length} NIC(s): ${users.slice(0, 5).join(', ')}`, { extra: { nics: users } });
        const h = await host(name, rec.spec, rec);
        const { changes } = planNetwork({ name, desired: undefined, previous: rec.spec, host: h, nicAddresses: new Map() });
        await driverFor(rec.spec.type).apply(await tagged(), changes);
        const entries = ipamEntries(name);
        const left = await entries.list();
        if (left.length > 0) await entries.batch(left.map(([key]) => ({ type: 'del' as const, key })));
        await records.del(name);
        ipams.delete(name);
        log?.info({ network: name, changes: changes.length, diff: renderDiff(changes) }, 'network deleted');
      });
    },

    async nicAttachment(name) {
      const rec = await must(name);
      return driverFor(rec.spec.type).nicAttachment(name, rec.spec);
    },

    async ipam(name) {
      const rec = await must(name);
      const ipam = rec.spec.ipam ?? (rec.spec.routed ? { subnet: rec.spec.routed.pool, gateway: undefined, reserved: [] } : undefined);
      if (ipam === undefined) throw new AppError('NETWORK_INVALID', `network ${name} has no IPAM: its VMs get addresses from the LAN`);
      const key = JSON.stringify(ipam);
      const have = ipams.get(name);
      if (have?.key === key) return have.ipam;
      const made = createIpam({ entries: ipamEntries(name), subnet: { cidr: ipam.subnet, ...(ipam.gateway === undefined ? {} : { gateway: ipam.gateway }), reserved: ipam.reserved } });
      ipams.set(name, { key, ipam: made });
      return made;
    },

    reconcile() {
      return serial(async () => {
        const out: Array<{ name: string; changes: string[]; interrupted: boolean; error?: string }> = [];
        const pending = new Map(await intents.list());
        const names = new Set([...(await records.list()).map(([n]) => n), ...pending.keys()]);
        for (const name of [...names].sort()) {
          let prev = await records.get(name);
          const intent = pending.get(name);
          const hc = prev?.hostChange === undefined ? undefined : await deps.hostChanges?.get(prev.hostChange.id);
          if (prev?.hostChange !== undefined && (hc?.state === 'reverted' || hc?.state === 'failed')) {
            // The host went back to before the change: so does the network (a network it created is dropped).
            const before = prev.hostChange.before;
            log?.warn({ network: name, hostChange: hc.id, state: hc.state }, 'network host change was reverted; restoring the spec before it');
            if (before === undefined) {
              await records.del(name);
              await intents.del(name);
              out.push({ name, changes: [], interrupted: false, error: `host change ${hc.id} was ${hc.state}: the network is dropped` });
              continue;
            }
            const at = now().toISOString();
            const { hostChange: _dropped, ...rest } = prev;
            prev = { ...rest, spec: before, generation: prev.generation + 1, updatedAt: at };
            await records.put(name, prev);
          }
          const desired = intent?.spec ?? prev!.spec;
          if (prev !== undefined && intent === undefined && addressedUplinks(name, desired, await host(name, desired, prev)).length > 0) {
            // Never re-run an address move unattended at start-up: report it, the operator PUTs again.
            out.push({ name, changes: [], interrupted: false, error: `uplink carries the host's addresses; not moved at start-up (PUT the network again)` });
            continue;
          }
          try {
            const { changes, nft } = await converge(name, desired, prev, false);
            const at = now().toISOString();
            const specChanged = !sameSpec(prev?.spec, desired);
            const rec: NetworkRecord = prev && !specChanged ? { ...prev, nft } : { name, spec: desired, generation: (prev?.generation ?? 0) + 1, createdAt: prev?.createdAt ?? at, updatedAt: at, nft };
            if (specChanged || changes.length > 0) await records.put(name, rec);
            await intents.del(name);
            out.push({ name, changes: changes.flatMap(describeChange), interrupted: intent !== undefined });
          } catch (e) {
            log?.error({ network: name, err: e }, 'network reconcile failed');
            out.push({ name, changes: [], interrupted: intent !== undefined, error: errorMessage(e) });
          }
        }
        await sweepTablesLocked().catch((e: unknown) => log?.error({ err: e }, 'sweeping leftover network tables failed'));
        return out;
      });
    },

    sweepTables() {
      return serial(sweepTablesLocked);
    },

    async ownedLinks() {
      const out = new Set<string>();
      // An interrupted apply's objects are ours too until reconcile() decides about them.
      const specs = [...(await records.list()).map(([n, r]) => [n, r.spec] as const), ...(await intents.list()).map(([n, i]) => [n, i.spec] as const)];
      for (const [name, spec] of specs) {
        if (spec.type === 'routed' || !spec.bridge.managed) continue;
        out.add(networkBridge(name, spec));
        if (spec.vlan !== undefined) for (const u of spec.bridge.uplinks) out.add(vlanLinkName(name, u, spec.vlan));
      }
      return [...out].sort();
    },

    refresh(name) {
      return serial(async () => {
        const rec = await must(name);
        const { changes, nft } = await converge(name, rec.spec, rec, false);
        if (changes.length > 0) {
          await records.put(name, { ...rec, nft });
          await intents.del(name);
        }
        return changes.flatMap(describeChange);
      });
    },
  };
  return service;
}

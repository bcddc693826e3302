// VM NIC plumbing on the host, in bulk: tap -> MTU/bridge port/up -> guard rules -> DHCP server, each step
// recorded for every NIC of the batch before it touches the kernel, one ip -batch and one nft -f per batch,
// undone by a revert stack on failure; a sweep finds our kernel objects no record owns and crash leftovers.
import { AppError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { createReverter } from '../lib/revert.js';
import type { LinkOp, Links, TapOptions } from '../host/links.js';
import type { Nftables } from '../host/nftables.js';
import type { KeySpace } from '../store/store.js';
import { validateMac } from './macs.js';
import { isOurs, NFT_TABLE, pickName, tapName } from './names.js';
import {
  guardFamilies,
  isEmptyGuardTable,
  OUR_FAMILIES,
  parseGuardTable,
  renderGuardAdd,
  renderGuardRemove,
  renderTableDelete,
  type GuardMode,
  type NftFamily,
  type NicGuard,
} from './nft-rules.js';

/** What a network driver asks for one VM NIC. MAC and IP are allocated beforehand (macs.ts, ipam.ts). */
export interface NicSpec {
  vmId: string;
  nicId: string;
  mac: string;
  /** With IPAM: the NIC's one IPv4 address, enforced by the guard. */
  ipv4?: string;
  mtu: number;
  /** Bridged networks: the bridge the tap becomes a port of; its guard then lives in the bridge table. */
  bridge?: string;
  /** Per-NIC opt-outs (see nft-rules.ts); both default true. */
  antiSpoof?: boolean;
  serverGuard?: boolean;
  /** Who may open the tap (libvirt's qemu user), multi-queue. */
  tap?: TapOptions;
}

/** The NIC once plumbed: what libvirt (`<target dev=tap managed='no'/>`) and the DHCP server need. */
export interface PlumbedNic {
  id: string;
  vmId: string;
  nicId: string;
  tap: string;
  mac: string;
  ipv4: string | undefined;
  mtu: number;
  bridge: string | undefined;
}

/**
 * KubeVirt's habit: `pending` (recorded, kernel untouched), `started` (some kernel step may have run; `step`
 * says which was about to), `finished`, and `removing` while an unplumb is under way. A record found in
 * anything but `finished` after a restart was interrupted: its kernel objects are partial.
 */
export type NicPhase = 'pending' | 'started' | 'finished' | 'removing';
export type NicStep = 'tap' | 'link' | 'guard' | 'dhcp';

export interface NicRecord {
  id: string;
  tap: string;
  spec: NicSpec;
  phase: NicPhase;
  step?: NicStep;
  /** Why the record is not finished: the failure that left it so, or (in a sweep) the interrupted step. */
  error?: string;
}

/** The DHCP server hook (net/dhcp's service behind an adapter the network driver builds). */
export interface DhcpPort {
  attach(nic: PlumbedNic): void | Promise<void>;
  /** Must be idempotent: called on every unplumb and revert. */
  detach(tap: string): void | Promise<void>;
}

export interface NicPlumberDeps {
  links: Links;
  nft: Nftables;
  /** The plumber's own sublevel, keyed by NIC id; nobody else writes it. */
  records: KeySpace<NicRecord>;
  dhcp?: DhcpPort;
  logger?: Logger;
}

/** Kernel objects with our prefix that no NIC record owns, and NICs a crash left half plumbed. */
export interface SweepReport {
  orphanLinks: Array<{ name: string; kind: string | undefined }>;
  orphanChains: Array<{ family: NftFamily; chain: string }>;
  unfinished: NicRecord[];
}

export interface NicPlumber {
  /** Pure: the link operations and nft batch this spec turns into once the tap exists. */
  describe(spec: NicSpec, tap: string): { linkOps: LinkOp[]; guard: NicGuard; nftScript: string };
  /**
   * Plumbs a NIC. Idempotent for the same spec once finished; NIC_EXISTS for a different spec (update
   * means unplumb + plumb, which keeps the MAC because the caller owns it). A record left unfinished by
   * a crash is cleaned up by name first, then plumbed afresh.
   */
  plumb(spec: NicSpec): Promise<PlumbedNic>;
  /**
   * Plumbs NICs together: one store batch per step for all of them, natively created taps, then one
   * `ip -batch` and one `nft -f` for the whole batch, then DHCP per NIC. All or nothing: on a failure
   * everything of this batch is undone and the HOST_ERROR names the step and NIC (`extra.failed`); if the
   * undo fails too, the records stay unfinished with `error` set. Same per-NIC rules as plumb().
   */
  plumbMany(specs: readonly NicSpec[]): Promise<PlumbedNic[]>;
  /**
   * Undoes everything for a NIC; false when there was no record. Tolerates objects already gone. Taps go
   * with `ip link del`, which removes a tap even while a process holds it: unplumb after the VM stopped.
   */
  unplumb(id: string): Promise<boolean>;
  /** unplumb() for many NICs: one nft -f, one `ip link del group` for all taps; per id, whether it existed. */
  unplumbMany(ids: readonly string[]): Promise<boolean[]>;
  get(id: string): Promise<NicRecord | undefined>;
  list(): Promise<NicRecord[]>;
  /**
   * Reports; `alsoOwned`: names owned by other records (network bridges, veths). The one thing it removes
   * itself is a guard table left with no chain and no port (a crash between the last NIC and its table):
   * nothing can own that.
   */
  sweep(opts?: { alsoOwned?: Iterable<string> }): Promise<SweepReport>;
  /** Deletes the orphans of a report (not its unfinished NICs: reconcile decides about those). */
  removeOrphans(report: SweepReport): Promise<void>;
}

/**
 * Test-only crash hook, the single place it is checked: with NODEVIRT_TEST_CRASH_AFTER=<point> the process
 * SIGKILLs itself right after the store write of that point, e.g. `started:guard` (phase:step), `pending`,
 * `finished`, `removing`. test/system/nic-crash.test.ts uses it to kill -9 the plumber at each phase.
 */
const CRASH_AFTER = process.env.NODEVIRT_TEST_CRASH_AFTER;
function crashPoint(point: string): void {
  if (CRASH_AFTER === point) process.kill(process.pid, 'SIGKILL');
}

/** The clear error a sweep puts on a record a crash left unfinished. */
function interruptedError(r: NicRecord): string {
  const at = r.step === undefined ? r.phase : `${r.phase} at step ${r.step}`;
  const fix = r.phase === 'removing' ? 'unplumb it again to finish the removal' : 'unplumb it, or plumb it again, to clean up';
  return `NIC ${r.id} was interrupted (${at}); its kernel objects may be partial: ${fix}`;
}

// Taps about to be deleted are moved into a link group of their own and deleted with one `ip link del
// group`: the kernel then unregisters them in one batch (0.3 ms per tap instead of ~20 ms one by one).
// A random base per process and a counter per batch keep concurrent deletions out of each other's group.
const GROUP_BASE = 0x6e760000;
let groupSeq = Math.floor(Math.random() * 0x10000);
const nextGroup = () => GROUP_BASE + (groupSeq++ & 0xffff);

export const nicId = (vmId: string, nicIdPart: string) => `${vmId}/${nicIdPart}`;

/** The guard tables a NIC's chains live in. */
const specFamilies = (s: NicSpec): NftFamily[] =>
  guardFamilies({ mode: s.bridge === undefined ? 'inet' : 'bridge', ...(s.antiSpoof === undefined ? {} : { antiSpoof: s.antiSpoof }), ...(s.serverGuard === undefined ? {} : { serverGuard: s.serverGuard }) });

function sameSpec(a: NicSpec, b: NicSpec): boolean {
  return JSON.stringify(normalise(a)) === JSON.stringify(normalise(b));
}

function normalise(s: NicSpec): NicSpec {
  const { vmId, nicId: n, mac, ipv4, mtu, bridge, antiSpoof, serverGuard, tap } = s;
  return { vmId, nicId: n, mac: mac.toLowerCase(), ipv4, mtu, bridge, antiSpoof: antiSpoof ?? true, serverGuard: serverGuard ?? true, tap };
}

function toPlumbed(r: NicRecord): PlumbedNic {
  return { id: r.id, vmId: r.spec.vmId, nicId: r.spec.nicId, tap: r.tap, mac: r.spec.mac, ipv4: r.spec.ipv4, mtu: r.spec.mtu, bridge: r.spec.bridge };
}

export function createNicPlumber(deps: NicPlumberDeps): NicPlumber {
  const { links, nft, records } = deps;
  const log = deps.logger?.child({ component: 'nic' });
  // tap -> NIC id, loaded once from the records (the plumber is their only writer), and tap -> the guard
  // tables its chains live in, so the last NIC of a family knows to remove that table.
  let byTap: Map<string, string> | undefined;
  const tapFamilies = new Map<string, readonly NftFamily[]>();
  const tapIndex = async () => {
    if (byTap === undefined) {
      byTap = new Map();
      for (const [, r] of await records.list()) {
        byTap.set(r.tap, r.id);
        tapFamilies.set(r.tap, specFamilies(r.spec));
      }
    }
    return byTap;
  };
  const forget = (index: Map<string, string>, taps: Iterable<string>) => {
    for (const t of taps) {
      index.delete(t);
      tapFamilies.delete(t);
    }
  };

  // Guard chains are added concurrently (shared), but deleting a table once it looks empty must not
  // interleave with an add, or the add's fresh chain goes with the table (exclusive). In-process only:
  // one daemon owns the tables of a host; a second writer in the same netns could still race the check.
  let exclusive: Promise<unknown> = Promise.resolve();
  const sharedOps = new Set<Promise<unknown>>();
  const guardShared = async <T>(fn: () => Promise<T>): Promise<T> => {
    await exclusive;
    const p = fn();
    sharedOps.add(p);
    try {
      return await p;
    } finally {
      sharedOps.delete(p);
    }
  };
  const guardExclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = exclusive.then(async () => {
      await Promise.allSettled([...sharedOps]);
      return fn();
    });
    exclusive = run.catch(() => undefined);
    return run;
  };

  /**
   * Deletes our guard table in each of these families that no NIC of ours uses and the kernel shows
   * empty (another plumber in the same namespace may still have chains there). Deleted tables' families.
   */
  const pruneTables = (families: Iterable<NftFamily>): Promise<NftFamily[]> => {
    const inUse = () => new Set([...tapFamilies.values()].flat());
    const candidates = [...new Set(families)].filter((f) => !inUse().has(f));
    if (candidates.length === 0) return Promise.resolve([]);
    return guardExclusive(async () => {
      const empty: NftFamily[] = [];
      for (const f of candidates) {
        if (inUse().has(f)) continue;
        const json = await nft.listTable(f, NFT_TABLE);
        if (json !== undefined && isEmptyGuardTable(parseGuardTable(f, json))) empty.push(f);
      }
      await nft.apply(renderTableDelete(empty));
      return empty;
    });
  };
  // One operation per NIC id at a time; different NICs proceed concurrently. A batch queues behind every
  // earlier operation on any of its ids, registered synchronously so two batches cannot deadlock.
  const locks = new Map<string, Promise<unknown>>();
  const locked = <T>(ids: readonly string[], fn: () => Promise<T>): Promise<T> => {
    const prev = Promise.all([...new Set(ids)].map((id) => locks.get(id)));
    const run = prev.then(fn);
    const tail = run.catch(() => undefined);
    for (const id of ids) locks.set(id, tail);
    void tail.then(() => {
      for (const id of ids) if (locks.get(id) === tail) locks.delete(id);
    });
    return run;
  };
  const putAll = (recs: readonly NicRecord[]) =>
    recs.length === 0 ? Promise.resolve() : records.batch(recs.map((r) => ({ type: 'put' as const, key: r.id, value: r })));

  const describe = (spec: NicSpec, tap: string) => {
    const mode: GuardMode = spec.bridge === undefined ? 'inet' : 'bridge';
    // One netlink message per NIC: MTU before the bridge port (the bridge then takes it as is), up last.
    const linkOps: LinkOp[] = [{ op: 'set', name: tap, mtu: spec.mtu, ...(spec.bridge === undefined ? {} : { master: spec.bridge }), up: true }];
    const guard: NicGuard = { ifname: tap, mode, mac: spec.mac, ...(spec.ipv4 === undefined ? {} : { ipv4: spec.ipv4 }) };
    if (spec.antiSpoof !== undefined) guard.antiSpoof = spec.antiSpoof;
    if (spec.serverGuard !== undefined) guard.serverGuard = spec.serverGuard;
    // A tap the plumber just made has no chains anywhere: nothing to replace.
    return { linkOps, guard, nftScript: renderGuardAdd([guard], { fresh: true }) };
  };

  /** Deletes these taps if they exist, in one ip -batch: group them, delete the group. */
  const deleteTaps = async (taps: readonly string[]) => {
    const batch = (names: readonly string[]) => {
      const group = nextGroup();
      return links.apply([...names.map((name): LinkOp => ({ op: 'set', name, group })), { op: 'delete-group', group }]);
    };
    if (taps.length === 0) return;
    try {
      await batch(taps);
    } catch (e) {
      // Some are gone already (a crash, an earlier partial removal): retry with those that exist.
      const wanted = new Set(taps);
      const present = (await links.list(isOurs)).filter((l) => wanted.has(l.name)).map((l) => l.name);
      if (present.length === taps.length) throw e;
      if (present.length > 0) await batch(present);
    }
  };

  /**
   * Removes whatever exists of these NICs' kernel objects; collects failures. The guard chains and the taps
   * go concurrently (two processes, each waiting on the kernel): a deleted tap sends nothing for a guard to
   * check, and a chain without its tap matches nothing.
   */
  const teardown = async (taps: readonly string[], families: readonly NftFamily[]): Promise<Error[]> => {
    const errors: Error[] = [];
    const attempt = async (fn: () => unknown) => {
      try {
        await fn();
      } catch (e) {
        errors.push(e instanceof Error ? e : new Error(String(e)));
      }
    };
    const dhcp = deps.dhcp;
    if (dhcp) for (const tap of taps) await attempt(() => dhcp.detach(tap));
    // Deleting a tap also releases it from its bridge.
    await Promise.all([attempt(() => nft.apply(renderGuardRemove(taps, families))), attempt(() => deleteTaps(taps))]);
    return errors;
  };

  const unplumbLocked = async (ids: readonly string[]): Promise<boolean[]> => {
    const found = await Promise.all(ids.map((id) => records.get(id)));
    const recs = found.filter((r): r is NicRecord => r !== undefined);
    if (recs.length > 0) {
      const removing = recs.map((r): NicRecord => ({ ...r, phase: 'removing' }));
      await putAll(removing);
      crashPoint('removing');
      const families = [...new Set(recs.flatMap((r) => specFamilies(r.spec)))];
      const errors = await teardown(recs.map((r) => r.tap), families);
      if (errors.length > 0) {
        // The records stay in `removing` with the reason: the next unplumb or a sweep sees the leftovers.
        const why = errors.map(errorMessage).join('; ');
        await putAll(removing.map((r) => ({ ...r, error: `unplumb failed: ${why}` })));
        throw new AppError('HOST_ERROR', `unplumb ${recs.map((r) => r.id).join(', ')}: ${why}`, { cause: errors[0] });
      }
      await records.batch(recs.map((r) => ({ type: 'del' as const, key: r.id })));
      forget(await tapIndex(), recs.map((r) => r.tap));
      // The last NIC of a family takes our table there with it: delete leaves nothing.
      const dropped = await pruneTables(families);
      log?.debug({ count: recs.length, tablesRemoved: dropped }, 'nics unplumbed');
    }
    return found.map((r) => r !== undefined);
  };

  const plumbLocked = async (specs: readonly NicSpec[]): Promise<PlumbedNic[]> => {
    const ids = specs.map((s) => nicId(s.vmId, s.nicId));
    if (new Set(ids).size !== ids.length) throw new AppError('VALIDATION_FAILED', `plumbMany: a NIC appears twice in one batch`);
    for (const s of specs) validateMac(s.mac);
    const existing = await Promise.all(ids.map((id) => records.get(id)));
    const out: Array<PlumbedNic | undefined> = existing.map(() => undefined);
    const leftovers: string[] = [];
    existing.forEach((r, i) => {
      if (r === undefined) return;
      if (r.phase === 'finished') {
        if (!sameSpec(r.spec, specs[i]!)) throw new AppError('NIC_EXISTS', `NIC ${r.id} is already plumbed with another spec; unplumb it first`);
        out[i] = toPlumbed(r);
      } else {
        log?.warn({ id: r.id, phase: r.phase, step: r.step }, 'nic left unfinished (crash?): cleaning up before plumbing');
        leftovers.push(r.id);
      }
    });
    if (leftovers.length > 0) await unplumbLocked(leftovers);

    const todo = specs.map((spec, i) => ({ spec, i, id: ids[i]! })).filter((t) => out[t.i] === undefined);
    if (todo.length === 0) return out as PlumbedNic[];
    const index = await tapIndex();
    const recs: NicRecord[] = todo.map(({ spec, id }) => {
      const tap = pickName((a) => tapName(spec.vmId, spec.nicId, a), id, (n) => index.get(n));
      index.set(tap, id);
      tapFamilies.set(tap, specFamilies(spec));
      return { id, tap, spec, phase: 'pending' };
    });
    const plans = recs.map((r) => describe(r.spec, r.tap));
    const taps = recs.map((r) => r.tap);
    await putAll(recs);
    crashPoint('pending');

    const revert = createReverter();
    let current: NicStep = 'tap';
    let failedId: string | undefined;
    const step = async (s: NicStep) => {
      current = s;
      await putAll(recs.map((r) => ({ ...r, phase: 'started', step: s })));
      crashPoint(`started:${s}`);
    };
    try {
      await step('tap');
      // Registered first so it runs last, and only for taps we made (an EEXIST tap is not ours to delete).
      const created: string[] = [];
      revert.add(() => deleteTaps(created));
      for (const r of recs) {
        failedId = r.id;
        await links.createTap(r.tap, r.spec.tap ?? { owner: 0 });
        created.push(r.tap);
      }
      await step('link');
      try {
        await links.apply(plans.flatMap((p) => p.linkOps));
      } catch (e) {
        const i = (e as AppError).extra?.failedIndex;
        // One link op per NIC, so the failing line's index is the NIC's.
        failedId = typeof i === 'number' ? recs[i]?.id : undefined;
        throw e;
      }
      await step('guard');
      failedId = undefined;
      const families = [...new Set(recs.flatMap((r) => specFamilies(r.spec)))];
      revert.add(() => nft.apply(renderGuardRemove(taps, families)));
      await guardShared(() => nft.apply(renderGuardAdd(plans.map((p) => p.guard), { fresh: true })));
      const plumbed = recs.map(toPlumbed);
      if (deps.dhcp) {
        await step('dhcp');
        const dhcp = deps.dhcp;
        for (const nic of plumbed) {
          failedId = nic.id;
          revert.add(() => dhcp.detach(nic.tap));
          await dhcp.attach(nic);
        }
      }
      await putAll(recs.map((r) => ({ ...r, phase: 'finished' })));
      crashPoint('finished');
      revert.success();
      log?.debug({ count: recs.length }, 'nics plumbed');
      todo.forEach((t, k) => (out[t.i] = plumbed[k]));
      return out as PlumbedNic[];
    } catch (e) {
      const why = `plumb failed at step ${current}${failedId === undefined ? '' : ` (NIC ${failedId})`}: ${errorMessage(e)}`;
      const undoErrors = await revert.fail();
      if (undoErrors.length === 0) {
        await records.batch(recs.map((r) => ({ type: 'del' as const, key: r.id })));
        forget(index, taps);
        await pruneTables(OUR_FAMILIES).catch((pe: unknown) => log?.warn({ err: pe }, 'could not remove an empty guard table'));
      } else {
        // Leave the records unfinished, with the reason, so a sweep or the next plumb finds the leftovers.
        const undo = undoErrors.map(errorMessage).join('; ');
        await putAll(recs.map((r) => ({ ...r, phase: 'started', step: current, error: `${why}; undo failed: ${undo}` })));
        log?.error({ ids: recs.map((r) => r.id), undoErrors: undo }, 'nic plumb failed and its undo failed too');
      }
      // A single NIC keeps its own error as is (callers and tests match on it); a batch names the NIC.
      if (specs.length === 1) throw e;
      throw new AppError('HOST_ERROR', why, { cause: e, extra: { failed: { id: failedId, step: current }, undoErrors: undoErrors.map(errorMessage) } });
    }
  };

  return {
    describe,

    async plumb(spec) {
      const [nic] = await locked([nicId(spec.vmId, spec.nicId)], () => plumbLocked([spec]));
      return nic!;
    },

    plumbMany(specs) {
      return locked(specs.map((s) => nicId(s.vmId, s.nicId)), () => plumbLocked(specs));
    },

    async unplumb(id) {
      const [existed] = await locked([id], () => unplumbLocked([id]));
      return existed!;
    },

    unplumbMany(ids) {
      return locked(ids, () => unplumbLocked(ids));
    },

    get: (id) => records.get(id),

    async list() {
      return (await records.list()).map(([, r]) => r);
    },

    async sweep(opts = {}) {
      const recs = (await records.list()).map(([, r]) => r);
      const owned = new Set<string>([...recs.map((r) => r.tap), ...(opts.alsoOwned ?? [])]);
      const orphanLinks = (await links.list(isOurs)).filter((l) => !owned.has(l.name)).map((l) => ({ name: l.name, kind: l.kind }));
      const orphanChains: SweepReport['orphanChains'] = [];
      await tapIndex();
      const removed = await pruneTables(OUR_FAMILIES);
      if (removed.length > 0) log?.info({ families: removed }, 'removed guard tables with no chain left');
      for (const family of OUR_FAMILIES) {
        const json = await nft.listTable(family, NFT_TABLE);
        if (json === undefined) continue;
        const state = parseGuardTable(family, json);
        for (const chain of new Set([...state.chains.keys(), ...[...state.ports].filter(isOurs)])) {
          if (!owned.has(chain)) orphanChains.push({ family, chain });
        }
      }
      const unfinished = recs.filter((r) => r.phase !== 'finished').map((r) => ({ ...r, error: r.error ?? interruptedError(r) }));
      return { orphanLinks, orphanChains, unfinished };
    },

    async removeOrphans(report) {
      const chains = [...new Set(report.orphanChains.map((c) => c.chain))];
      const families = [...new Set(report.orphanChains.map((c) => c.family))];
      if (chains.length > 0) {
        await nft.apply(renderGuardRemove(chains, families));
        await tapIndex();
        await pruneTables(families);
      }
      for (const l of report.orphanLinks) {
        if (l.kind === 'tap') {
          await links.deleteTap(l.name);
          continue;
        }
        try {
          await links.apply([{ op: 'delete', name: l.name }]);
        } catch (e) {
          // A veth's peer disappears with it: gone is what we wanted.
          if ((await links.get(l.name)) !== undefined) throw e;
        }
      }
    },
  };
}

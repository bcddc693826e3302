// VM NIC plumbing on the host: tap -> MTU -> bridge port -> up -> guard rules -> DHCP server, each step
// recorded in the store before it touches the kernel and undone by a revert stack on failure; removal
// undoes it all; a sweep finds our kernel objects no record owns and records a crash left half done.
import { AppError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { createReverter } from '../lib/revert.js';
import type { LinkOp, Links, TapOptions } from '../host/links.js';
import type { Nftables } from '../host/nftables.js';
import type { KeySpace } from '../store/store.js';
import { validateMac } from './macs.js';
import { isOurs, NFT_TABLE, pickName, tapName } from './names.js';
import { OUR_FAMILIES, parseGuardTable, renderGuardAdd, renderGuardRemove, type GuardMode, type NftFamily, type NicGuard } from './nft-rules.js';

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
  /** Undoes everything for a NIC; false when there was no record. Tolerates objects already gone. */
  unplumb(id: string): Promise<boolean>;
  get(id: string): Promise<NicRecord | undefined>;
  list(): Promise<NicRecord[]>;
  /** Reports, changes nothing. `alsoOwned`: names owned by other records (network bridges, veths). */
  sweep(opts?: { alsoOwned?: Iterable<string> }): Promise<SweepReport>;
  /** Deletes the orphans of a report (not its unfinished NICs: reconcile decides about those). */
  removeOrphans(report: SweepReport): Promise<void>;
}

export const nicId = (vmId: string, nicIdPart: string) => `${vmId}/${nicIdPart}`;

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
  // tap -> NIC id, loaded once from the records (the plumber is their only writer).
  let byTap: Map<string, string> | undefined;
  const tapIndex = async () => {
    if (byTap === undefined) {
      byTap = new Map();
      for (const [, r] of await records.list()) byTap.set(r.tap, r.id);
    }
    return byTap;
  };
  // One operation per NIC id at a time; different NICs proceed concurrently.
  const locks = new Map<string, Promise<unknown>>();
  const locked = <T>(id: string, fn: () => Promise<T>): Promise<T> => {
    const prev = locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    locks.set(id, tail);
    void tail.then(() => {
      if (locks.get(id) === tail) locks.delete(id);
    });
    return run;
  };

  const describe = (spec: NicSpec, tap: string) => {
    const mode: GuardMode = spec.bridge === undefined ? 'inet' : 'bridge';
    const linkOps: LinkOp[] = [{ op: 'set', name: tap, mtu: spec.mtu }];
    if (spec.bridge !== undefined) linkOps.push({ op: 'set', name: tap, master: spec.bridge });
    linkOps.push({ op: 'set', name: tap, up: true });
    const guard: NicGuard = { ifname: tap, mode, mac: spec.mac, ...(spec.ipv4 === undefined ? {} : { ipv4: spec.ipv4 }) };
    if (spec.antiSpoof !== undefined) guard.antiSpoof = spec.antiSpoof;
    if (spec.serverGuard !== undefined) guard.serverGuard = spec.serverGuard;
    return { linkOps, guard, nftScript: renderGuardAdd([guard]) };
  };

  /** Removes whatever exists of a NIC's kernel objects, in reverse plumbing order; collects failures. */
  const teardown = async (tap: string): Promise<Error[]> => {
    const errors: Error[] = [];
    const attempt = async (fn: () => unknown) => {
      try {
        await fn();
      } catch (e) {
        errors.push(e instanceof Error ? e : new Error(String(e)));
      }
    };
    await attempt(() => deps.dhcp?.detach(tap));
    await attempt(() => nft.apply(renderGuardRemove([tap])));
    // Deleting the tap also releases it from its bridge.
    await attempt(() => links.deleteTap(tap));
    return errors;
  };

  const unplumbLocked = async (id: string): Promise<boolean> => {
    const rec = await records.get(id);
    if (rec === undefined) return false;
    await records.put(id, { ...rec, phase: 'removing' });
    const errors = await teardown(rec.tap);
    if (errors.length > 0) {
      // The record stays in `removing`: the next unplumb or a sweep sees the leftovers.
      throw new AppError('HOST_ERROR', `unplumb ${id}: ${errors.map(errorMessage).join('; ')}`, { cause: errors[0] });
    }
    await records.del(id);
    (await tapIndex()).delete(rec.tap);
    log?.debug({ id, tap: rec.tap }, 'nic unplumbed');
    return true;
  };

  return {
    describe,

    plumb(spec) {
      const id = nicId(spec.vmId, spec.nicId);
      return locked(id, async () => {
        validateMac(spec.mac);
        const existing = await records.get(id);
        if (existing?.phase === 'finished') {
          if (sameSpec(existing.spec, spec)) return toPlumbed(existing);
          throw new AppError('NIC_EXISTS', `NIC ${id} is already plumbed with another spec; unplumb it first`);
        }
        if (existing !== undefined) {
          log?.warn({ id, phase: existing.phase, step: existing.step }, 'nic left unfinished (crash?): cleaning up before plumbing');
          await unplumbLocked(id);
        }
        const index = await tapIndex();
        const tap = pickName((a) => tapName(spec.vmId, spec.nicId, a), id, (n) => index.get(n));
        const plan = describe(spec, tap);
        const rec: NicRecord = { id, tap, spec, phase: 'pending' };
        await records.put(id, rec);
        index.set(tap, id);

        const revert = createReverter();
        const step = (s: NicStep) => records.put(id, { ...rec, phase: 'started', step: s });
        try {
          await step('tap');
          await links.createTap(tap, spec.tap ?? { owner: 0 });
          revert.add(async () => {
            await links.deleteTap(tap);
          });
          await step('link');
          await links.apply(plan.linkOps);
          await step('guard');
          revert.add(() => nft.apply(renderGuardRemove([tap])));
          await nft.apply(plan.nftScript);
          const plumbed = toPlumbed(rec);
          if (deps.dhcp) {
            await step('dhcp');
            const dhcp = deps.dhcp;
            revert.add(() => dhcp.detach(tap));
            await dhcp.attach(plumbed);
          }
          await records.put(id, { ...rec, phase: 'finished' });
          revert.success();
          log?.debug({ id, tap }, 'nic plumbed');
          return plumbed;
        } catch (e) {
          const undoErrors = await revert.fail();
          if (undoErrors.length === 0) {
            await records.del(id);
            index.delete(tap);
          } else {
            // Leave the record unfinished so a sweep or the next plumb finds the leftovers.
            log?.error({ id, tap, undoErrors: undoErrors.map(errorMessage) }, 'nic plumb failed and its undo failed too');
          }
          throw e;
        }
      });
    },

    unplumb(id) {
      return locked(id, () => unplumbLocked(id));
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
      for (const family of OUR_FAMILIES) {
        const json = await nft.listTable(family, NFT_TABLE);
        if (json === undefined) continue;
        const state = parseGuardTable(family, json);
        for (const chain of new Set([...state.chains.keys(), ...[...state.ports].filter(isOurs)])) {
          if (!owned.has(chain)) orphanChains.push({ family, chain });
        }
      }
      return { orphanLinks, orphanChains, unfinished: recs.filter((r) => r.phase !== 'finished') };
    },

    async removeOrphans(report) {
      const chains = [...new Set(report.orphanChains.map((c) => c.chain))];
      if (chains.length > 0) await nft.apply(renderGuardRemove(chains));
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

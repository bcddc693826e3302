// One interface for every network type and the registry keyed by type (Incus style): a driver validates
// a spec, plans host changes from what it reads, reports status per check and tells NICs how to attach.
import { AppError } from '../lib/errors.js';
import { applyChanges, type HostQuery, type NetAdapters } from './network-apply.js';
import { bridgeDriver } from './network-bridge.js';
import { natDriver } from './network-nat.js';
import { routedDriver } from './network-routed.js';
import { renderDiff, type HostChange, type HostState, type NetworkType, type NicAttachment, type NormalSpec, type StatusCheck } from './network-model.js';

export interface PlanInput {
  name: string;
  /** undefined: the network is being removed. */
  desired: NormalSpec | undefined;
  /** What was applied last (undefined on create). */
  previous: NormalSpec | undefined;
  host: HostState;
  /** IPAM addresses of this network's NICs, keyed by owner "vmId/nicId" (NAT port forwards need them). */
  nicAddresses: ReadonlyMap<string, string>;
}

export interface NetworkDriver {
  readonly type: NetworkType;
  /** Type-specific rules beyond normaliseSpec; NETWORK_INVALID. */
  validate(name: string, spec: NormalSpec): void;
  /** What to read from the host before planning or checking status. */
  query(name: string, spec: NormalSpec): HostQuery;
  /** Pure: the host changes from `host` to `desired` (or to nothing). */
  plan(input: PlanInput): HostChange[];
  apply(adapters: NetAdapters, changes: readonly HostChange[]): Promise<void>;
  /** Pure: the changes that remove what this network owns (never an adopted bridge). */
  remove(input: Omit<PlanInput, 'desired'>): HostChange[];
  status(name: string, spec: NormalSpec, host: HostState, nicAddresses: ReadonlyMap<string, string>): StatusCheck[];
  nicAttachment(name: string, spec: NormalSpec): NicAttachment;
}

const DRIVERS: Partial<Record<NetworkType, NetworkDriver>> = {
  bridge: bridgeDriver,
  nat: natDriver,
  routed: routedDriver,
};

export function driverFor(type: NetworkType): NetworkDriver {
  const d = DRIVERS[type];
  if (!d) throw new AppError('NETWORK_INVALID', `network type ${type} is not available on this node yet`);
  return d;
}

/** Shared by every driver: apply a plan with its revert stack. */
export const applyPlan = applyChanges;

/** Plans create/update (desired set) or removal (desired undefined), with the readable diff. */
export function planNetwork(input: PlanInput): { changes: HostChange[]; diff: string } {
  const spec = input.desired ?? input.previous;
  if (spec === undefined) return { changes: [], diff: renderDiff([]) };
  const d = driverFor(spec.type);
  let changes: HostChange[];
  if (input.desired === undefined) changes = d.remove(input);
  else if (input.previous !== undefined && input.previous.type !== input.desired.type) {
    // Host objects of one type are not a starting point for another: delete and create instead.
    throw new AppError('NETWORK_INVALID', `network ${input.name} is a ${input.previous.type} network; its type cannot change (delete it and create it again)`);
  } else changes = d.plan(input);
  return { changes, diff: renderDiff(changes) };
}

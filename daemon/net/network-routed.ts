// The routed network: no shared L2. Each VM NIC's tap is a point-to-point link; the VM gets a /32 from the
// pool, the host routes that /32 to the tap and owns the VM's gateway 169.254.1.1 on every tap (so it
// answers the VM's ARP for it), and DHCP hands out the gateway as classless routes (RFC 3442).
import { tapName } from './names.js';
import { applyChanges } from './network-host.js';
import { invalid, planAddresses, type HostChange, type HostState, type NicAttachment, type NormalSpec, type StatusCheck } from './network-model.js';
import type { NetworkDriver, PlanInput } from './network-drivers.js';
import { IP_FORWARD } from './network-nat.js';

/** The link-local gateway every routed VM sees (Calico's choice, and the address the seed's VPC CNI left unanswered). */
export const ROUTED_GATEWAY = '169.254.1.1';
const GATEWAY_CIDR = `${ROUTED_GATEWAY}/32`;

/**
 * The tap of an IPAM owner "vmId/nicId". It is the first-attempt name of names.ts; a NIC whose tap took
 * a later attempt (a 50-bit collision) is reported by status as missing rather than guessed at.
 */
export function routedTap(owner: string): string | undefined {
  const slash = owner.indexOf('/');
  return slash <= 0 ? undefined : tapName(owner.slice(0, slash), owner.slice(slash + 1));
}

function nicChanges(host: HostState, owner: string, ip: string): HostChange[] {
  const tap = routedTap(owner);
  if (tap === undefined || !host.links.has(tap)) return [];
  const out = planAddresses(host, tap, [GATEWAY_CIDR], []);
  const dest = `${ip}/32`;
  if (host.routes.get(dest) !== tap) {
    const other = host.routes.get(dest);
    if (other !== undefined) out.push({ kind: 'route-del', dest, dev: other });
    out.push({ kind: 'route-add', dest, dev: tap });
  }
  return out;
}

function plan(input: PlanInput): HostChange[] {
  const out: HostChange[] = [];
  if (input.host.sysctl.get(IP_FORWARD) !== '1') out.push({ kind: 'sysctl', key: IP_FORWARD, value: '1', previous: input.host.sysctl.get(IP_FORWARD) });
  for (const [owner, ip] of [...input.nicAddresses].sort()) out.push(...nicChanges(input.host, owner, ip));
  return out;
}

export const routedDriver: NetworkDriver = {
  type: 'routed',
  validate(name, spec) {
    if (spec.bridge.uplinks.length > 0 || spec.bridge.name !== undefined) throw invalid(`network ${name}: a routed network has no bridge`);
    if (spec.vlan !== undefined) throw invalid(`network ${name}: vlan is for bridge networks`);
    if (spec.ipam !== undefined) throw invalid(`network ${name}: a routed network's addresses come from routed.pool, not ipam`);
  },
  query() {
    return { tables: [], sysctls: [IP_FORWARD], bridges: [], routes: true };
  },
  plan,
  apply: applyChanges,
  // Per-NIC routes and gateway addresses go with the taps; DELETE is refused while NICs exist.
  remove: () => [],
  status(_name, _spec, host, nicAddresses): StatusCheck[] {
    const fwd = host.sysctl.get(IP_FORWARD);
    const checks: StatusCheck[] = [{ name: 'ip-forward', ok: fwd === '1', message: `${IP_FORWARD}=${fwd ?? 'unknown'}` }];
    for (const [owner, ip] of [...nicAddresses].sort()) {
      const tap = routedTap(owner);
      const routed = tap !== undefined && host.routes.get(`${ip}/32`) === tap;
      const gw = tap !== undefined && (host.addresses.get(tap) ?? []).includes(GATEWAY_CIDR);
      checks.push({
        name: `nic:${owner}`,
        ok: routed && gw,
        message: tap === undefined || !host.links.has(tap) ? `${owner}: tap ${tap ?? '?'} not found` : `${ip}/32 ${routed ? 'routed' : 'NOT routed'} to ${tap}, gateway ${gw ? 'present' : 'missing'}`,
      });
    }
    return checks;
  },
  nicAttachment(_name, spec: NormalSpec): NicAttachment {
    return {
      mtu: spec.mtu,
      bridge: undefined,
      isolated: false,
      ipam: {
        subnet: spec.routed!.pool,
        gateway: ROUTED_GATEWAY,
        prefixLength: 32,
        dns: [],
        search: [],
        // With classless routes the client ignores option 3: the on-link route to the gateway comes first.
        routes: [
          { destination: GATEWAY_CIDR, gateway: '0.0.0.0' },
          { destination: '0.0.0.0/0', gateway: ROUTED_GATEWAY },
        ],
      },
    };
  },
};

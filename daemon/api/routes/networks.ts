// /v1/networks: declarative PUT (with ?dryRun and If-Match, ETag = generation), GET one/list with status,
// DELETE, and a routed network's floating IPs. The network service does the work; this file maps HTTP to it.
import { AppError } from '../../lib/errors.js';
import type { FloatingIpView, NetworkService, NetworkView, PutResult } from '../../net/network-service.js';
import { etagOf } from '../../net/network-service.js';
import type { NetworkSpec } from '../../net/network-model.js';
import type { Handlers, Schemas } from '../types.js';

/** What the routes need from net/network-service.ts. */
export type NetworkApi = Pick<NetworkService, 'put' | 'get' | 'list' | 'delete' | 'confirm' | 'floatingIps' | 'floatingIp' | 'floatingIpPut' | 'floatingIpDelete'>;

// The service's views may hold undefined fields (defaults not set); the wire drops them.
const wire = <T>(v: unknown): T => JSON.parse(JSON.stringify(v)) as T;

const toNetwork = (v: NetworkView): Schemas['Network'] => wire<Schemas['Network']>(v);
const toFloatingIp = (v: FloatingIpView): Schemas['FloatingIp'] => wire<Schemas['FloatingIp']>(v);
const toResult = (r: PutResult): Schemas['NetworkApplyResult'] => ({
  network: toNetwork(r.network),
  changed: r.changed,
  dryRun: r.dryRun,
  changes: r.changes,
  diff: r.diff,
});

export function networkRoutes(deps: { networks: NetworkApi | undefined }): Pick<
  Handlers,
  'networksList' | 'networkGet' | 'networkPut' | 'networkDelete' | 'networkConfirm' | 'floatingIpsList' | 'floatingIpGet' | 'floatingIpPut' | 'floatingIpDelete'
> {
  const svc = (): NetworkApi => {
    // Fails loudly until main.ts wires the service, rather than answering as if no network existed.
    if (!deps.networks) throw new AppError('INTERNAL', 'the network service is not wired into this daemon');
    return deps.networks;
  };
  const ifMatch = (h: string | undefined) => (h === undefined || h === '' ? {} : { ifMatch: h });
  return {
    async networksList() {
      return { status: 200, body: { items: (await svc().list()).map(toNetwork) } };
    },

    async networkGet({ path }) {
      const n = await svc().get(path.name);
      return { status: 200, body: toNetwork(n), headers: { ETag: etagOf(n.generation) } };
    },

    async networkPut({ path, query, body }, ctx) {
      const dryRun = query.dryRun === true;
      const r = await svc().put(path.name, body as NetworkSpec, {
        dryRun,
        ...ifMatch(ctx.get('if-match')),
        ...(query.autoConfirm === undefined ? {} : { autoConfirm: query.autoConfirm }),
        ...(query.rollbackTimeoutMs === undefined ? {} : { rollbackTimeoutMs: query.rollbackTimeoutMs }),
        ...(query.probeUrl === undefined ? {} : { probeUrls: query.probeUrl }),
      });
      const headers: Record<string, string> = dryRun ? {} : { ETag: etagOf(r.network.generation) };
      if (r.created && !dryRun) {
        return { status: 201, body: toResult(r), headers: { ...headers, Location: `/v1/networks/${encodeURIComponent(path.name)}` } };
      }
      return { status: 200, body: toResult(r), headers };
    },

    async networkDelete({ path }, ctx) {
      await svc().delete(path.name, ifMatch(ctx.get('if-match')));
      return { status: 204, body: undefined };
    },

    async networkConfirm({ path }) {
      const n = await svc().confirm(path.name);
      return { status: 200, body: toNetwork(n), headers: { ETag: etagOf(n.generation) } };
    },

    async floatingIpsList({ path }) {
      return { status: 200, body: { items: (await svc().floatingIps(path.name)).map(toFloatingIp) } };
    },

    async floatingIpGet({ path }) {
      return { status: 200, body: toFloatingIp(await svc().floatingIp(path.name, path.ip)) };
    },

    async floatingIpPut({ path, body }) {
      const r = await svc().floatingIpPut(path.name, path.ip, { vm: body.vm, nic: body.nic });
      const reply = { floatingIp: toFloatingIp(r.floatingIp), changed: r.changed, changes: r.changes };
      if (r.created) return { status: 201, body: reply, headers: { Location: `/v1/networks/${encodeURIComponent(path.name)}/floating-ips/${path.ip}` } };
      return { status: 200, body: reply };
    },

    async floatingIpDelete({ path }) {
      await svc().floatingIpDelete(path.name, path.ip);
      return { status: 204, body: undefined };
    },
  };
}

// /v1/leases: what the per-interface DHCP servers handed out, optionally filtered by interface or MAC.
import type { Handlers, Lease } from '../types.js';

/** What the route needs: net/dhcp/lease-repo.ts's LeaseRepo satisfies it. */
export interface LeaseQuery {
  list(filter: { interface?: string; mac?: string }): Promise<Lease[]>;
}

export function leaseRoutes(deps: { leases: LeaseQuery }): Pick<Handlers, 'leasesList'> {
  return {
    async leasesList({ query }) {
      const filter: { interface?: string; mac?: string } = {};
      if (query.interface !== undefined) filter.interface = query.interface;
      if (query.mac !== undefined) filter.mac = query.mac.toLowerCase();
      return { status: 200, body: { items: await deps.leases.list(filter) } };
    },
  };
}

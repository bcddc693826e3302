// Routed networks on the real kernel, in private namespaces (nvn*): a stand-in VM (a veth named like the
// NIC's tap, its far end in the VM namespace) configured as our DHCP attachment says (a /32, classless
// on-link route to 169.254.1.1, default via it) reaches "the LAN", and its /32 is reachable from the LAN.
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tapName } from '../../daemon/net/names.js';
import { createNetworkService, type NetworkService } from '../../daemon/net/network-service.js';
import type { Store } from '../../daemon/store/store.js';
import { addNs, delNs, ipn, netnsUnavailable, ping, sh, vethBetween } from './helpers/netns.js';
import { netnsAdapters, openTempStore } from './helpers/net-service.js';

const why = netnsUnavailable();
const run = randomBytes(3).toString('hex');
const HOST = `nvn${run}h`;
const LAN = `nvn${run}l`;
const VM = `nvn${run}v`;
const made: string[] = [];


if (why !== undefined) {
  describe.skip(`routed networks (skipped: ${why})`, () => it('needs root', () => undefined));
} else {
  let dir: string;
  let store: Store;
  let svc: NetworkService;
  const tap = tapName('vm1', 'net0');

  beforeAll(async () => {
    for (const ns of [HOST, LAN, VM]) addNs(ns, made);
    vethBetween({ ns: HOST, name: 'up0', cidr: '198.51.100.1/24' }, { ns: LAN, name: 'lan0', cidr: '198.51.100.2/24' });
    // The LAN's router knows the pool lives behind this host (what a BGP speaker or a static route gives).
    ipn(LAN, 'route', 'add', '203.0.113.16/28', 'via', '198.51.100.1');
    ({ store, dir } = await openTempStore('nodevirt-routedsys-'));
    svc = createNetworkService({ store, adapters: netnsAdapters(HOST) });
  });

  afterAll(async () => {
    delNs(made);
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('routed networks (real kernel, private netns)', () => {
    it('a VM /32 behind its point-to-point link reaches the LAN and is reachable from it; the host answers ARP for 169.254.1.1', async () => {
      await svc.put('rt', { type: 'routed', routed: { pool: '203.0.113.16/28' } });
      expect(sh('ip', 'netns', 'exec', HOST, 'sysctl', '-n', 'net.ipv4.ip_forward').trim()).toBe('1');
      const ip = await (await svc.ipam('rt')).allocate('vm1/net0');
      // The NIC's "tap": a veth carrying our tap name, its far end the guest's eth0.
      ipn(HOST, 'link', 'add', tap, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', VM);
      ipn(HOST, 'link', 'set', tap, 'up');
      const changes = await svc.refresh('rt');
      expect(changes).toEqual([`+ ip addr add 169.254.1.1/32 dev ${tap}`, `+ ip route add ${ip}/32 dev ${tap}`]);
      // The guest side, as the DHCP attachment describes it.
      const att = await svc.nicAttachment('rt');
      expect(att.ipam?.prefixLength).toBe(32);
      ipn(VM, 'addr', 'add', `${ip}/32`, 'dev', 'eth0');
      ipn(VM, 'link', 'set', 'eth0', 'up');
      for (const r of att.ipam!.routes!) {
        if (r.gateway === '0.0.0.0') ipn(VM, 'route', 'add', r.destination, 'dev', 'eth0');
        else ipn(VM, 'route', 'add', r.destination === '0.0.0.0/0' ? 'default' : r.destination, 'via', r.gateway, 'dev', 'eth0');
      }
      expect(ping(VM, '169.254.1.1')).toBe(true);
      expect(ipn(VM, 'neigh', 'show', '169.254.1.1')).toMatch(/lladdr [0-9a-f:]{17}/);
      expect(ping(VM, '198.51.100.2')).toBe(true);
      expect(ping(LAN, ip)).toBe(true);
      expect((await svc.get('rt')).status).toMatchObject({ ready: true });
    });

    it('status notices a lost route; refresh restores it; DELETE is clean once the NIC is gone', async () => {
      const ip = (await (await svc.ipam('rt')).addressOf('vm1/net0'))!;
      ipn(HOST, 'route', 'del', `${ip}/32`);
      expect((await svc.get('rt')).status.checks.find((c) => c.name === 'nic:vm1/net0')?.ok).toBe(false);
      expect(await svc.refresh('rt')).toEqual([`+ ip route add ${ip}/32 dev ${tap}`]);
      expect(ping(LAN, ip)).toBe(true);
      ipn(HOST, 'link', 'del', tap);
      await svc.delete('rt');
      expect(await svc.list()).toEqual([]);
      expect(ipn(HOST, '-4', 'route', 'show')).not.toContain('203.0.113');
    });
  });
}

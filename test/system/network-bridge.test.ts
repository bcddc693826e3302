// Bridge networks on the real kernel: the network service with the real link, nft and ip/sysctl adapters
// inside private network namespaces (nvn*): a managed bridge over a veth uplink carries frames from a
// stand-in VM to "the LAN", PUT is idempotent, dry runs touch nothing, adopted bridges survive DELETE,
// and a VLAN network either works or (on this kernel, without 802.1Q) fails leaving nothing behind.
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError } from '../../daemon/lib/errors.js';
import { bridgeName } from '../../daemon/net/names.js';
import { createNetworkService, type NetworkService } from '../../daemon/net/network-service.js';
import type { Store } from '../../daemon/store/store.js';
import { addNs, delNs, ipn, netnsUnavailable, ping as pingNs, sh } from './helpers/netns.js';
import { netnsAdapters, openTempStore } from './helpers/net-service.js';

const why = netnsUnavailable();
const run = randomBytes(3).toString('hex');
const HOST = `nvn${run}h`;
const LAN = `nvn${run}l`;
const VM = `nvn${run}v`;
const made: string[] = [];

const link = (ns: string, name: string) => (JSON.parse(ipn(ns, '-d', '-j', 'link', 'show', 'dev', name)) as Array<Record<string, any>>)[0]!;
const exists = (ns: string, name: string) => {
  try {
    ipn(ns, 'link', 'show', 'dev', name);
    return true;
  } catch {
    return false;
  }
};
// One try: the negative checks must not wait for retries.
const ping = (ns: string, ip: string) => pingNs(ns, ip, 1);

/** Whether this kernel can make an 802.1Q link at all (a scratch namespace, removed at once). */
function vlanSupport(): string | undefined {
  const ns = `nvn${run}q`;
  sh('ip', 'netns', 'add', ns);
  try {
    ipn(ns, 'link', 'add', 'q0', 'type', 'veth', 'peer', 'name', 'q1');
    ipn(ns, 'link', 'add', 'link', 'q0', 'name', 'q0.5', 'type', 'vlan', 'id', '5');
    return undefined;
  } catch (e) {
    return `this kernel lacks 802.1Q VLAN devices (and bridge VLAN filtering): ${String((e as { stderr?: string }).stderr ?? e).trim()}`;
  } finally {
    sh('ip', 'netns', 'del', ns);
  }
}

if (why !== undefined) {
  describe.skip(`bridge networks (skipped: ${why})`, () => it('needs root', () => undefined));
} else {
  let dir: string;
  let store: Store;
  let svc: NetworkService;
  const noVlan = vlanSupport();

  beforeAll(async () => {
    for (const ns of [HOST, LAN, VM]) addNs(ns, made);
    // The uplink: a veth whose far end is "the LAN" with 192.168.77.1.
    ipn(HOST, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', LAN);
    ipn(LAN, 'addr', 'add', '192.168.77.1/24', 'dev', 'lan0');
    ipn(LAN, 'link', 'set', 'lan0', 'up');
    ipn(HOST, 'link', 'add', 'up1', 'type', 'veth', 'peer', 'name', 'up1p');
    // A stand-in VM NIC: veth whose far end is in the VM namespace (taps need a guest to carry frames).
    ipn(HOST, 'link', 'add', 'vm0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', VM);
    ipn(VM, 'addr', 'add', '192.168.77.10/24', 'dev', 'eth0');
    ipn(VM, 'link', 'set', 'eth0', 'up');
    ({ store, dir } = await openTempStore('nodevirt-netsys-'));
    svc = createNetworkService({ store, adapters: netnsAdapters(HOST) });
  });

  afterAll(async () => {
    delNs(made);
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('bridge networks (real kernel, private netns)', () => {
    const br = bridgeName('lan');

    it('dry run plans the managed bridge and creates nothing', async () => {
      const r = await svc.put('lan', { type: 'bridge', mtu: 1400, bridge: { uplinks: ['up0'] } }, { dryRun: true });
      expect(r.diff).toBe(`+ ip link add name ${br} mtu 1400 type bridge\n~ ip link set dev up0 mtu 1400 master ${br} up\n~ ip link set dev ${br} up\n`);
      expect(exists(HOST, br)).toBe(false);
    });

    it('creates the bridge (MTU, STP off, uplink enslaved); a VM port on it reaches the LAN over L2', async () => {
      const r = await svc.put('lan', { type: 'bridge', mtu: 1400, bridge: { uplinks: ['up0'] } });
      expect(r.network.status.checks.filter((c) => !c.ok)).toEqual([]);
      const b = link(HOST, br);
      expect(b.mtu).toBe(1400);
      expect(b.linkinfo.info_data.stp_state).toBe(0);
      expect(link(HOST, 'up0').master).toBe(br);
      const att = await svc.nicAttachment('lan');
      ipn(HOST, 'link', 'set', 'vm0', 'mtu', String(att.mtu), 'master', att.bridge!, 'up');
      ipn(VM, 'link', 'set', 'eth0', 'mtu', String(att.mtu));
      ipn(LAN, 'link', 'set', 'lan0', 'mtu', '1400');
      let ok = false;
      // The new bridge port goes through STP-less forwarding delay 0, but linkwatch may lag a moment.
      for (let i = 0; i < 10 && !ok; i++) ok = ping(VM, '192.168.77.1');
      expect(ok).toBe(true);
    });

    it('the same PUT twice changes nothing; an uplink swap moves only the generation and the ports', async () => {
      const again = await svc.put('lan', { type: 'bridge', mtu: 1400, bridge: { uplinks: ['up0'] } });
      expect(again).toMatchObject({ changed: false, changes: [] });
      expect(again.network.generation).toBe(1);
      const swap = await svc.put('lan', { type: 'bridge', mtu: 1400, bridge: { uplinks: ['up1'] } });
      expect(swap.network.generation).toBe(2);
      expect(link(HOST, 'up0').master).toBeUndefined();
      expect(link(HOST, 'up1').master).toBe(br);
      const back = await svc.put('lan', { type: 'bridge', mtu: 1400, bridge: { uplinks: ['up0'] } });
      expect(back.network.generation).toBe(3);
    });

    it('status reports drift (uplink released by hand) and the same PUT repairs it', async () => {
      ipn(HOST, 'link', 'set', 'up0', 'nomaster');
      const got = await svc.get('lan');
      expect(got.status.ready).toBe(false);
      expect(got.status.checks.find((c) => c.name === 'port:up0')?.ok).toBe(false);
      await svc.put('lan', { type: 'bridge', mtu: 1400, bridge: { uplinks: ['up0'] } });
      expect(link(HOST, 'up0').master).toBe(br);
      expect((await svc.get('lan')).status.ready).toBe(true);
    });

    it('adopts an existing bridge without touching it and leaves it on DELETE', async () => {
      ipn(HOST, 'link', 'add', 'vmbr0', 'type', 'bridge');
      const r = await svc.put('adopt', { type: 'bridge', bridge: { name: 'vmbr0', managed: false } });
      expect(r.changes).toEqual([]);
      await svc.delete('adopt');
      expect(exists(HOST, 'vmbr0')).toBe(true);
    });

    it('DELETE removes the managed bridge and releases the uplink', async () => {
      ipn(HOST, 'link', 'set', 'vm0', 'nomaster');
      await svc.delete('lan');
      expect(exists(HOST, br)).toBe(false);
      expect(link(HOST, 'up0').master).toBeUndefined();
      expect(await svc.list()).toEqual([]);
    });

    if (noVlan !== undefined) {
      console.warn(`[skip] VLAN bridge network with traffic: ${noVlan}`);
      it.skip(`VLAN traffic over a tagged uplink (skipped: ${noVlan})`, () => undefined);
      it('without 802.1Q, a VLAN network fails with HOST_ERROR and leaves nothing behind', async () => {
        const before = ipn(HOST, '-j', 'link', 'show');
        const err = await svc.put('tagged', { type: 'bridge', vlan: 100, bridge: { uplinks: ['up1'] } }).catch((e: unknown) => e);
        expect(isAppError(err, 'HOST_ERROR')).toBe(true);
        expect(ipn(HOST, '-j', 'link', 'show')).toBe(before);
        expect(await svc.list()).toEqual([]);
      });
    } else {
      it('a VLAN network enslaves a tagged sub-interface of the uplink', async () => {
        const r = await svc.put('tagged', { type: 'bridge', vlan: 100, bridge: { uplinks: ['up1'] } });
        expect(r.network.status.ready).toBe(true);
        await svc.delete('tagged');
        expect(link(HOST, 'up1').master).toBeUndefined();
      });
    }
  });
}

// Floating IPs of a routed network on the real kernel, in private namespaces (nvf*): a "LAN" host with no
// route to the pool reaches a stand-in VM through its floating IP (DNAT), the VM reaches the LAN as that
// address (SNAT); a reboot stand-in is repaired by reconcile; DELETE leaves no rule and no address.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tapName } from '../../daemon/net/names.js';
import { routedTable } from '../../daemon/net/network-routed.js';
import { createNetworkService, type NetworkService } from '../../daemon/net/network-service.js';
import type { Store } from '../../daemon/store/store.js';
import { addNs, delNs, ipn, netnsUnavailable, sh, vethBetween } from './helpers/netns.js';
import { netnsAdapters, openTempStore } from './helpers/net-service.js';

const why = netnsUnavailable();
const run = randomBytes(3).toString('hex');
const HOST = `nvf${run}h`;
const LAN = `nvf${run}l`;
const VM = `nvf${run}v`;
const FIP = '198.51.100.50';
const made: string[] = [];
const servers: ChildProcess[] = [];


/** A TCP server in `ns` that answers each connection with "<who> saw <peer address>" and closes. */
async function serve(ns: string, who: string, port: number): Promise<void> {
  const js = `require('net').createServer(s=>s.end('${who} saw '+s.remoteAddress)).listen(${port},'0.0.0.0',()=>console.log('up'))`;
  const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', js], { stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(p);
  await new Promise<void>((resolve, reject) => {
    p.stdout!.once('data', () => resolve());
    p.once('exit', (c) => reject(new Error(`server in ${ns} exited ${c}`)));
  });
}

/** What a TCP connect from `ns` to ip:port reads, or "unreachable" (2 s, three tries for a fresh veth). */
function connect(ns: string, ip: string, port: number, tries = 3): string {
  const js = `const c=require('net').connect(${port},'${ip}');let b='';c.on('data',d=>b+=d);c.on('end',()=>{console.log(b);process.exit(0)});c.on('error',()=>process.exit(1));setTimeout(()=>process.exit(1),2000)`;
  for (let i = 0; i < tries; i++) {
    try {
      return sh('ip', 'netns', 'exec', ns, process.execPath, '-e', js).trim();
    } catch {
      // refused, timed out or not yet forwarding
    }
  }
  return 'unreachable';
}

if (why !== undefined) {
  describe.skip(`floating IPs (skipped: ${why})`, () => it('needs root', () => undefined));
} else {
  let dir: string;
  let store: Store;
  let svc: NetworkService;
  let vmIp: string;
  const tap = tapName('vm1', 'net0');
  const adapters = () => (netnsAdapters(HOST));

  beforeAll(async () => {
    for (const ns of [HOST, LAN, VM]) addNs(ns, made);
    vethBetween({ ns: HOST, name: 'up0', cidr: '198.51.100.1/24' }, { ns: LAN, name: 'lan0', cidr: '198.51.100.2/24' });
    // Unlike the routed test, the LAN knows no route to the pool: only the floating IP can work.
    ({ store, dir } = await openTempStore('nodevirt-fipsys-'));
    svc = createNetworkService({ store, adapters: adapters() });
    await svc.put('rt', { type: 'routed', routed: { pool: '203.0.113.16/28', uplink: 'up0' } });
    vmIp = await (await svc.ipam('rt')).allocate('vm1/net0');
    ipn(HOST, 'link', 'add', tap, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', VM);
    ipn(HOST, 'link', 'set', tap, 'up');
    await svc.refresh('rt');
    ipn(VM, 'addr', 'add', `${vmIp}/32`, 'dev', 'eth0');
    ipn(VM, 'link', 'set', 'eth0', 'up');
    ipn(VM, 'route', 'add', '169.254.1.1/32', 'dev', 'eth0');
    ipn(VM, 'route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0');
    await serve(VM, 'vm', 7000);
    await serve(LAN, 'lan', 7001);
  });

  afterAll(async () => {
    for (const p of servers) p.kill('SIGKILL');
    delNs(made);
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const hostHasFip = () => ipn(HOST, '-4', 'addr', 'show', 'dev', 'up0').includes(`${FIP}/32`);
  const hostHasTable = () => sh('ip', 'netns', 'exec', HOST, 'nft', 'list', 'tables').includes(routedTable('rt'));

  describe('floating IPs of a routed network (real kernel, private netns)', () => {
    it('without a floating IP the LAN cannot reach the VM, and the VM cannot reach the LAN', () => {
      expect(connect(LAN, FIP, 7000, 1)).toBe('unreachable');
      expect(connect(VM, '198.51.100.2', 7001, 1)).toBe('unreachable');
    });

    it('PUT maps the floating IP: the LAN reaches the VM through it, the VM reaches the LAN as it', async () => {
      const r = await svc.floatingIpPut('rt', FIP, { vm: 'vm1', nic: 'net0' });
      expect(r.created).toBe(true);
      expect(r.changes).toContain(`+ ip addr add ${FIP}/32 dev up0`);
      expect(r.changes).toContain(`+ nft table inet ${routedTable('rt')}`);
      // The VM answers (not the host, which owns the address): DNAT, and the VM sees the LAN's own address.
      expect(connect(LAN, FIP, 7000)).toBe('vm saw 198.51.100.2');
      // SNAT: the LAN sees the floating IP, and could not answer the pool address anyway.
      expect(connect(VM, '198.51.100.2', 7001)).toBe(`lan saw ${FIP}`);
      expect(await svc.floatingIp('rt', FIP)).toMatchObject({ ip: FIP, vm: 'vm1', nic: 'net0', nicAddress: vmIp, ready: true });
      expect((await svc.get('rt')).status.ready).toBe(true);
      // The same PUT again changes nothing.
      const again = await svc.floatingIpPut('rt', FIP, { vm: 'vm1', nic: 'net0' });
      expect(again).toMatchObject({ created: false, changed: false, changes: [] });
    });

    it('reconcile after a reboot stand-in (address and table gone) maps it again', async () => {
      ipn(HOST, 'addr', 'del', `${FIP}/32`, 'dev', 'up0');
      sh('ip', 'netns', 'exec', HOST, 'nft', 'delete', 'table', 'inet', routedTable('rt'));
      expect(connect(LAN, FIP, 7000, 1)).toBe('unreachable');
      const restarted = createNetworkService({ store, adapters: adapters() });
      expect((await restarted.floatingIp('rt', FIP)).ready).toBe(false);
      const [res] = await restarted.reconcile();
      expect(res).toMatchObject({ name: 'rt', interrupted: false });
      expect(res!.changes).toContain(`+ ip addr add ${FIP}/32 dev up0`);
      expect(connect(LAN, FIP, 7000)).toBe('vm saw 198.51.100.2');
      svc = restarted;
    });

    it('DELETE unmaps it: unreachable again, no nft table, no address left', async () => {
      await svc.floatingIpDelete('rt', FIP);
      expect(await svc.floatingIps('rt')).toEqual([]);
      expect(hostHasFip()).toBe(false);
      expect(hostHasTable()).toBe(false);
      expect(connect(LAN, FIP, 7000, 1)).toBe('unreachable');
      expect(connect(VM, '198.51.100.2', 7001, 1)).toBe('unreachable');
      await expect(svc.floatingIpDelete('rt', FIP)).rejects.toMatchObject({ code: 'FLOATING_IP_NOT_FOUND' });
      // The uplink keeps the host's own address.
      expect(ipn(HOST, '-4', 'addr', 'show', 'dev', 'up0')).toContain('198.51.100.1/24');
    });
  });
}

// Real DHCP clients (busybox udhcpc, dhcpcd, ISC dhclient) against the DHCP service on a real kernel: each
// "VM" is a network namespace holding one end of a veth whose other end is a port of a bridge in this
// namespace, and the server's packet socket is bound to that port. Also a persistent tap from createTap,
// driven from its guest side through /dev/net/tun the way qemu would (a tap has no peer to put a client on).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTap, deleteTap, openPacketSocket, type PacketSocket } from '../../daemon/host/native.js';
import { createLogger } from '../../daemon/lib/logger.js';
import { parseMac } from '../../daemon/net/dhcp/addr.js';
import { decodeDhcp, messageTypeOf } from '../../daemon/net/dhcp/codec.js';
import { createDhcpService, type DhcpService } from '../../daemon/net/dhcp/dhcp-service.js';
import { buildFrame, parseFrame } from '../../daemon/net/dhcp/frame.js';
import { MSG } from '../../daemon/net/dhcp/options.js';
import { createLeaseRepo, type LeaseRepo, type StoredLease } from '../../daemon/net/dhcp/lease-repo.js';
import type { DhcpEvent } from '../../daemon/net/dhcp/server.js';
import { createStore, type Store } from '../../daemon/store/store.js';

const CLIENTS = { udhcpc: '/usr/bin/busybox', dhcpcd: '/usr/sbin/dhcpcd', dhclient: '/usr/sbin/dhclient', tcpdump: '/usr/bin/tcpdump' };
const missing =
  process.getuid?.() !== 0
    ? 'needs root (network namespaces, bridges, packet sockets)'
    : Object.entries(CLIENTS)
        .filter(([, p]) => !existsSync(p))
        .map(([n, p]) => `${n} (${p}) is not installed`)
        .join(', ') || undefined;

const ID = randomBytes(2).toString('hex');
const BR = `nvdbr${ID}`;
/** Host-side bridge ports of the two "VMs", and the uplink veth pair (bridge end, outside end). */
const PORT_A = `nvdp${ID}a`;
const PORT_B = `nvdp${ID}b`;
const UPLINK = `nvdu${ID}`;
const OUTSIDE = `nvdw${ID}`;
const NS_A = `nvd${ID}a`;
const NS_B = `nvd${ID}b`;
const TAP = `nvdt${ID}`;
const MAC_A = `52:54:00:7e:${ID.slice(0, 2)}:${ID.slice(2)}`;
const MAC_B = `52:54:00:7f:${ID.slice(0, 2)}:${ID.slice(2)}`;
const MAC_TAP = `52:54:00:7d:${ID.slice(0, 2)}:${ID.slice(2)}`;
const NET = '10.213.47';
const SERVER_IP = `${NET}.1`;
const VM_IP = `${NET}.23`;
const LEASE_SECONDS = 10;

const CONFIG = {
  ifname: PORT_A,
  mac: MAC_A,
  ip: VM_IP,
  prefixLength: 24,
  serverIp: SERVER_IP,
  router: SERVER_IP,
  dns: [SERVER_IP, '9.9.9.9'],
  hostname: 'vm-alpha',
  domainName: 'example.internal',
  search: ['example.internal', 'corp.example'],
  mtu: 1400,
  routes: [{ destination: '172.16.0.0/12', gateway: `${NET}.254` }],
  leaseSeconds: LEASE_SECONDS,
};

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
const ip = (...args: string[]) => sh('ip', args);
const nsIp = (ns: string, ...args: string[]) => sh('ip', ['-n', ns, ...args]);
function tryRun(cmd: string, args: string[]): void {
  spawnSync(cmd, args, { stdio: 'ignore' });
}

let tmp = '';
let service: DhcpService;
let store: Store;
let leases: LeaseRepo;
const events: Array<{ ifname: string; e: DhcpEvent }> = [];
const uplinkReplies: Buffer[] = [];
let uplinkRequests = 0;
const captures: PacketSocket[] = [];
const children = new Set<ChildProcess>();

async function cleanup(): Promise<void> {
  for (const c of children) c.kill('SIGKILL');
  for (const c of captures) c.close();
  service?.stop();
  await leases?.stop().catch(() => {});
  await store?.close().catch(() => {});
  for (const ns of [NS_A, NS_B]) tryRun('ip', ['netns', 'del', ns]);
  for (const l of [PORT_A, PORT_B, UPLINK, BR]) tryRun('ip', ['link', 'del', l]);
  try {
    deleteTap(TAP);
  } catch {
    // not created, or already gone
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}

/** A veth whose inside end is eth0 (with `mac`) in a fresh namespace and whose host end is a bridge port. */
function addVm(ns: string, port: string, mac: string): void {
  ip('netns', 'add', ns);
  ip('link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  nsIp(ns, 'link', 'set', 'eth0', 'address', mac);
  nsIp(ns, 'link', 'set', 'lo', 'up');
  nsIp(ns, 'link', 'set', 'eth0', 'up');
  ip('link', 'set', port, 'master', BR);
  ip('link', 'set', port, 'up');
}

/**
 * Runs `argv` inside `ns` in private mount and UTS namespaces with /etc overlaid and /run, /var/lib on
 * tmpfs, so client state files, resolv.conf and hostname changes never reach the host.
 */
function isolated(ns: string, argv: string[], env: Record<string, string> = {}): ChildProcess {
  const iso = join(tmp, `iso-${children.size}-${Date.now()}`);
  const setup = [
    'set -e',
    `mkdir -p ${iso}`,
    `mount -t tmpfs nvd ${iso}`,
    `mkdir ${iso}/u ${iso}/w`,
    `mount -t overlay nvd -o lowerdir=/etc,upperdir=${iso}/u,workdir=${iso}/w /etc`,
    'mount -t tmpfs nvd /run',
    'mount -t tmpfs nvd /var/lib',
    'mkdir -p /var/lib/dhcpcd /var/lib/dhcp /run/dhcpcd',
    'exec "$@"',
  ].join('\n');
  const child = spawn('ip', ['netns', 'exec', ns, 'unshare', '-m', '-u', '--', 'sh', '-c', setup, 'sh', ...argv], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  (child as ChildProcess & { output: () => string }).output = () => out;
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}
const outputOf = (c: ChildProcess) => (c as ChildProcess & { output?: () => string }).output?.() ?? '';

async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

/** What the server saw, for failure messages. */
function diagnosis(): string {
  const st = service?.status() ?? [];
  const deaf = st.find((s) => s.ifname === PORT_A && s.open && s.stats.received === 0);
  const hint = deaf
    ? `\nno frame reached the packet socket on bridge port ${PORT_A}: a bridge port's ingress is only visible to ETH_P_ALL packet sockets (the bridge consumes frames before protocol-specific handlers run)`
    : '';
  return `server: ${JSON.stringify(st.map((s) => ({ ifname: s.ifname, open: s.open, stats: s.stats })))}${hint}`;
}

async function until<T>(what: string, f: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, extra: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${extra()}\n${diagnosis()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Blocks of `EVENT <reason>` + env lines written by the env-dumping hook scripts. */
function hookEvents(file: string): Array<{ event: string; env: Map<string, string> }> {
  if (!existsSync(file)) return [];
  const out: Array<{ event: string; env: Map<string, string> }> = [];
  const blocks = readFileSync(file, 'utf8').split('\nEND\n');
  // The last piece is a block still being written (or nothing): only finished blocks count.
  blocks.pop();
  for (const block of blocks) {
    const lines = block.split('\n').filter(Boolean);
    const head = lines.shift();
    if (!head?.startsWith('EVENT ')) continue;
    const env = new Map<string, string>();
    for (const l of lines) {
      const i = l.indexOf('=');
      if (i > 0) env.set(l.slice(0, i), l.slice(i + 1));
    }
    out.push({ event: head.slice(6), env });
  }
  return out;
}

function script(name: string, body: string): string {
  const p = join(tmp, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

/** The env-dumping hook every client gets; `$2` lets dhclient's wrapper name its reason. */
function dumpHook(name: string, log: string, then = ''): string {
  return script(name, `{ echo "EVENT \${reason:-$1}"; env | sort; ${then} echo END; } >> ${log}`);
}

async function resetVm(): Promise<void> {
  nsIp(NS_A, 'addr', 'flush', 'dev', 'eth0');
  nsIp(NS_A, 'link', 'set', 'eth0', 'mtu', '1500');
  nsIp(NS_A, 'route', 'flush', 'dev', 'eth0');
}

const acksFor = (mac: string) => events.filter((x) => x.e.type === 'ack' && x.e.mac === mac).length;

if (missing) {
  describe('DHCP service with real clients', () => {
    it.skip(`skipped: ${missing}`, () => {});
  });
} else {
  describe('DHCP service with real clients', () => {
    beforeAll(async () => {
      tmp = mkdtempSync(join(tmpdir(), 'nvd-dhcp-'));
      try {
        store = createStore({ stateDir: join(tmp, 'state') });
        await store.open();
        leases = createLeaseRepo({ leases: store.sublevel<StoredLease>('dhcp-leases') });
        await leases.start();
        ip('link', 'add', BR, 'type', 'bridge');
        ip('link', 'set', BR, 'up');
        // The server's address lives on the bridge, as the gateway would: renewals are unicast to it.
        ip('addr', 'add', `${SERVER_IP}/24`, 'dev', BR);
        ip('link', 'add', UPLINK, 'type', 'veth', 'peer', 'name', OUTSIDE);
        ip('link', 'set', UPLINK, 'master', BR);
        ip('link', 'set', UPLINK, 'up');
        ip('link', 'set', OUTSIDE, 'up');
        addVm(NS_A, PORT_A, MAC_A);
        addVm(NS_B, PORT_B, MAC_B);
        // Everything DHCP that leaves the bridge by the uplink arrives here.
        captures.push(openPacketSocket(OUTSIDE, { udpDstPort: 68 }, (f) => uplinkReplies.push(Buffer.from(f))));
        captures.push(openPacketSocket(OUTSIDE, { udpDstPort: 67 }, () => uplinkRequests++));
        service = createDhcpService({
          openPacketSocket,
          leases: {
            record: (ifname, e) => {
              events.push({ ifname, e });
              leases.record(ifname, e);
            },
          },
          logger: createLogger({ level: process.env.NODEVIRT_LOG_LEVEL ? undefined : 'warn' }),
          pollMs: 200,
        });
        service.start();
        service.attach(CONFIG);
      } catch (e) {
        await cleanup();
        throw e;
      }
    });

    afterAll(async () => {
      await cleanup();
      const leftovers = ip('-o', 'link').split('\n').filter((l) => l.includes(ID));
      expect(leftovers).toEqual([]);
    });

    it('serves the bridge port once it exists', () => {
      expect(service.status()).toEqual([expect.objectContaining({ ifname: PORT_A, open: true, mac: MAC_A, ip: VM_IP })]);
    });

    it('busybox udhcpc gets exactly the configured lease, renews on SIGUSR1, and releases', async () => {
      await resetVm();
      const log = join(tmp, 'udhcpc.log');
      const hook = dumpHook('udhcpc.sh', log);
      const before = acksFor(MAC_A);
      const c = isolated(NS_A, [
        'busybox', 'udhcpc', '-f', '-i', 'eth0', '-t', '5', '-T', '1', '-A', '1', '-s', hook, '-R',
        '-O', 'mtu', '-O', 'staticroutes', '-O', 'search', '-O', 'hostname', '-O', 'domain',
      ]);
      try {
        const bound = await until('udhcpc bound', () => hookEvents(log).find((x) => x.event === 'bound'), 15_000, () => outputOf(c));
        const env = bound.env;
        expect(env.get('ip')).toBe(VM_IP);
        expect(env.get('subnet')).toBe('255.255.255.0');
        expect(env.get('router')).toBe(SERVER_IP);
        expect(env.get('dns')?.trim().split(/\s+/)).toEqual([SERVER_IP, '9.9.9.9']);
        expect(env.get('mtu')).toBe('1400');
        expect(env.get('hostname')).toBe('vm-alpha');
        expect(env.get('domain')).toBe('example.internal');
        expect(env.get('search')?.trim().split(/\s+/)).toEqual(['example.internal', 'corp.example']);
        // RFC 3442: our route and the default route we add because 121 replaces option 3.
        expect(env.get('staticroutes')).toBe(`172.16.0.0/12 ${NET}.254 0.0.0.0/0 ${SERVER_IP}`);
        expect(env.get('lease')).toBe(String(LEASE_SECONDS));
        expect(env.get('serverid')).toBe(SERVER_IP);
        // The ACK is in the lease repository, and a new lease is on disk at once.
        const [lease] = await leases.list({ interface: PORT_A });
        expect(lease).toMatchObject({ interface: PORT_A, mac: MAC_A, ip: VM_IP, releasedAt: null });
        expect(lease!.acks).toBeGreaterThanOrEqual(1);
        expect(Date.parse(lease!.lastAckAt!)).toBeGreaterThan(Date.now() - 60_000);
        await until('lease on disk', async () => (await store.sublevel<StoredLease>('dhcp-leases').get(PORT_A))?.mac === MAC_A, 3000);

        // Renewing is unicast from the leased address; udhcpc uses a kernel UDP socket for it, so give
        // eth0 the address like its default script would.
        nsIp(NS_A, 'addr', 'add', `${VM_IP}/24`, 'dev', 'eth0');
        const acks = acksFor(MAC_A);
        c.kill('SIGUSR1');
        await until('udhcpc renew', () => hookEvents(log).find((x) => x.event === 'renew'), 10_000, () => outputOf(c));
        expect(acksFor(MAC_A)).toBeGreaterThan(acks);
        expect(acksFor(MAC_A)).toBeGreaterThan(before);
        // -R: release on exit, which the server records.
        const releases = events.filter((x) => x.e.type === 'release').length;
        await stop(c);
        await until('release event', () => events.filter((x) => x.e.type === 'release').length > releases, 5000);
        expect((await leases.list({ mac: MAC_A }))[0]?.releasedAt).not.toBeNull();
      } finally {
        await stop(c);
      }
    });

    it('dhcpcd applies exactly the configured address, mask, routes, MTU, and renews a 10 s lease', async () => {
      await resetVm();
      const log = join(tmp, 'dhcpcd.log');
      const hook = dumpHook('dhcpcd.sh', log);
      const conf = join(tmp, 'dhcpcd.conf');
      writeFileSync(
        conf,
        ['option domain_name_servers, domain_name, domain_search, host_name, interface_mtu, classless_static_routes', 'option rapid_commit', 'noipv6rs', 'noarp', ''].join('\n'),
      );
      const acksBefore = acksFor(MAC_A);
      // -B: stay in the foreground; -4: IPv4 only; -c: our hook instead of dhcpcd-run-hooks.
      const c = isolated(NS_A, ['dhcpcd', '-B', '-4', '-f', conf, '-c', hook, '-t', '15', 'eth0']);
      try {
        await until('dhcpcd bound', () => hookEvents(log).find((x) => x.event === 'BOUND'), 20_000, () => outputOf(c));
        await until('address on eth0', () => nsIp(NS_A, '-4', '-o', 'addr', 'show', 'dev', 'eth0').includes(VM_IP), 5000);
        const addr = nsIp(NS_A, '-4', '-o', 'addr', 'show', 'dev', 'eth0');
        expect(addr).toMatch(new RegExp(`inet ${VM_IP.replaceAll('.', '\\.')}/24 brd ${NET}\\.255 `));
        expect(addr.trim().split('\n')).toHaveLength(1);
        const routes = nsIp(NS_A, '-4', 'route', 'show', 'dev', 'eth0');
        expect(routes).toMatch(new RegExp(`^default via ${SERVER_IP.replaceAll('.', '\\.')} `, 'm'));
        expect(routes).toMatch(new RegExp(`^172\\.16\\.0\\.0/12 via ${NET}\\.254 `, 'm'));
        // dhcpcd 9 applies option 26 as the MTU of the routes it installs, not of the link.
        for (const r of routes.trim().split('\n')) expect(r).toMatch(/ mtu 1400\b/);
        const env = hookEvents(log).find((x) => x.event === 'BOUND')!.env;
        expect(env.get('new_ip_address')).toBe(VM_IP);
        expect(env.get('new_subnet_mask')).toBe('255.255.255.0');
        expect(env.get('new_routers')).toBe(SERVER_IP);
        expect(env.get('new_domain_name_servers')).toBe(`${SERVER_IP} 9.9.9.9`);
        expect(env.get('new_host_name')).toBe('vm-alpha');
        expect(env.get('new_domain_search')).toBe('example.internal corp.example');
        expect(env.get('new_interface_mtu')).toBe('1400');
        expect(env.get('new_classless_static_routes')).toBe(`172.16.0.0/12 ${NET}.254 0.0.0.0/0 ${SERVER_IP}`);
        // T1 is half the lease: dhcpcd renews by itself.
        await until('dhcpcd renew', () => hookEvents(log).find((x) => x.event === 'RENEW'), 25_000, () => outputOf(c));
        expect(acksFor(MAC_A)).toBeGreaterThanOrEqual(acksBefore + 2);
      } finally {
        await stop(c);
      }
    }, 60_000);

    it('ISC dhclient: INIT-REBOOT for a stale address gets a NAK, then the configured lease, then renews', async () => {
      await resetVm();
      const log = join(tmp, 'dhclient.log');
      // The real dhclient-script applies the lease (inside the overlay, so resolv.conf is ours to read).
      const hook = dumpHook('dhclient.sh', log, 'echo RESOLV=$(tr "\\n" " " < /etc/resolv.conf);');
      const wrapper = script('dhclient-wrap.sh', `/sbin/dhclient-script "$@"; rc=$?; ${hook} "$@"; exit $rc`);
      const conf = join(tmp, 'dhclient.conf');
      writeFileSync(
        conf,
        [
          'option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;',
          'request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, domain-search, host-name, interface-mtu, rfc3442-classless-static-routes;',
          '',
        ].join('\n'),
      );
      // A remembered lease for another address makes dhclient start in INIT-REBOOT: a REQUEST for it.
      const lf = join(tmp, 'dhclient.leases');
      const stale = `${NET}.99`;
      writeFileSync(
        lf,
        `lease {\n  interface "eth0";\n  fixed-address ${stale};\n  option subnet-mask 255.255.255.0;\n  option dhcp-server-identifier ${SERVER_IP};\n  renew 4 2037/01/01 00:00:00;\n  rebind 4 2037/01/01 00:00:00;\n  expire 4 2037/01/01 00:00:00;\n}\n`,
      );
      const naks = events.filter((x) => x.e.type === 'nak' && x.e.ip === stale).length;
      const c = isolated(NS_A, ['dhclient', '-d', '-4', '-v', '-cf', conf, '-lf', lf, '-pf', join(tmp, 'dhclient.pid'), '-sf', wrapper, 'eth0']);
      try {
        const bound = await until('dhclient BOUND', () => hookEvents(log).find((x) => x.event === 'BOUND'), 20_000, () => outputOf(c));
        expect(events.filter((x) => x.e.type === 'nak' && x.e.ip === stale).length).toBeGreaterThan(naks);
        expect(outputOf(c)).toMatch(/DHCPNAK from 10\.213\.47\.1/);
        const env = bound.env;
        expect(env.get('new_ip_address')).toBe(VM_IP);
        expect(env.get('new_subnet_mask')).toBe('255.255.255.0');
        expect(env.get('new_routers')).toBe(SERVER_IP);
        expect(env.get('new_domain_name_servers')).toBe(`${SERVER_IP} 9.9.9.9`);
        expect(env.get('new_host_name')).toBe('vm-alpha');
        expect(env.get('new_domain_search')).toBe('example.internal. corp.example.');
        expect(env.get('new_interface_mtu')).toBe('1400');
        expect(env.get('new_rfc3442_classless_static_routes')).toBe(`12 172 16 10 213 47 254 0 10 213 47 1`);
        expect(env.get('RESOLV')).toMatch(/search example\.internal\.? corp\.example\.? nameserver 10\.213\.47\.1 nameserver 9\.9\.9\.9/);
        // What dhclient-script applied to the kernel.
        expect(nsIp(NS_A, '-4', '-o', 'addr', 'show', 'dev', 'eth0')).toMatch(new RegExp(`inet ${VM_IP.replaceAll('.', '\\.')}/24 `));
        const routes = nsIp(NS_A, '-4', 'route', 'show', 'dev', 'eth0');
        expect(routes).toMatch(new RegExp(`^default via ${SERVER_IP.replaceAll('.', '\\.')} `, 'm'));
        expect(routes).toMatch(new RegExp(`^172\\.16\\.0\\.0/12 via ${NET}\\.254 `, 'm'));
        expect(nsIp(NS_A, '-o', 'link', 'show', 'dev', 'eth0')).toMatch(/ mtu 1400 /);
        await until('dhclient RENEW', () => hookEvents(log).find((x) => x.event === 'RENEW'), 25_000, () => outputOf(c));
      } finally {
        await stop(c);
      }
    }, 60_000);

    it('a client with another MAC on the same bridge gets nothing, and no reply ever left by the uplink', async () => {
      const offersBefore = events.filter((x) => x.e.type === 'offer').length;
      const log = join(tmp, 'udhcpc-b.log');
      const hook = dumpHook('udhcpc-b.sh', log);
      const c = isolated(NS_B, ['busybox', 'udhcpc', '-f', '-q', '-n', '-i', 'eth0', '-t', '3', '-T', '1', '-s', hook]);
      const code = await new Promise<number | null>((resolve) => c.once('exit', (n) => resolve(n)));
      expect(code).not.toBe(0);
      expect(hookEvents(log).map((x) => x.event)).not.toContain('bound');
      expect(events.filter((x) => x.e.type === 'offer').length).toBe(offersBefore);
      expect(events.every((x) => x.e.mac === MAC_A || x.e.mac === MAC_TAP)).toBe(true);
      // The capture works (clients' broadcasts flood out of the uplink) and saw not one reply.
      expect(uplinkRequests).toBeGreaterThan(0);
      expect(uplinkReplies.map((f) => f.toString('hex'))).toEqual([]);
    }, 20_000);

    it('a persistent tap from createTap: served once it exists, closed when deleted, served again when re-created', async () => {
      // python3 plays qemu: it attaches to the tap through /dev/net/tun and writes the guest's frames.
      const py = [
        'import fcntl, os, struct, sys, select, time',
        'fd = os.open("/dev/net/tun", os.O_RDWR)',
        'fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", sys.argv[1].encode(), 0x0002 | 0x1000))',
        // Carrier comes up on attach; frames written in the same instant can be dropped.
        'time.sleep(0.3)',
        'os.write(fd, bytes.fromhex(sys.argv[2]))',
        'end = time.time() + 5',
        'while time.time() < end:',
        '    r, _, _ = select.select([fd], [], [], 0.2)',
        '    if not r: continue',
        '    f = os.read(fd, 4096)',
        '    if len(f) > 42 and f[12:14] == b"\\x08\\x00" and f[23] == 17 and f[36:38] == b"\\x00\\x44":',
        '        print(f.hex()); sys.exit(0)',
        'sys.exit(3)',
      ].join('\n');
      const discover = buildFrame({
        srcMac: parseMac(MAC_TAP)!,
        dstMac: 0xffffffffffff,
        srcIp: 0,
        dstIp: 0xffffffff,
        srcPort: 68,
        dstPort: 67,
        payload: discoverPayload(MAC_TAP),
      });
      // Asynchronous on purpose: the server answers from this very event loop.
      const exchange = async () => {
        const c = spawn('python3', ['-c', py, TAP, Buffer.from(discover).toString('hex')], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        c.stdout.on('data', (d: Buffer) => (out += d.toString()));
        c.stderr.on('data', (d: Buffer) => (out += d.toString()));
        const code = await new Promise<number | null>((resolve) => c.once('exit', (n) => resolve(n)));
        if (code !== 0) throw new Error(`tap exchange failed (${code}): ${out}\n${JSON.stringify(service.status())}`);
        return Buffer.from(out.trim(), 'hex');
      };
      service.attach({ ifname: TAP, mac: MAC_TAP, ip: `${NET}.77`, prefixLength: 24, serverIp: SERVER_IP, router: SERVER_IP });
      try {
        expect(service.status().find((s) => s.ifname === TAP)?.open).toBe(false);
        createTap(TAP);
        ip('link', 'set', TAP, 'up');
        await until('tap served', () => service.status().find((s) => s.ifname === TAP)?.open, 3000);
        const offerOf = (f: Buffer | undefined) => {
          const p = f && parseFrame(f);
          const d = p?.ok ? decodeDhcp(p.frame.payload) : undefined;
          return d?.ok ? { type: messageTypeOf(d.message), yiaddr: d.message.yiaddr, dst: p!.ok ? p!.frame.dstMac : 0 } : undefined;
        };
        expect(offerOf(await exchange())).toEqual({ type: MSG.OFFER, yiaddr: 0x0ad52f4d, dst: parseMac(MAC_TAP) });
        const firstIndex = service.status().find((s) => s.ifname === TAP)!.ifindex;

        deleteTap(TAP);
        await until('transport closed', () => service.status().find((s) => s.ifname === TAP)?.open === false, 3000);
        createTap(TAP);
        ip('link', 'set', TAP, 'up');
        await until('tap served again', () => service.status().find((s) => s.ifname === TAP)?.open, 3000);
        expect(service.status().find((s) => s.ifname === TAP)!.ifindex).not.toBe(firstIndex);
        expect(offerOf(await exchange())?.type).toBe(MSG.OFFER);
      } finally {
        service.detach(TAP);
      }
    }, 30_000);
  });
}

/** A minimal DISCOVER with a parameter request list, written field by field. */
function discoverPayload(mac: string): Uint8Array {
  const b = new Uint8Array(300);
  b.set([1, 1, 6, 0, 0x12, 0x34, 0x56, 0x78]);
  const m = parseMac(mac)!;
  for (let i = 0; i < 6; i++) b[28 + i] = Math.floor(m / 2 ** (8 * (5 - i))) % 256;
  b.set([99, 130, 83, 99, 53, 1, MSG.DISCOVER, 55, 3, 1, 3, 6, 255], 236);
  return b;
}

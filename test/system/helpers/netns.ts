// Network namespaces for system tests: a fresh, uniquely named one per test file (whatever is left inside
// dies with it), the commands and topologies the network tests share, and a VM stand-in that writes frames
// into a tap and a UDP receiver that says what arrived.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';

export interface TestNetns {
  name: string;
  /** A short id unique to this run, for kernel names derived from it. */
  run: string;
  /** Runs a command inside the namespace and returns its stdout. */
  exec(cmd: string, args: string[], input?: string): string;
  remove(): void;
}

/** Why this file cannot run here, or undefined when it can (root and `ip netns` work). */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, taps, nftables)';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
  } catch (e) {
    return `ip netns or nft unusable: ${(e as Error).message}`;
  }
  return undefined;
}

export function createTestNetns(label: string): TestNetns {
  const run = `${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
  const name = `nvtest-${label}-${run}`;
  execFileSync('ip', ['netns', 'add', name]);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return {
    name,
    run,
    exec(cmd, args, input) {
      return execFileSync('ip', ['netns', 'exec', name, cmd, ...args], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
    },
    remove() {
      execFileSync('ip', ['netns', 'del', name]);
    },
  };
}

// ---- commands in named namespaces ---------------------------------------------------------------------
// Shared by the network-*, host-change and nic-* tests, which name their namespaces themselves (nvn*, nvr*...)
// so the revert agent or a child process can find them.

/** Runs a command, returns its stdout; throws with stderr on a non-zero exit. */
export const sh = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
/** `ip -n NS ...` */
export const ipn = (ns: string, ...args: string[]): string => sh('ip', '-n', ns, ...args);
/** Any command inside NS (`ip netns exec`). */
export const inNs = (ns: string, ...args: string[]): string => sh('ip', 'netns', 'exec', ns, ...args);

/** Adds a namespace with lo up; pushes its name to `made` for the caller's afterAll. */
export function addNs(name: string, made?: string[]): string {
  sh('ip', 'netns', 'add', name);
  made?.push(name);
  ipn(name, 'link', 'set', 'lo', 'up');
  return name;
}

/** Deletes namespaces, ignoring those already gone. */
export function delNs(names: Iterable<string>): void {
  for (const n of names) {
    try {
      sh('ip', 'netns', 'del', n);
    } catch {
      // already gone
    }
  }
}

/** A veth pair between two namespaces, each end optionally addressed (CIDR) and brought up. */
export function vethBetween(a: { ns: string; name: string; cidr?: string }, b: { ns: string; name: string; cidr?: string }): void {
  ipn(a.ns, 'link', 'add', a.name, 'type', 'veth', 'peer', 'name', b.name, 'netns', b.ns);
  for (const end of [a, b]) {
    if (end.cidr !== undefined) ipn(end.ns, 'addr', 'add', end.cidr, 'dev', end.name);
    ipn(end.ns, 'link', 'set', end.name, 'up');
  }
}

/** One ICMP echo at a time, up to `tries` (a new bridge port may take a moment to forward). */
export function ping(ns: string, ip: string, tries = 5): boolean {
  for (let i = 0; i < tries; i++) {
    try {
      inNs(ns, 'busybox', 'ping', '-c', '1', '-W', '1', ip);
      return true;
    } catch {
      // linkwatch may still be bringing a new bridge port to forwarding
    }
  }
  return false;
}

/** One TCP exchange from a namespace, by a child node (the test process stays where it is). */
export const tcpGet = (ns: string, host: string, port: number): string =>
  inNs(ns, process.execPath, '-e', `const s=require('net').connect(${port},'${host}');let d='';s.on('data',c=>d+=c);s.on('end',()=>{process.stdout.write(d)});s.on('error',e=>{process.stdout.write('ERR '+e.code)});setTimeout(()=>{process.stdout.write('TIMEOUT');process.exit(0)},3000).unref()`);

/** The MAC address of a link in a namespace. */
export const macOf = (ns: string, dev: string): string => (JSON.parse(ipn(ns, '-j', 'link', 'show', 'dev', dev)) as Array<{ address: string }>)[0]!.address;

// ---- a VM stand-in on a tap --------------------------------------------------------------------------

const macBytes = (s: string) => Buffer.from(s.split(':').map((h) => parseInt(h, 16)));
const ipBytes = (s: string) => Buffer.from(s.split('.').map(Number));

function ipv4Checksum(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < h.length; i += 2) sum += h.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An Ethernet frame, padded to the 60-byte minimum. */
export function ethFrame(src: string, type: number, payload: Buffer, dst = 'ff:ff:ff:ff:ff:ff'): Buffer {
  const h = Buffer.alloc(14);
  macBytes(dst).copy(h, 0);
  macBytes(src).copy(h, 6);
  h.writeUInt16BE(type, 12);
  const f = Buffer.concat([h, payload]);
  return f.length >= 60 ? f : Buffer.concat([f, Buffer.alloc(60 - f.length)]);
}

/** An IPv4/UDP frame (UDP checksum 0: none, which IPv4 allows). */
export function udpFrame(o: { srcMac: string; dstMac?: string; src: string; dst: string; sport: number; dport: number; payload?: Buffer }): Buffer {
  const payload = o.payload ?? Buffer.alloc(4);
  const u = Buffer.alloc(8);
  u.writeUInt16BE(o.sport, 0);
  u.writeUInt16BE(o.dport, 2);
  u.writeUInt16BE(8 + payload.length, 4);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 8 + payload.length, 2);
  ip[8] = 64;
  ip[9] = 17;
  ipBytes(o.src).copy(ip, 12);
  ipBytes(o.dst).copy(ip, 16);
  ip.writeUInt16BE(ipv4Checksum(ip), 10);
  return ethFrame(o.srcMac, 0x0800, Buffer.concat([ip, u, payload]), o.dstMac);
}

/** A minimal DHCPOFFER (BOOTREPLY, option 53 = 2) for `yiaddr` to `chaddr`, as a rogue server would send. */
export function dhcpOfferPayload(yiaddr: string, chaddr: string): Buffer {
  const b = Buffer.alloc(240 + 4);
  b[0] = 2; // BOOTREPLY
  b[1] = 1;
  b[2] = 6;
  b.writeUInt32BE(0x1234abcd, 4);
  ipBytes(yiaddr).copy(b, 16);
  macBytes(chaddr).copy(b, 28);
  b.writeUInt32BE(0x63825363, 236);
  Buffer.from([53, 1, 2, 255]).copy(b, 240);
  return b;
}

// Opens the persistent tap as its VM would and writes one frame per hex line. On a bridge port it first
// waits for the port to forward (state 3): until then the bridge drops frames before any hook sees them.
const WRITE_FRAMES = `
import fcntl, os, struct, sys, time
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', sys.argv[1].encode(), 0x0002 | 0x1000))
state = '/sys/class/net/%s/brport/state' % sys.argv[1]
deadline = time.time() + 10
while os.path.exists(state) and open(state).read().strip() != '3':
    if time.time() > deadline:
        sys.exit('bridge port never reached forwarding')
    time.sleep(0.01)
for line in sys.stdin.read().split():
    os.write(fd, bytes.fromhex(line))
os.close(fd)
`;

/** Writes frames into a tap from its VM side (the tap lives in `ns`), in order. */
export function writeTapFrames(ns: string, tap: string, frames: readonly Buffer[]): void {
  execFileSync('ip', ['netns', 'exec', ns, 'python3', '-c', WRITE_FRAMES, tap], { input: frames.map((f) => f.toString('hex')).join('\n'), stdio: ['pipe', 'pipe', 'pipe'] });
}

const RECEIVE_UDP = `
import select, socket, sys
socks = []
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind(('', int(p)))
    socks.append(s)
print('ready', flush=True)
while True:
    r, _, _ = select.select(socks, [], [], 15)
    if not r:
        print('timeout', flush=True)
        break
    for s in r:
        d, a = s.recvfrom(4096)
        print(s.getsockname()[1], a[0], d.hex(), flush=True)
`;

/** UDP datagrams received in a namespace on some ports: {port, from, payload}. */
export interface UdpReceiver {
  ready: Promise<void>;
  got: Array<{ port: number; from: string; payload: Buffer }>;
  /** Resolves once a datagram with this payload arrived (or rejects after 15 s of silence). */
  until(payload: Buffer): Promise<void>;
  stop(): void;
}

export function receiveUdp(ns: string, ports: readonly number[]): UdpReceiver {
  const child = spawn('ip', ['netns', 'exec', ns, 'python3', '-u', '-c', RECEIVE_UDP, ...ports.map(String)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const got: UdpReceiver['got'] = [];
  const waiters: Array<() => void> = [];
  let readyResolve!: () => void;
  let failed: Error | undefined;
  const ready = new Promise<void>((r) => (readyResolve = r));
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line === 'ready') return readyResolve();
    if (line === 'timeout') failed = new Error(`receiveUdp in ${ns}: nothing for 15 s`);
    else {
      const [port, from, hex] = line.split(' ');
      got.push({ port: Number(port), from: from!, payload: Buffer.from(hex!, 'hex') });
    }
    for (const w of waiters.splice(0)) w();
  });
  return {
    ready,
    got,
    until(payload) {
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (got.some((g) => g.payload.equals(payload))) resolve();
          else if (failed) reject(failed);
          else waiters.push(check);
        };
        check();
      });
    },
    stop() {
      child.kill('SIGKILL');
    },
  };
}

// DHCP core benchmark: 1e6 mutated/hostile datagrams through handleDatagram (p50/p99/max per packet),
// frames through handleFrame, heap per idle server, and relay-transport latency at 500 req/s plus
// a saturation run over loopback UDP. Prints numbers; asserts nothing. Run: npm run bench:dhcp
import { createSocket } from 'node:dgram';
import { parseMac } from '../../daemon/net/dhcp/addr.js';
import { buildFrame } from '../../daemon/net/dhcp/frame.js';
import { handleFrame } from '../../daemon/net/dhcp/packet-transport.js';
import { createDhcpServerRegistry } from '../../daemon/net/dhcp/registry.js';
import { createRelayTransport } from '../../daemon/net/dhcp/relay-transport.js';
import { createDhcpServer, type DhcpServerConfig } from '../../daemon/net/dhcp/server.js';

const CASES = Number(process.env.DHCP_BENCH_CASES ?? 1_000_000);

// xorshift32: deterministic, allocation-free randomness so the timed loop measures the handler only.
let seed = 0x9e3779b9;
function rnd(n: number): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
}

const MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
function message(opts: number[], patch: (b: Uint8Array) => void = () => {}): Uint8Array {
  const b = new Uint8Array(Math.max(300, 240 + opts.length));
  b.set([1, 1, 6, 0, 0x12, 0x34, 0x56, 0x78], 0);
  b.set(MAC, 28);
  b.set([99, 130, 83, 99], 236);
  b.set(opts, 240);
  patch(b);
  return b;
}
const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));
const seeds: Uint8Array[] = [
  // busybox udhcpc-shaped DISCOVER
  message([53, 1, 1, 61, 7, 1, ...MAC, 57, 2, 2, 64, 60, 12, ...ascii('udhcp 1.36.1'), 55, 7, 1, 3, 6, 12, 15, 28, 42, 255]),
  // dhclient-shaped DISCOVER
  message([53, 1, 1, 50, 4, 192, 168, 100, 10, 12, 4, ...ascii('web1'), 55, 13, 1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42, 255]),
  // REQUEST (SELECTING), REQUEST (RENEWING), INFORM, DECLINE, RELEASE
  message([53, 1, 3, 54, 4, 192, 168, 100, 1, 50, 4, 192, 168, 100, 10, 55, 4, 1, 3, 6, 121, 255]),
  message([53, 1, 3, 255], (b) => b.set([192, 168, 100, 10], 12)),
  message([53, 1, 8, 55, 3, 1, 6, 15, 255], (b) => b.set([192, 168, 100, 10], 12)),
  message([53, 1, 4, 50, 4, 192, 168, 100, 10, 54, 4, 192, 168, 100, 1, 255]),
  message([53, 1, 7, 54, 4, 192, 168, 100, 1, 255], (b) => b.set([192, 168, 100, 10], 12)),
  // overload with a nested 52, and a PAD flood
  message([52, 1, 3, 53, 1, 1, 255], (b) => b.set([52, 1, 3, 12, 2, 104, 105, 255], 108)),
  message([...new Array<number>(1200).fill(0), 53, 1, 1, 255]),
];
const big = message([53, 1, 1, ...new Array<number>(70_000 - 243).fill(0)]);
const jumbo = message([53, 1, 1, 55, 2, 1, 3, ...new Array<number>(2000).fill(0)]);
const work = new Uint8Array(4096);

/** Fills `work` with a mutated seed and returns the view to feed in (allocation-free in steady state). */
function nextCase(): Uint8Array {
  const kind = rnd(100);
  if (kind === 0) return big;
  if (kind === 1) return jumbo;
  const s = seeds[rnd(seeds.length)]!;
  work.set(s);
  let len = s.length;
  if (kind < 45) return work.subarray(0, len); // unmodified: the common, answering path
  if (kind < 70) {
    for (let i = rnd(8) + 1; i > 0; i--) work[rnd(len)] = rnd(256);
  } else if (kind < 80) {
    len = rnd(len);
  } else if (kind < 90) {
    // Append garbage TLVs (lying lengths included) after the options, before the END byte sits.
    let o = 240 + rnd(20);
    for (let i = rnd(6) + 1; i > 0 && o + 2 < work.length; i--) {
      work[o++] = rnd(256);
      work[o++] = rnd(256);
      const n = rnd(12);
      for (let k = 0; k < n && o < work.length; k++) work[o++] = rnd(256);
    }
    len = Math.max(len, o);
  } else {
    work[rnd(4)] = rnd(256); // op/htype/hlen/hops
  }
  return work.subarray(0, len);
}

function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

function report(name: string, ns: Float64Array, extra = '', rate = true): void {
  const s = ns.slice().sort();
  const us = (v: number) => (v / 1000).toFixed(2);
  let total = 0;
  for (const v of ns) total += v;
  console.log(
    `${name}: n=${ns.length} p50=${us(pct(s, 0.5))}us p99=${us(pct(s, 0.99))}us p99.9=${us(pct(s, 0.999))}us max=${us(s[s.length - 1]!)}us ` +
      `mean=${us(total / ns.length)}us${rate ? ` (${Math.round(ns.length / (total / 1e9))} pkt/s of handler time)` : ''}${extra}`,
  );
}

const baseConfig: DhcpServerConfig = {
  mac: '52:54:00:12:34:56',
  ip: '192.168.100.10',
  prefixLength: 24,
  serverIp: '192.168.100.1',
  router: '192.168.100.1',
  dns: ['192.168.100.1'],
  domainName: 'vm.example',
  search: ['vm.example', 'example.org'],
  hostname: 'web1',
  mtu: 1500,
  routes: [{ destination: '10.0.0.0/8', gateway: '192.168.100.254' }],
};

function benchDatagrams(): void {
  let events = 0;
  const server = createDhcpServer({ ...baseConfig, rateLimit: { ratePerSec: 1e12, burst: 1e12 }, onEvent: () => events++ });
  const ns = new Float64Array(CASES);
  let replies = 0;
  for (let i = 0; i < 20_000; i++) server.handleDatagram(nextCase()); // warm-up (JIT)
  for (let i = 0; i < CASES; i++) {
    const input = nextCase();
    const t0 = process.hrtime.bigint();
    const r = server.handleDatagram(input);
    ns[i] = Number(process.hrtime.bigint() - t0);
    if (r !== null) replies++;
  }
  const st = server.stats();
  report('handleDatagram (hostile mix)', ns, ` replies=${replies} malformed=${st.malformed} ignored=${st.ignored} errors=${st.errors}`);
}

function benchFrames(): void {
  const server = createDhcpServer({ ...baseConfig, rateLimit: { ratePerSec: 1e12, burst: 1e12 } });
  const host = parseMac('fe:54:00:00:00:01')!;
  const guest = parseMac(baseConfig.mac)!;
  const n = Math.max(1, Math.floor(CASES / 5));
  const frames = Array.from({ length: 256 }, () =>
    buildFrame({ srcMac: guest, dstMac: 0xffffffffffff, srcIp: 0, dstIp: 0xffffffff, srcPort: 68, dstPort: 67, payload: nextCase().slice() }),
  );
  const ns = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const f = frames[i & 255]!;
    const t0 = process.hrtime.bigint();
    handleFrame(server, f, host, 0);
    ns[i] = Number(process.hrtime.bigint() - t0);
  }
  report('handleFrame (parse+decode+handle+build)', ns, ` errors=${server.stats().errors}`);
}

function macOf(i: number): string {
  return `52:54:01:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
}

function benchMemory(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) {
    console.log('memory: skipped (run node with --expose-gc)');
    return;
  }
  const N = 1000;
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const registry = createDhcpServerRegistry();
  for (let i = 0; i < N; i++) {
    registry.add(createDhcpServer({ ...baseConfig, mac: macOf(i), ip: `10.${(i >> 8) & 255}.${i & 255}.2`, onEvent: () => {} }));
  }
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  console.log(`memory: ${N} idle servers (with search list, routes, registry) = ${((after - before) / N / 1024).toFixed(2)} KiB heapUsed each (registry size ${registry.size})`);
}

async function benchRelay(): Promise<void> {
  const N = 1000;
  const registry = createDhcpServerRegistry();
  for (let i = 0; i < N; i++) registry.add(createDhcpServer({ ...baseConfig, mac: macOf(i), ip: `10.${1 + (i >> 8)}.${i & 255}.2` }));
  const client = createSocket('udp4');
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
  const transport = createRelayTransport({ registry, address: '127.0.0.1', port: 0, relayPort: client.address().port });
  const { port } = await transport.start();

  const packets = Array.from({ length: N }, (_, i) => {
    const b = message([53, 1, 1, 55, 4, 1, 3, 6, 15, 255], (m) => {
      m.set([127, 0, 0, 1], 24); // giaddr: we are the relay
      m.set([0x52, 0x54, 0x01, (i >> 16) & 255, (i >> 8) & 255, i & 255], 28);
    });
    return b;
  });
  const sentAt = new Float64Array(1 << 20);
  const rtt: number[] = [];
  let xid = 0;
  client.on('message', (b) => {
    const x = b.readUInt32BE(4);
    rtt.push(Number(process.hrtime.bigint()) - sentAt[x]!);
  });
  const send = () => {
    const p = packets[xid % N]!;
    new DataView(p.buffer, p.byteOffset).setUint32(4, xid);
    sentAt[xid] = Number(process.hrtime.bigint());
    xid++;
    client.send(p, port, '127.0.0.1');
  };

  // Paced: 500 requests per second for 5 s, one every 2 ms.
  const paced = 2500;
  await new Promise<void>((resolve) => {
    const start = Date.now();
    let sent = 0;
    const tick = () => {
      const due = Math.min(paced, Math.floor((Date.now() - start) / 2) + 1);
      while (sent < due) {
        send();
        sent++;
      }
      if (sent < paced) setTimeout(tick, 1);
      else setTimeout(resolve, 200);
    };
    tick();
  });
  const pacedRtt = Float64Array.from(rtt);
  report('relay round trip at 500 req/s (loopback UDP, 1000 servers)', pacedRtt, ` answered=${rtt.length}/${paced}`, false);

  // Saturation: keep 64 requests in flight for 20000 requests; replies per second.
  rtt.length = 0;
  const total = 20_000;
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    let sent = 0;
    const done = () => {
      clearTimeout(timer);
      client.off('message', onReply);
      resolve();
    };
    const onReply = () => {
      if (sent < total) {
        send();
        sent++;
      } else if (rtt.length >= total) done();
    };
    // Losses on loopback are possible under load; do not wait forever for them.
    const timer = setTimeout(done, 30_000);
    client.on('message', onReply);
    for (; sent < 64; sent++) send();
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`relay saturation: ${rtt.length} replies in ${secs.toFixed(2)} s = ${Math.round(rtt.length / secs)} replies/s (64 in flight); transport ${JSON.stringify(transport.stats())}`);
  await transport.stop();
  client.close();
}

console.log(`node ${process.version}, ${CASES} cases`);
benchDatagrams();
benchFrames();
benchMemory();
await benchRelay();

// Bench helper: acts as a relay agent (bound to <relay-ip>:67, giaddr = relay-ip) and sends DISCOVERs for
// the listed MACs at a fixed rate, timing each OFFER by xid: perfdhcp only reports mean/std, not percentiles.
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';

const [macFile, relayIp, serverIp, rateArg, secondsArg] = process.argv.slice(2);
if (!macFile || !relayIp || !serverIp) throw new Error('usage: dhcp-latency-probe <mac-file> <relay-ip> <server-ip> [rate] [seconds]');
const rate = Number(rateArg ?? 500);
const total = Math.round(rate * Number(secondsArg ?? 4));
const macs = readFileSync(macFile, 'utf8').trim().split('\n').map((m) => m.split(':').map((h) => parseInt(h, 16)));
const relay = relayIp.split('.').map(Number);

function discover(xid: number, mac: number[]): Buffer {
  const b = Buffer.alloc(300);
  b.set([1, 1, 6, 1]);
  b.writeUInt32BE(xid, 4);
  b.set(relay, 24);
  b.set(mac, 28);
  b.set([99, 130, 83, 99, 53, 1, 1, 55, 4, 1, 3, 6, 51, 255], 236);
  return b;
}

const sock = createSocket('udp4');
await new Promise<void>((r) => sock.bind(67, relayIp, r));
const sentAt = new Map<number, bigint>();
const rtt: number[] = [];
sock.on('message', (m) => {
  if (m.length < 240 || m[0] !== 2) return;
  const t = sentAt.get(m.readUInt32BE(4));
  if (t === undefined) return;
  sentAt.delete(m.readUInt32BE(4));
  rtt.push(Number(process.hrtime.bigint() - t) / 1000);
});
const start = process.hrtime.bigint();
let sent = 0;
await new Promise<void>((resolve) => {
  const tick = () => {
    const due = Math.min(total, Math.floor((Number(process.hrtime.bigint() - start) / 1e9) * rate) + 1);
    for (; sent < due; sent++) {
      const xid = 0x10000000 + sent;
      sentAt.set(xid, process.hrtime.bigint());
      sock.send(discover(xid, macs[sent % macs.length]!), 67, serverIp);
    }
    if (sent < total) setTimeout(tick, 1);
    else setTimeout(resolve, 500);
  };
  tick();
});
sock.close();
rtt.sort((a, b) => a - b);
const pct = (p: number) => (rtt.length === 0 ? NaN : rtt[Math.min(rtt.length - 1, Math.floor((p / 100) * rtt.length))]!);
console.log(JSON.stringify({ rate, sent: total, answered: rtt.length, p50us: Math.round(pct(50)), p99us: Math.round(pct(99)), maxus: Math.round(rtt[rtt.length - 1] ?? NaN) }));

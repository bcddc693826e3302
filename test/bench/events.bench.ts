// Event log and SSE benchmark: publish() cost with many live subscribers (one of them stalled), and SSE
// fan-out over real loopback sockets to 100 clients. Prints numbers; asserts nothing.
// Run: tsc (like bench:dhcp) then node dist/bench/test/bench/events.bench.js
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp, requestListener } from '../../daemon/api/app.js';
import { loadApiSpec } from '../../daemon/api/openapi.js';
import { silentLogger } from '../../daemon/lib/logger.js';
import { createEventLog } from '../../daemon/ops/event-log.js';

const ns = () => process.hrtime.bigint();
const ms = (a: bigint, b: bigint) => Number(b - a) / 1e6;

function publishCost(): void {
  for (const subs of [0, 10, 100, 1000]) {
    const log = createEventLog({ capacity: 1000 });
    const live = Array.from({ length: subs }, () => log.subscribe({ maxQueued: 1_000_000 }));
    const stalled = log.subscribe({ maxQueued: 256 });
    const n = 100_000;
    const t0 = ns();
    for (let i = 0; i < n; i++) log.publish({ type: 'dhcp.ack', subject: 'interfaces/nvtap1', data: { i } });
    const t1 = ns();
    console.log(`publish: ${subs} live subscribers + 1 stalled: ${((ms(t0, t1) * 1e3) / n).toFixed(2)} us/event, stalled dropped=${stalled.dropped}, heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB`);
    for (const s of live) s.close();
  }
}

async function sseFanout(clients: number, events: number): Promise<void> {
  const log = createEventLog({ capacity: 1000 });
  const app = createApp({
    logger: silentLogger(),
    spec: await loadApiSpec(),
    node: { info: async () => Promise.reject(new Error('unused')) },
    tokens: { verify: async () => undefined } as never,
    leases: { list: async () => [] },
    events: log,
    version: 'bench',
  });
  const server: Server = createServer(requestListener(app, 'unix'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const done: Array<Promise<number>> = [];
  for (let c = 0; c < clients; c++) {
    done.push(
      new Promise((resolve) => {
        const req = request({ host: '127.0.0.1', port, path: '/v1/events?types=vm.', agent: false }, (res) => {
          let seen = 0;
          let tail = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            const text = tail + chunk;
            const parts = text.split('\n\n');
            tail = parts.pop()!;
            for (const p of parts) if (p.startsWith('id: ')) seen++;
            if (seen >= events) {
              req.destroy();
              resolve(seen);
            }
          });
        });
        req.end();
      }),
    );
  }
  while (log.subscriberCount() < clients) await new Promise((r) => setTimeout(r, 5));
  const t0 = ns();
  for (let i = 0; i < events; i++) {
    log.publish({ type: 'vm.started', subject: `vms/v${i}`, data: { i } });
    // Let the sockets drain now and then, as a real publisher (packets, libvirt events) would.
    if (i % 200 === 199) await new Promise((r) => setImmediate(r));
  }
  await Promise.all(done);
  const t1 = ns();
  const total = clients * events;
  console.log(`sse: ${clients} clients x ${events} events = ${total} frames in ${ms(t0, t1).toFixed(0)} ms (${((total / ms(t0, t1)) * 1000).toFixed(0)} frames/s); subscribers left ${log.subscriberCount()}`);
  await new Promise((r) => setTimeout(r, 100));
  console.log(`sse: after the clients left, subscribers ${log.subscriberCount()}`);
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
}

publishCost();
await sseFanout(100, 2000);

// Relay transport over a real UDP socket on 127.0.0.1: the test plays the relay agent (giaddr) and
// must get the reply at its own port; unrelayed and unknown-client packets get none.
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeDhcp, messageTypeOf } from '../../../../daemon/net/dhcp/codec.js';
import { MSG, OPT } from '../../../../daemon/net/dhcp/options.js';
import { createDhcpServerRegistry } from '../../../../daemon/net/dhcp/registry.js';
import { createRelayTransport, type RelayTransport } from '../../../../daemon/net/dhcp/relay-transport.js';
import { IP, OTHER_MAC_BYTES, opt, raw, testServer } from './helpers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function relaySocket(): Promise<{ sock: Socket; port: number; next: () => Promise<Buffer> }> {
  const sock = createSocket('udp4');
  const queue: Buffer[] = [];
  const waiters: Array<(b: Buffer) => void> = [];
  sock.on('message', (b) => {
    const w = waiters.shift();
    if (w) w(b);
    else queue.push(b);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => sock.close(() => resolve())));
  return {
    sock,
    port: sock.address().port,
    next: () => (queue.length > 0 ? Promise.resolve(queue.shift()!) : new Promise((resolve) => waiters.push(resolve))),
  };
}

async function setup() {
  const relay = await relaySocket();
  const registry = createDhcpServerRegistry();
  const t = testServer();
  registry.add(t.server);
  const transport: RelayTransport = createRelayTransport({ registry, address: '127.0.0.1', port: 0, relayPort: relay.port });
  const { port } = await transport.start();
  cleanups.push(() => transport.stop());
  const send = (b: Uint8Array) => new Promise<void>((resolve, reject) => relay.sock.send(b, port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
  return { relay, transport, send, events: t.events };
}

const LOCALHOST = [127, 0, 0, 1];

describe('relay transport', () => {
  it('answers a relayed DISCOVER and REQUEST at giaddr on the relay port', async () => {
    const { relay, send, events } = await setup();
    await send(raw({ xid: 1, hops: 1, giaddr: LOCALHOST, options: [...opt(53, MSG.DISCOVER), 255] }));
    const offer = decodeDhcp(await relay.next());
    expect(offer.ok && messageTypeOf(offer.message)).toBe(MSG.OFFER);
    if (!offer.ok) return;
    expect(offer.message.xid).toBe(1);
    expect(offer.message.giaddr).toBe(0x7f000001);
    const sid = [...offer.message.options.get(OPT.SERVER_ID)!];
    await send(raw({ xid: 2, giaddr: LOCALHOST, options: [...opt(53, MSG.REQUEST), ...opt(54, ...sid), ...opt(50, 192, 168, 100, 10), 255] }));
    const ack = decodeDhcp(await relay.next());
    expect(ack.ok && [messageTypeOf(ack.message), ack.message.xid]).toEqual([MSG.ACK, 2]);
    expect(events.map((e) => [e.type, e.ip])).toEqual([
      ['offer', IP],
      ['ack', IP],
    ]);
  });

  it('ignores unrelayed packets, unknown clients and garbage, and keeps serving', async () => {
    const { relay, send, transport } = await setup();
    await send(raw({ xid: 10, options: [...opt(53, MSG.DISCOVER), 255] }));
    await send(raw({ xid: 11, giaddr: LOCALHOST, chaddr: OTHER_MAC_BYTES, options: [...opt(53, MSG.DISCOVER), 255] }));
    await send(Uint8Array.of(1, 2, 3));
    await send(raw({ xid: 12, giaddr: LOCALHOST, options: [...opt(53, MSG.DISCOVER), 255] }));
    // Datagrams on loopback arrive in order, so the first reply tells us the earlier ones got none.
    const first = decodeDhcp(await relay.next());
    expect(first.ok && first.message.xid).toBe(12);
    expect(transport.stats()).toMatchObject({ received: 4, unrelayed: 1, unknownClient: 1, malformed: 1, sent: 1 });
  });

  it('start fails cleanly when the port is taken', async () => {
    const { relay } = await setup();
    const other = createRelayTransport({ registry: createDhcpServerRegistry(), address: '127.0.0.1', port: relay.port });
    // The relay socket holds the port without SO_REUSEADDR, so binding it again must fail.
    await expect(other.start()).rejects.toThrow(/EADDRINUSE/);
    await other.stop();
  });
});

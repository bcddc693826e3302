// The VNC proxy against a unix socket server made here (standing in for QEMU's VNC socket): one upstream
// connection per client, bytes both ways, reading paused while the client is behind, clean ends.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../../../daemon/lib/errors.js';
import { CLOSE, type WsPeer } from '../../../daemon/vm/console.js';
import { createVncProxy, type VncProxy } from '../../../daemon/vm/vnc.js';

class FakePeer implements WsPeer {
  received: Buffer[] = [];
  bufferedAmount = 0;
  paused = false;
  closed: { code: number; reason: string } | undefined;
  send(data: Buffer) {
    this.received.push(Buffer.from(data));
  }
  close(code: number, reason: string) {
    this.closed = { code, reason };
  }
  pause() {
    this.paused = true;
  }
  resume() {
    this.paused = false;
  }
  bytes() {
    return Buffer.concat(this.received);
  }
}

const until = async (cond: () => boolean, what: string, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

let dir: string;
let server: Server;
let conns: Array<{ socket: Socket; input: Buffer[] }>;
let running: boolean;
let proxy: VncProxy;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nv-vnc-'));
  conns = [];
  running = true;
  server = createServer((socket) => {
    const c = { socket, input: [] as Buffer[] };
    conns.push(c);
    socket.on('data', (d: Buffer) => c.input.push(d));
    socket.on('error', () => undefined);
    // What QEMU sends first: the RFB version greeting.
    socket.write('RFB 003.008\n');
  });
  await new Promise<void>((r) => server.listen(join(dir, 'vnc.sock'), r));
  proxy = createVncProxy({
    vms: { domainOf: async (vm) => (vm === 'vm1' ? 'nodevirt-vm1' : Promise.reject(new AppError('VM_NOT_FOUND', `no VM ${vm}`))) },
    libvirt: {
      lookupDomain: async (name) => ({ name, uuid: 'u', state: running ? 'running' : 'shutoff', reason: 0, persistent: true, active: running }),
      getDomainXml: async () => `<domain id='3'><devices><graphics type='vnc' socket='${join(dir, 'vnc.sock')}'/></devices></domain>`,
    },
    highWaterBytes: 64 * 1024,
    settleMs: 50,
    drainPollMs: 5,
  });
});

afterEach(async () => {
  await proxy.stop();
  for (const c of conns) c.socket.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

describe('VNC proxy', () => {
  it('refuses unknown and stopped VMs before connecting', async () => {
    await expect(proxy.open('nope')).rejects.toMatchObject({ code: 'VM_NOT_FOUND' });
    running = false;
    await expect(proxy.open('vm1')).rejects.toMatchObject({ code: 'VM_NOT_RUNNING' });
    expect(conns).toHaveLength(0);
  });

  it('gives each client its own upstream connection and carries bytes both ways', async () => {
    const a = new FakePeer();
    const b = new FakePeer();
    const ia = (await proxy.open('vm1')).attach(a);
    (await proxy.open('vm1')).attach(b);
    await until(() => a.bytes().toString() === 'RFB 003.008\n' && b.bytes().toString() === 'RFB 003.008\n', 'both greetings');
    expect(conns).toHaveLength(2);
    expect(proxy.connections()).toBe(2);
    ia.input(Buffer.from('RFB 003.008\n'));
    await until(() => Buffer.concat(conns[0]!.input).toString() === 'RFB 003.008\n', 'the client version upstream');
    expect(conns[1]!.input).toHaveLength(0);
  });

  it('stops reading QEMU while the client is behind and resumes once it caught up', async () => {
    const p = new FakePeer();
    (await proxy.open('vm1')).attach(p);
    await until(() => p.received.length === 1, 'the greeting');
    p.bufferedAmount = 100 * 1024;
    conns[0]!.socket.write(Buffer.alloc(1000, 1));
    await until(() => p.bytes().length === 12 + 1000, 'the first frame');
    // More from QEMU is not read while the client is behind.
    conns[0]!.socket.write(Buffer.alloc(2000, 2));
    await new Promise((r) => setTimeout(r, 100));
    expect(p.bytes().length).toBe(1012);
    p.bufferedAmount = 0;
    await until(() => p.bytes().length === 3012, 'the rest after the client caught up');
  });

  it('closes the client with 4001 when the VM stops, and the upstream when the client leaves', async () => {
    const p = new FakePeer();
    (await proxy.open('vm1')).attach(p);
    await until(() => conns.length === 1, 'the connection');
    running = false;
    conns[0]!.socket.destroy();
    await until(() => p.closed !== undefined, 'the client to be closed');
    expect(p.closed?.code).toBe(CLOSE.VM_STOPPED);
    running = true;
    const q = (await proxy.open('vm1')).attach(new FakePeer());
    await until(() => conns.length === 2, 'a second connection');
    const closed = new Promise((r) => conns[1]!.socket.once('close', r));
    q.detach();
    await closed;
    expect(proxy.connections()).toBe(0);
  });

  it('a cancelled ticket (failed upgrade) closes its upstream connection', async () => {
    const t = await proxy.open('vm1');
    await until(() => conns.length === 1, 'the connection');
    const closed = new Promise((r) => conns[0]!.socket.once('close', r));
    t.cancel();
    await closed;
  });
});

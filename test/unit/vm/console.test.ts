// The serial console multiplexer against a unix socket server made here (standing in for QEMU's serial
// socket): fan-out, one writer, the ring buffer, slow clients dropped, upstream opened and closed.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../../../daemon/lib/errors.js';
import { ByteRing, CLOSE, createConsoleService, guestSockets, type ConsoleService, type WsPeer } from '../../../daemon/vm/console.js';

class FakePeer implements WsPeer {
  received: Buffer[] = [];
  bufferedAmount = 0;
  closed: { code: number; reason: string } | undefined;
  send(data: Buffer) {
    this.received.push(Buffer.from(data));
  }
  close(code: number, reason: string) {
    this.closed = { code, reason };
  }
  text() {
    return Buffer.concat(this.received).toString('latin1');
  }
}

/** A serial socket like QEMU's: tracks its clients and what they wrote. */
interface Serial {
  path: string;
  server: Server;
  clients: Socket[];
  accepted: number;
  input: string;
  write(s: string): void;
}

async function serialServer(path: string): Promise<Serial> {
  const srv: Serial = {
    path,
    server: createServer(),
    clients: [],
    accepted: 0,
    input: '',
    write(s) {
      for (const c of this.clients) c.write(s);
    },
  };
  srv.server.on('connection', (c) => {
    srv.accepted++;
    srv.clients.push(c);
    c.on('data', (d: Buffer) => (srv.input += d.toString('latin1')));
    c.on('close', () => srv.clients.splice(srv.clients.indexOf(c), 1));
    c.on('error', () => undefined);
  });
  await new Promise<void>((r) => srv.server.listen(path, r));
  return srv;
}

const until = async (cond: () => boolean, what: string, ms = 2000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

const domainXml = (serialPath: string, id = '7') =>
  `<domain type='qemu' id='${id}'><name>nodevirt-vm1</name><devices>` +
  `<serial type='unix'><source mode='bind' path='${serialPath}'/><target port='0'/></serial>` +
  `<graphics type='vnc' socket='/var/lib/libvirt/qemu/domain-${id}-x/vnc.sock'><listen type='socket' socket='/var/lib/libvirt/qemu/domain-${id}-x/vnc.sock'/></graphics>` +
  `</devices></domain>`;

let dir: string;
let serial: Serial;
let running: boolean;
let bootId: string;
let svc: ConsoleService;

function makeService(opts: { ringBytes?: number; maxBufferedBytes?: number; settleMs?: number } = {}) {
  return createConsoleService({
    vms: {
      async domainOf(vm) {
        if (vm !== 'vm1') throw new AppError('VM_NOT_FOUND', `no VM ${vm}`);
        return 'nodevirt-vm1';
      },
    },
    libvirt: {
      lookupDomain: async (name) => (name === 'nodevirt-vm1' ? { name, uuid: 'u', state: running ? 'running' : 'shutoff', reason: 0, persistent: true, active: running } : undefined),
      getDomainXml: async () => domainXml(serial.path, bootId),
    },
    settleMs: 50,
    ...opts,
  });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nv-console-'));
  serial = await serialServer(join(dir, 'vm1.serial'));
  running = true;
  bootId = '7';
  svc = makeService();
});

afterEach(async () => {
  await svc.stop();
  await new Promise<void>((r) => serial.server.close(() => r()));
  for (const c of serial.clients) c.destroy();
  await rm(dir, { recursive: true, force: true });
});

describe('console multiplexer', () => {
  it('reads the serial and VNC socket paths and the boot id from the live domain XML', () => {
    expect(guestSockets(domainXml('/run/nodevirt/nodevirt-vm1.serial', '12'))).toEqual({
      bootId: '12',
      serialPath: '/run/nodevirt/nodevirt-vm1.serial',
      vncPath: '/var/lib/libvirt/qemu/domain-12-x/vnc.sock',
    });
  });

  it('answers 404 for an unknown VM and VM_NOT_RUNNING for a stopped one, before connecting anything', async () => {
    await expect(svc.open('nope', { write: false })).rejects.toMatchObject({ code: 'VM_NOT_FOUND' });
    running = false;
    await expect(svc.open('vm1', { write: false })).rejects.toMatchObject({ code: 'VM_NOT_RUNNING' });
    expect(serial.accepted).toBe(0);
  });

  it('fans the output out to every reader over a single upstream connection', async () => {
    const peers = [new FakePeer(), new FakePeer(), new FakePeer()];
    for (const p of peers) (await svc.open('vm1', { write: false })).attach(p);
    await until(() => serial.clients.length === 1, 'the upstream connection');
    serial.write('login: ');
    await until(() => peers.every((p) => p.text() === 'login: '), 'every reader to see the output');
    expect(serial.accepted).toBe(1);
    expect(svc.stats()).toEqual([expect.objectContaining({ vm: 'vm1', upstream: true, clients: 3, writer: false })]);
  });

  it('has one writer at a time: a second rw client is refused with CONSOLE_BUSY until the first leaves; readers input is ignored', async () => {
    const w = new FakePeer();
    const writer = (await svc.open('vm1', { write: true })).attach(w);
    const e = await svc.open('vm1', { write: true }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AppError);
    expect((e as AppError).code).toBe('CONSOLE_BUSY');
    const reader = (await svc.open('vm1', { write: false })).attach(new FakePeer());
    reader.input(Buffer.from('from-reader\n'));
    writer.input(Buffer.from('from-writer\n'));
    await until(() => serial.input.includes('from-writer'), 'the writer input upstream');
    expect(serial.input).toBe('from-writer\n');
    writer.detach();
    const w2 = (await svc.open('vm1', { write: true })).attach(new FakePeer());
    w2.input(Buffer.from('second\n'));
    await until(() => serial.input.includes('second'), 'the second writer input');
  });

  it('releases a writer reservation whose upgrade never completed', async () => {
    const t = await svc.open('vm1', { write: true });
    t.cancel();
    const t2 = await svc.open('vm1', { write: true });
    expect(t2.write).toBe(true);
    t2.cancel();
  });

  it('replays the last ring-buffer bytes to a new reader, keeping only the newest', async () => {
    svc = makeService({ ringBytes: 32 });
    const first = (await svc.open('vm1', { write: false })).attach(new FakePeer());
    await until(() => serial.clients.length === 1, 'the upstream connection');
    serial.write('0123456789'.repeat(5));
    serial.write('\r\nbusybox login: ');
    await until(() => svc.stats()[0]!.ringBytes === 32, 'the ring to fill');
    const late = new FakePeer();
    (await svc.open('vm1', { write: false })).attach(late);
    const expected = ('0123456789'.repeat(5) + '\r\nbusybox login: ').slice(-32);
    expect(late.text()).toBe(expected);
    serial.write('x');
    await until(() => late.text() === expected + 'x', 'live output after the replay');
    first.detach();
  });

  it('keeps the ring after the last client leaves (upstream closed, QEMU slot free) but not across a new boot', async () => {
    const a = (await svc.open('vm1', { write: false })).attach(new FakePeer());
    await until(() => serial.clients.length === 1, 'the upstream connection');
    serial.write('prompt# ');
    await until(() => svc.stats()[0]?.ringBytes === 8, 'the output');
    a.detach();
    await until(() => serial.clients.length === 0, 'the upstream to close');
    const again = new FakePeer();
    (await svc.open('vm1', { write: false })).attach(again);
    expect(again.text()).toBe('prompt# ');
    expect(serial.accepted).toBe(2);
    bootId = '8';
    const newBoot = new FakePeer();
    (await svc.open('vm1', { write: false })).attach(newBoot);
    expect(newBoot.text()).toBe('');
    expect(again.closed?.code).toBe(CLOSE.VM_STOPPED);
  });

  it('drops a client that falls too far behind, and only that one', async () => {
    svc = makeService({ maxBufferedBytes: 1000 });
    const slow = new FakePeer();
    const fast = new FakePeer();
    (await svc.open('vm1', { write: false })).attach(slow);
    (await svc.open('vm1', { write: false })).attach(fast);
    await until(() => serial.clients.length === 1, 'the upstream connection');
    slow.bufferedAmount = 5000;
    serial.write('a');
    await until(() => slow.closed !== undefined, 'the slow client to be dropped');
    expect(slow.closed?.code).toBe(CLOSE.TOO_SLOW);
    serial.write('b');
    await until(() => fast.text() === 'ab', 'the fast client to keep reading');
    expect(slow.text()).toBe('');
    expect(fast.closed).toBeUndefined();
    expect(svc.stats()[0]!.clients).toBe(1);
  });

  it('ends every client with 4001 when QEMU closes the socket because the VM stopped', async () => {
    const p1 = new FakePeer();
    const p2 = new FakePeer();
    (await svc.open('vm1', { write: true })).attach(p1);
    (await svc.open('vm1', { write: false })).attach(p2);
    await until(() => serial.clients.length === 1, 'the upstream connection');
    running = false;
    for (const c of serial.clients) c.destroy();
    await until(() => p1.closed !== undefined && p2.closed !== undefined, 'both clients to be closed');
    expect(p1.closed).toEqual({ code: CLOSE.VM_STOPPED, reason: 'the VM stopped' });
    expect(p2.closed?.code).toBe(CLOSE.VM_STOPPED);
    expect(svc.stats()).toEqual([]);
  });

  it('still says 4001 when libvirt reports the domain off only a moment after QEMU closed the socket', async () => {
    svc = makeService({ settleMs: 2000 });
    const p = new FakePeer();
    (await svc.open('vm1', { write: false })).attach(p);
    await until(() => serial.clients.length === 1, 'the upstream connection');
    for (const c of serial.clients) c.destroy();
    await new Promise((r) => setTimeout(r, 150));
    expect(p.closed).toBeUndefined();
    running = false;
    await until(() => p.closed !== undefined, 'the client to be closed');
    expect(p.closed?.code).toBe(CLOSE.VM_STOPPED);
  });

  it('says 1011 when the connection breaks while the VM still runs, and a new client reconnects', async () => {
    const p = new FakePeer();
    (await svc.open('vm1', { write: false })).attach(p);
    await until(() => serial.clients.length === 1, 'the upstream connection');
    for (const c of serial.clients) c.destroy();
    await until(() => p.closed !== undefined, 'the client to be closed');
    expect(p.closed?.code).toBe(CLOSE.UPSTREAM_LOST);
    (await svc.open('vm1', { write: false })).attach(new FakePeer());
    await until(() => serial.clients.length === 1, 'a new upstream connection');
    expect(serial.accepted).toBe(2);
  });

  it('maps a vanished serial socket to VM_NOT_RUNNING and closes everything on stop', async () => {
    const p = new FakePeer();
    (await svc.open('vm1', { write: false })).attach(p);
    await svc.stop();
    expect(p.closed?.code).toBe(CLOSE.GOING_AWAY);
    await until(() => serial.clients.length === 0, 'the upstream to close');
    svc = makeService();
    await new Promise<void>((r) => serial.server.close(() => r()));
    await expect(svc.open('vm1', { write: false })).rejects.toMatchObject({ code: 'VM_NOT_RUNNING' });
  });
});

describe('ByteRing', () => {
  it('keeps exactly the newest bytes across wrap-arounds', () => {
    const ring = new ByteRing(10);
    let all = '';
    for (const chunk of ['abc', 'defgh', 'ij', 'klmnopqrstu', 'v', 'wxyz0123', '']) {
      ring.push(Buffer.from(chunk));
      all += chunk;
      expect(ring.contents().toString()).toBe(all.slice(-10));
    }
  });
});

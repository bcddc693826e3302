// Serial console multiplexer: QEMU's serial socket takes one client at a time, so the daemon holds one
// upstream connection per running VM and fans its bytes out to several WebSocket clients, at most one writing.
import { createConnection, type Socket } from 'node:net';
import { AppError, errorMessage } from '../lib/errors.js';
import { silentLogger, type Logger } from '../lib/logger.js';
import type { LibvirtClient } from '../libvirt/types.js';
import { parseXml, type XmlElement } from '../libvirt/xml.js';

/** What the console and VNC proxies need of a connected client; a `ws` WebSocket fits. */
export interface WsPeer {
  send(data: Buffer): void;
  /** Bytes queued but not yet handed to the kernel: how far behind the client is. */
  readonly bufferedAmount: number;
  close(code: number, reason: string): void;
  /** Stop/restart reading the client's input (backpressure towards a slow upstream); optional for fakes. */
  pause?(): void;
  resume?(): void;
}

/** The route feeds a client's messages and its end into this. */
export interface Attachment {
  input(data: Buffer): void;
  detach(): void;
}

/**
 * A checked, reserved connection slot, taken before the WebSocket upgrade so that 404/409 answer as HTTP
 * problems; `attach` once the upgrade is done, `cancel` when it failed.
 */
export interface Ticket {
  readonly write: boolean;
  attach(peer: WsPeer): Attachment;
  cancel(): void;
}

/** WebSocket close codes the console uses (4000-4999 are the application's own). */
export const CLOSE = {
  /** The daemon is shutting down. */
  GOING_AWAY: 1001,
  /** The connection to QEMU broke while the VM still runs. */
  UPSTREAM_LOST: 1011,
  /** QEMU closed the console because the VM stopped. */
  VM_STOPPED: 4001,
  /** The client fell more than the buffer limit behind and was dropped. */
  TOO_SLOW: 4008,
  /** The guest read the writer's input more slowly than it arrived; the writer was dropped. */
  INPUT_BACKLOG: 4009,
} as const;

/** How the service finds a VM's libvirt domain: VM_NOT_FOUND for unknown VMs. */
export interface VmLocator {
  domainOf(vm: string): Promise<string>;
}

export type GuestLibvirt = Pick<LibvirtClient, 'lookupDomain' | 'getDomainXml'>;

export interface GuestDevices {
  domain: string;
  /** libvirt's runtime id of the domain (`<domain id=...>`): new on every boot, so a ring never outlives one. */
  bootId: string;
  serialPath: string | undefined;
  vncPath: string | undefined;
}

/** 404 for unknown VMs, 409 VM_NOT_RUNNING for stopped ones, else the sockets from the live domain XML. */
export async function locateGuest(vms: VmLocator, libvirt: GuestLibvirt, vm: string): Promise<GuestDevices> {
  const domain = await vms.domainOf(vm);
  const info = await libvirt.lookupDomain(domain);
  if (!info?.active) throw new AppError('VM_NOT_RUNNING', `VM ${vm} is not running`);
  let xml: string;
  try {
    xml = await libvirt.getDomainXml(domain);
  } catch (e) {
    // Stopped between the two calls: a transient domain is gone, a persistent one still answers.
    if (e instanceof AppError && e.code === 'DOMAIN_NOT_FOUND') throw new AppError('VM_NOT_RUNNING', `VM ${vm} is not running`);
    throw e;
  }
  return { domain, ...guestSockets(xml) };
}

const child = (el: XmlElement | undefined, name: string) => el?.children.filter((c) => c.name === name) ?? [];

/** The serial and VNC unix socket paths (and the boot id) of a live domain XML; pure. */
export function guestSockets(xml: string): Omit<GuestDevices, 'domain'> {
  const root = parseXml(xml);
  const devices = child(root, 'devices')[0];
  const serial = child(devices, 'serial').find((s) => s.attrs.type === 'unix' && child(s, 'source')[0]?.attrs.mode === 'bind');
  // libvirt 9 shows the socket it chose on <graphics socket=...> and on its <listen type='socket' socket=...>.
  const vnc = child(devices, 'graphics').find((g) => g.attrs.type === 'vnc');
  const vncPath = vnc?.attrs.socket ?? child(vnc, 'listen').find((l) => l.attrs.type === 'socket')?.attrs.socket;
  return { bootId: root.attrs.id ?? '', serialPath: child(serial, 'source')[0]?.attrs.path, vncPath };
}

/** Connects to a unix socket; ENOENT/ECONNREFUSED mean QEMU is gone, i.e. the VM stopped under us. */
export function connectUnix(path: string, vm: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ path });
    const timer = setTimeout(() => s.destroy(new Error(`no answer from ${path} within ${timeoutMs} ms`)), timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') reject(new AppError('VM_NOT_RUNNING', `VM ${vm} is not running (its socket ${path} is gone)`, { cause: e }));
      else reject(new AppError('HOST_ERROR', `cannot connect to ${path}: ${e.message}`, { cause: e }));
    });
  });
}

/**
 * Whether the domain still runs after its socket closed. QEMU closes its sockets as it exits, a moment before
 * libvirt reaps it and reports the domain off, so "running" only counts once it held for `settleMs`.
 */
export async function stillRunning(libvirt: GuestLibvirt, domain: string, settleMs: number): Promise<boolean> {
  const end = Date.now() + settleMs;
  for (;;) {
    const active = await libvirt.lookupDomain(domain).then((i) => i?.active === true, () => false);
    if (!active) return false;
    if (Date.now() >= end) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Fixed-size byte ring: the last `capacity` bytes written. */
export class ByteRing {
  private readonly buf: Buffer;
  private start = 0;
  private length = 0;
  constructor(readonly capacity: number) {
    this.buf = Buffer.alloc(capacity);
  }
  push(data: Buffer): void {
    if (this.capacity === 0) return;
    if (data.length >= this.capacity) {
      data.copy(this.buf, 0, data.length - this.capacity);
      this.start = 0;
      this.length = this.capacity;
      return;
    }
    const end = (this.start + this.length) % this.capacity;
    const first = Math.min(data.length, this.capacity - end);
    data.copy(this.buf, end, 0, first);
    data.copy(this.buf, 0, first);
    const total = this.length + data.length;
    if (total > this.capacity) this.start = (this.start + total - this.capacity) % this.capacity;
    this.length = Math.min(total, this.capacity);
  }
  contents(): Buffer {
    const tail = Math.min(this.length, this.capacity - this.start);
    return Buffer.concat([this.buf.subarray(this.start, this.start + tail), this.buf.subarray(0, this.length - tail)]);
  }
}

export interface ConsoleServiceDeps {
  vms: VmLocator;
  libvirt: GuestLibvirt;
  logger?: Logger;
  /** Output kept per VM and replayed to each new client. Default 16 KiB. */
  ringBytes?: number;
  /** A client further behind than this is dropped (close 4008); the writer's unread input likewise (4009). Default 1 MiB. */
  maxBufferedBytes?: number;
  connectTimeoutMs?: number;
  /** How long a closed upstream's domain must stay running to count as a lost link rather than a stop. Default 3 s. */
  settleMs?: number;
}

export interface ConsoleStats {
  vm: string;
  domain: string;
  upstream: boolean;
  clients: number;
  writer: boolean;
  ringBytes: number;
}

export interface ConsoleService {
  /** Checks the VM (404/409), reserves the writer role when asked (409 CONSOLE_BUSY) and connects upstream. */
  open(vm: string, opts: { write: boolean }): Promise<Ticket>;
  stats(): ConsoleStats[];
  /** Closes every client (1001) and every upstream connection. */
  stop(): Promise<void>;
}

interface Client {
  peer: WsPeer;
  write: boolean;
  gone: boolean;
}

interface Session {
  vm: string;
  domain: string;
  bootId: string;
  serialPath: string;
  ring: ByteRing;
  clients: Set<Client>;
  /** Tickets not yet attached or cancelled: they keep the upstream open like clients do. */
  pending: number;
  writerTaken: boolean;
  upstream: Socket | undefined;
  connecting: Promise<Socket> | undefined;
}

/**
 * The upstream connection opens with the first client and closes when the last one leaves, which frees
 * QEMU's single slot for other tools (socat, test readers); the ring buffer lives on for the VM's current
 * boot, so the next client still sees the recent output (the prompt).
 */
export function createConsoleService(deps: ConsoleServiceDeps): ConsoleService {
  const log = (deps.logger ?? silentLogger()).child({ component: 'console' });
  const ringBytes = deps.ringBytes ?? 16 * 1024;
  const maxBuffered = deps.maxBufferedBytes ?? 1024 * 1024;
  const connectTimeoutMs = deps.connectTimeoutMs ?? 5000;
  const sessions = new Map<string, Session>();
  let stopped = false;

  const close = (c: Client, code: number, reason: string) => {
    if (c.gone) return;
    c.gone = true;
    try {
      c.peer.close(code, reason);
    } catch (e) {
      log.debug({ err: errorMessage(e) }, 'closing a console client failed');
    }
  };

  const refs = (s: Session) => s.clients.size + s.pending;

  /** Drops the upstream once nobody uses it; the session (its ring) stays for this boot. */
  const maybeRelease = (s: Session) => {
    if (refs(s) > 0 || !s.upstream) return;
    const up = s.upstream;
    s.upstream = undefined;
    up.removeAllListeners('close');
    // Ends after the writer's last keystrokes are flushed; QEMU then takes the next client.
    up.destroySoon();
    log.debug({ vm: s.vm }, 'last console client left: upstream closed');
  };

  const fanOut = (s: Session, data: Buffer) => {
    s.ring.push(data);
    for (const c of s.clients) {
      if (c.gone) continue;
      if (c.peer.bufferedAmount > maxBuffered) {
        log.warn({ vm: s.vm, buffered: c.peer.bufferedAmount }, 'console client too slow: dropped');
        close(c, CLOSE.TOO_SLOW, `client more than ${maxBuffered} bytes behind: dropped`);
        detachClient(s, c);
        continue;
      }
      c.peer.send(data);
    }
  };

  const upstreamEnded = (s: Session, up: Socket, err: Error | undefined) => {
    if (s.upstream !== up) return;
    s.upstream = undefined;
    if (sessions.get(s.domain) === s) sessions.delete(s.domain);
    const clients = [...s.clients];
    s.clients.clear();
    s.writerTaken = false;
    if (clients.length === 0) return;
    // QEMU closes the socket when it exits: tell the clients whether the VM stopped or only the link broke.
    void stillRunning(deps.libvirt, s.domain, deps.settleMs ?? 3000).then((running) => {
      log.info({ vm: s.vm, running, err: err?.message }, 'console upstream closed');
      for (const c of clients) {
        if (running) close(c, CLOSE.UPSTREAM_LOST, 'the connection to the VM console was lost');
        else close(c, CLOSE.VM_STOPPED, 'the VM stopped');
      }
    });
  };

  const ensureUpstream = async (s: Session): Promise<void> => {
    if (s.upstream) return;
    s.connecting ??= connectUnix(s.serialPath, s.vm, connectTimeoutMs).finally(() => (s.connecting = undefined));
    const up = await s.connecting;
    if (s.upstream === up) return;
    s.upstream = up;
    let err: Error | undefined;
    up.on('data', (d: Buffer) => fanOut(s, d));
    up.on('error', (e) => (err = e));
    up.on('close', () => upstreamEnded(s, up, err));
    log.debug({ vm: s.vm, path: s.serialPath }, 'console upstream connected');
  };

  function detachClient(s: Session, c: Client) {
    if (!s.clients.delete(c)) return;
    if (c.write) s.writerTaken = false;
    maybeRelease(s);
  }

  return {
    async open(vm, opts) {
      if (stopped) throw new AppError('INTERNAL', 'the console service is stopped');
      const g = await locateGuest(deps.vms, deps.libvirt, vm);
      if (!g.serialPath) throw new AppError('VM_CONFLICT', `VM ${vm} has no serial console on a unix socket`);
      let s = sessions.get(g.domain);
      if (s && (s.bootId !== g.bootId || s.serialPath !== g.serialPath)) {
        // A new boot of the same domain: the old ring is history of another run.
        for (const c of s.clients) close(c, CLOSE.VM_STOPPED, 'the VM stopped');
        s.clients.clear();
        s.upstream?.destroy();
        s = undefined;
      }
      if (!s) {
        s = { vm, domain: g.domain, bootId: g.bootId, serialPath: g.serialPath, ring: new ByteRing(ringBytes), clients: new Set(), pending: 0, writerTaken: false, upstream: undefined, connecting: undefined };
        sessions.set(g.domain, s);
      }
      const session = s;
      // Reserved before the connect awaits, so two writers racing cannot both get the role.
      if (opts.write) {
        if (session.writerTaken) throw new AppError('CONSOLE_BUSY', `the console of VM ${vm} already has a writer; connect read-only or retry later`);
        session.writerTaken = true;
      }
      session.pending++;
      let settled = false;
      const unreserve = () => {
        if (settled) return false;
        settled = true;
        session.pending--;
        if (opts.write) session.writerTaken = false;
        return true;
      };
      try {
        await ensureUpstream(session);
      } catch (e) {
        unreserve();
        maybeRelease(session);
        throw e;
      }
      return {
        write: opts.write,
        cancel() {
          if (unreserve()) maybeRelease(session);
        },
        attach(peer) {
          if (settled) throw new Error('console ticket used twice');
          settled = true;
          session.pending--;
          const c: Client = { peer, write: opts.write, gone: false };
          if (!session.upstream || stopped) {
            // The upstream ended between open and attach (the VM stopped during the handshake).
            if (opts.write) session.writerTaken = false;
            close(c, stopped ? CLOSE.GOING_AWAY : CLOSE.VM_STOPPED, stopped ? 'nodevirtd is stopping' : 'the VM stopped');
            return { input: () => undefined, detach: () => undefined };
          }
          session.clients.add(c);
          const replay = session.ring.contents();
          if (replay.length) peer.send(replay);
          return {
            input(data) {
              // Readers' keystrokes are ignored rather than fatal: a viewer typing by mistake keeps watching.
              if (!c.write || c.gone || !session.upstream) return;
              session.upstream.write(data);
              if (session.upstream.writableLength > maxBuffered) {
                close(c, CLOSE.INPUT_BACKLOG, 'the guest does not read the console input fast enough');
                detachClient(session, c);
              }
            },
            detach() {
              c.gone = true;
              detachClient(session, c);
            },
          };
        },
      };
    },

    stats() {
      return [...sessions.values()].map((s) => ({
        vm: s.vm,
        domain: s.domain,
        upstream: s.upstream !== undefined,
        clients: s.clients.size,
        writer: s.writerTaken,
        ringBytes: s.ring.contents().length,
      }));
    },

    async stop() {
      stopped = true;
      for (const s of sessions.values()) {
        for (const c of s.clients) close(c, CLOSE.GOING_AWAY, 'nodevirtd is stopping');
        s.clients.clear();
        const up = s.upstream;
        s.upstream = undefined;
        up?.destroy();
      }
      sessions.clear();
    },
  };
}

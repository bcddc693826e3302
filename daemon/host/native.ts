// The only importer of the native addon (native/): persistent taps, BPF-filtered AF_PACKET sockets
// and sd_notify, as a typed API. The addon is loaded on first use, so importing this file never fails.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** An OS error from the addon, shaped like Node's own system errors. */
export interface NativeError extends Error {
  /** Symbolic errno: 'EEXIST', 'EBUSY', 'ENODEV', 'EINVAL', 'EPERM'... */
  code: string;
  /** Negative errno, as in Node. */
  errno: number;
  /** The failing call, e.g. 'ioctl(TUNSETIFF)'. */
  syscall: string;
}

export function isNativeError(e: unknown, code?: string): e is NativeError {
  return e instanceof Error && typeof (e as Partial<NativeError>).syscall === 'string' && typeof (e as Partial<NativeError>).code === 'string'
    && (code === undefined || (e as NativeError).code === code);
}

type RawFrameCallback = (err: NativeError | undefined, frame: Buffer | undefined, origLen: number, pktType: number) => void;

interface RawPacketSocket {
  send(frame: Buffer): void;
  close(): void;
  stats(): PacketSocketStats & { ifindex: number };
  isOpen(): boolean;
}

interface Addon {
  createTap(name: string, uid: number, gid: number, flags: number): void;
  deleteTap(name: string): void;
  PacketSocket: new (ifname: string, etherType: number, udpDstPort: number, cb: RawFrameCallback) => RawPacketSocket;
  FRAME_MAX: number;
  packetClosesPending(): number;
  sdNotify(address: string, state: string): boolean;
}

const ADDON_FILE = 'native/build/Release/nodevirt_native.node';
// From daemon/host/ in the tree and from dist/daemon/host/ once compiled.
const CANDIDATES = ['../../', '../../../'].map((up) => fileURLToPath(new URL(up + ADDON_FILE, import.meta.url)));

let addon: Addon | undefined;

/** Loads the addon (once). Throws an Error saying how to build it when it is missing or stale. */
export function loadNative(): Addon {
  if (addon !== undefined) return addon;
  const file = CANDIDATES.find((f) => existsSync(f));
  if (file === undefined) {
    throw new Error(`nodevirt native addon is not built (${CANDIDATES[0]} is missing): run systemd/setup.sh, or npm run build:native`);
  }
  try {
    addon = createRequire(import.meta.url)(file) as Addon;
  } catch (e) {
    // Typically an addon built for another Node ABI.
    throw new Error(`nodevirt native addon ${file} does not load (${(e as Error).message}): rebuild it with systemd/setup.sh, or npm run build:native`, { cause: e });
  }
  if (addon.FRAME_MAX !== FRAME_CAPTURE_BYTES) {
    const stale = addon.FRAME_MAX;
    addon = undefined;
    throw new Error(`nodevirt native addon ${file} is stale (FRAME_MAX ${stale}, expected ${FRAME_CAPTURE_BYTES}): rebuild it with systemd/setup.sh, or npm run build:native`);
  }
  return addon;
}

// ---- taps ----------------------------------------------------------------------------------------

/**
 * Mind the kernel's rule: a tap with neither owner nor group can be attached to by ANY local user
 * (and its traffic read). Pass at least `owner` (0 when only libvirtd, running as root, opens it).
 */
export interface TapOptions {
  /** uid allowed to open the tap besides root (TUNSETOWNER), e.g. libvirt-qemu's. */
  owner?: number;
  /** gid allowed to open the tap (TUNSETGROUP). */
  group?: number;
  /** Create with IFF_VNET_HDR. Off by default: whoever attaches (qemu via libvirt) sets its own flags. */
  vnetHdr?: boolean;
  /** A multi-queue tap, for libvirt interfaces with queues > 1. */
  multiQueue?: boolean;
}

/**
 * Creates a persistent tap, down and without users, for libvirt to open by name
 * (`<interface type='ethernet'><target dev='NAME' managed='no'/>`).
 * Throws NativeError: EEXIST if any link has that name, EINVAL for a bad name (> 15 bytes...), EPERM.
 */
export function createTap(name: string, opts: TapOptions = {}): void {
  const flags = (opts.vnetHdr ? 1 : 0) | (opts.multiQueue ? 2 : 0);
  loadNative().createTap(name, opts.owner ?? -1, opts.group ?? -1, flags);
}

/**
 * Deletes a persistent tap. Throws ENODEV if there is no such link, EINVAL if it is not a tap,
 * EBUSY while a single-queue tap is open (a running qemu). A multi-queue tap in use is not refused:
 * it loses persistence and disappears when its last user closes it.
 */
export function deleteTap(name: string): void {
  loadNative().deleteTap(name);
}

// ---- packet sockets ------------------------------------------------------------------------------

/** Frames are captured up to this many bytes (the addon's FRAME_MAX); longer ones arrive truncated. */
export const FRAME_CAPTURE_BYTES = 2048;

export type PacketType = 'host' | 'broadcast' | 'multicast' | 'otherhost' | 'outgoing' | 'loopback' | 'other';
const PACKET_TYPES: readonly PacketType[] = ['host', 'broadcast', 'multicast', 'otherhost', 'outgoing', 'loopback'];

export interface FrameInfo {
  /** The frame's length on the wire; more than frame.length when truncated. */
  origLen: number;
  truncated: boolean;
  /** How the frame reached us (sll_pkttype). */
  pktType: PacketType;
}

export interface PacketSocketOptions {
  /** Only frames of this EtherType. */
  etherType?: number;
  /** Only IPv4 UDP to this port (first fragments and unfragmented datagrams), checked in a kernel BPF filter. */
  udpDstPort?: number;
  /**
   * Socket errors, e.g. ENETDOWN once when the link goes down (reading resumes after it comes up) or is
   * deleted (nothing more arrives: reopen). Without it they become process warnings.
   */
  onError?: (err: NativeError) => void;
}

export interface PacketSocketStats {
  /** Frames read (and handed to onFrame). */
  received: number;
  truncated: number;
  sent: number;
  /** Frames the kernel dropped because we did not read fast enough (PACKET_STATISTICS). */
  kernelDrops: number;
}

export interface PacketSocket {
  readonly ifname: string;
  readonly ifindex: number;
  readonly closed: boolean;
  /** Sends one complete Ethernet frame (header included) out of this interface; throws NativeError. */
  send(frame: Uint8Array): void;
  /**
   * Stops reading and closes the socket; idempotent; no onFrame call happens after it and send() throws
   * EBADF at once. The kernel side is released by a background thread (the close waits for an RCU grace
   * period, ~13 ms), so it returns in microseconds; packetClosesPending() counts those still under way.
   */
  close(): void;
  stats(): PacketSocketStats;
}

/**
 * Opens an AF_PACKET socket bound to `ifname` (in this process's network namespace). Frames matching
 * the filter are delivered from the event loop, at most 64 per wakeup. Own transmissions are not read
 * back. Throws NativeError: ENODEV for a missing interface, EPERM without CAP_NET_RAW.
 */
export function openPacketSocket(
  ifname: string,
  opts: PacketSocketOptions,
  onFrame: (frame: Buffer, info: FrameInfo) => void,
): PacketSocket {
  const onError = opts.onError ?? ((err: NativeError) => process.emitWarning(`packet socket on ${ifname}: ${err.message}`));
  const raw = new (loadNative().PacketSocket)(ifname, opts.etherType ?? -1, opts.udpDstPort ?? -1, (err, frame, origLen, pktType) => {
    if (err !== undefined) onError(err);
    else if (frame !== undefined) {
      onFrame(frame, { origLen, truncated: origLen > frame.length, pktType: PACKET_TYPES[pktType] ?? 'other' });
    }
  });
  const ifindex = raw.stats().ifindex;
  return {
    ifname,
    ifindex,
    get closed() {
      return !raw.isOpen();
    },
    send(frame) {
      raw.send(Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength));
    },
    close() {
      raw.close();
    },
    stats() {
      const { received, truncated, sent, kernelDrops } = raw.stats();
      return { received, truncated, sent, kernelDrops };
    },
  };
}

/**
 * Packet socket closes handed to the addon's closer threads and not yet finished by the kernel: until
 * then the socket still counts against the fd limit and still sees frames in the kernel (never delivered).
 */
export function packetClosesPending(): number {
  return loadNative().packetClosesPending();
}

/** Resolves once every packet socket closed so far is released in the kernel (polls every `everyMs`). */
export async function packetClosesDrained(everyMs = 2): Promise<void> {
  while (packetClosesPending() > 0) await new Promise((resolve) => setTimeout(resolve, everyMs));
}

// ---- sd_notify -----------------------------------------------------------------------------------

/**
 * Sends `state` (e.g. "READY=1\nSTATUS=serving") to the service manager at $NOTIFY_SOCKET.
 * False when NOTIFY_SOCKET is unset or empty (not under systemd; the addon is not even loaded);
 * throws NativeError when the send fails. The variable is left in place for children to see.
 */
export function sdNotify(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const address = env.NOTIFY_SOCKET;
  if (address === undefined || address === '') return false;
  return loadNative().sdNotify(address, state);
}

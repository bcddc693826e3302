// Host links: taps through the native addon, everything else (bridges, veths, MTU, master, up/down,
// delete) as a pure list of link operations applied by one `ip -batch` process, and listing via `ip -json`.
import { AppError } from '../lib/errors.js';
import { createTap as nativeCreateTap, deleteTap as nativeDeleteTap, isNativeError, type TapOptions } from './native.js';
import { runCommand } from './run-command.js';

export type { TapOptions };

/** One link change, described before it is applied (and asserted on in tests). */
export type LinkOp =
  | { op: 'create-bridge'; name: string; mtu?: number }
  | { op: 'create-veth'; name: string; peer: string; mtu?: number }
  /** Only the given fields change; `master: null` releases the link from its bridge. */
  | { op: 'set'; name: string; mtu?: number; master?: string | null; up?: boolean; address?: string; group?: number }
  | { op: 'delete'; name: string }
  /** Deletes every link in the group at once: one kernel unregister batch (~60x faster than one by one). */
  | { op: 'delete-group'; group: number };

export interface LinkInfo {
  name: string;
  ifindex: number;
  /** 'tap', 'tun', 'bridge', 'veth'...; undefined for physical links. */
  kind: string | undefined;
  mtu: number;
  /** The bridge this link is a port of. */
  master: string | undefined;
  /** Administratively up (IFF_UP), whatever the carrier. */
  up: boolean;
  mac: string;
}

export interface Links {
  /** A persistent tap (see native.ts). HOST_ERROR with the errno name, e.g. EEXIST. */
  createTap(name: string, opts?: TapOptions): Promise<void>;
  /** Deletes a tap; false when there was none. HOST_ERROR (EBUSY while a qemu holds it, EINVAL if not a tap). */
  deleteTap(name: string): Promise<boolean>;
  /**
   * Applies the operations in order in one process. Not atomic: on the first failure the earlier ones
   * stay applied and HOST_ERROR names the failing operation (`extra.failedIndex`).
   */
  apply(ops: readonly LinkOp[]): Promise<void>;
  /** All links, or those whose name passes `filter` (e.g. names.isOurs). */
  list(filter?: (name: string) => boolean): Promise<LinkInfo[]>;
  get(name: string): Promise<LinkInfo | undefined>;
}

// Tokens go into a line-oriented batch: anything with whitespace or quotes could smuggle a command.
const TOKEN = /^[A-Za-z0-9_.:@+-]{1,64}$/;
const IFNAME = /^[A-Za-z0-9_.:@+-]{1,15}$/;

function name(n: string): string {
  if (!IFNAME.test(n)) throw new Error(`links: bad interface name ${JSON.stringify(n)}`);
  return n;
}

function mtu(m: number): string {
  if (!Number.isInteger(m) || m < 68 || m > 65535) throw new Error(`links: bad MTU ${m}`);
  return String(m);
}

// Group 0 is every link's default: deleting it would take the host's own links.
function group(g: number): string {
  if (!Number.isInteger(g) || g < 1 || g > 0xffffffff) throw new Error(`links: bad group ${g}`);
  return String(g);
}

/** The `ip -batch` line of one operation (no leading `ip`). Throws on malformed input: a bug. */
export function renderLinkOp(o: LinkOp): string {
  switch (o.op) {
    case 'create-bridge':
      return ['link add name', name(o.name), ...(o.mtu === undefined ? [] : ['mtu', mtu(o.mtu)]), 'type bridge'].join(' ');
    case 'create-veth': {
      const m = o.mtu === undefined ? [] : ['mtu', mtu(o.mtu)];
      return ['link add name', name(o.name), ...m, 'type veth peer name', name(o.peer), ...m].join(' ');
    }
    case 'set': {
      const parts = ['link set dev', name(o.name)];
      if (o.mtu !== undefined) parts.push('mtu', mtu(o.mtu));
      if (o.address !== undefined) {
        if (!TOKEN.test(o.address)) throw new Error(`links: bad address ${o.address}`);
        parts.push('address', o.address);
      }
      if (o.master === null) parts.push('nomaster');
      else if (o.master !== undefined) parts.push('master', name(o.master));
      if (o.up !== undefined) parts.push(o.up ? 'up' : 'down');
      if (o.group !== undefined) parts.push('group', group(o.group));
      if (parts.length === 2) throw new Error(`links: 'set' on ${o.name} changes nothing`);
      return parts.join(' ');
    }
    case 'delete':
      return `link del dev ${name(o.name)}`;
    case 'delete-group':
      return `link del group ${group(o.group)}`;
  }
}

export function renderIpBatch(ops: readonly LinkOp[]): string {
  return ops.map((o) => renderLinkOp(o) + '\n').join('');
}

interface IpLinkJson {
  ifindex: number;
  ifname: string;
  flags?: string[];
  mtu: number;
  master?: string;
  address?: string;
  linkinfo?: { info_kind?: string; info_data?: { type?: string } };
}

/** Parses `ip -d -j link show` output. */
export function parseIpLinks(json: string): LinkInfo[] {
  const rows = JSON.parse(json) as IpLinkJson[];
  return rows.map((r) => {
    const k = r.linkinfo?.info_kind;
    return {
      name: r.ifname,
      ifindex: r.ifindex,
      // ip reports taps as kind 'tun' with info_data.type 'tap'.
      kind: k === 'tun' ? (r.linkinfo?.info_data?.type ?? 'tun') : k,
      mtu: r.mtu,
      master: r.master,
      up: (r.flags ?? []).includes('UP'),
      mac: r.address ?? '',
    };
  });
}

export interface RealLinksOptions {
  /**
   * Work inside this named network namespace (tests). Taps are still made by the addon, in this
   * process's namespace, then moved in; deleting moves them back first, so the native path is what runs.
   */
  netns?: string;
}

function hostError(what: string, e: unknown): AppError {
  const code = isNativeError(e) ? e.code : undefined;
  return new AppError('HOST_ERROR', `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e, extra: { errno: code } });
}

export function createLinks(opts: RealLinksOptions = {}): Links {
  const ns = opts.netns;
  const ip = (args: string[], input?: string, okCodes?: number[]) =>
    runCommand('ip', [...(ns === undefined ? [] : ['-n', ns]), ...args], { ...(input === undefined ? {} : { input }), ...(okCodes ? { okCodes } : {}) });

  const list = async (filter?: (n: string) => boolean) => {
    const { stdout } = await ip(['-d', '-j', 'link', 'show']);
    const links = parseIpLinks(stdout);
    return filter ? links.filter((l) => filter(l.name)) : links;
  };

  return {
    async createTap(n, tapOpts = {}) {
      try {
        nativeCreateTap(name(n), tapOpts);
      } catch (e) {
        throw hostError(`create tap ${n}`, e);
      }
      if (ns !== undefined) {
        const r = await runCommand('ip', ['link', 'set', 'dev', n, 'netns', ns], { okCodes: [1, 2] });
        if (r.code !== 0) {
          nativeDeleteTap(n);
          const errno = /File exists|same name exists/.test(r.stderr) ? 'EEXIST' : undefined;
          throw new AppError('HOST_ERROR', `create tap ${n}: move into ${ns}: ${r.stderr.trim()}`, { extra: { errno, stderr: r.stderr } });
        }
      }
    },
    async deleteTap(n) {
      if (ns !== undefined) {
        const r = await ip(['link', 'set', 'dev', name(n), 'netns', String(process.pid)], undefined, [1]);
        if (r.code !== 0) {
          if (/Cannot find device|does not exist/.test(r.stderr)) return false;
          throw new AppError('HOST_ERROR', `move tap ${n} out of ${ns}: ${r.stderr.trim()}`, { extra: { stderr: r.stderr } });
        }
      }
      try {
        nativeDeleteTap(name(n));
        return true;
      } catch (e) {
        if (isNativeError(e, 'ENODEV')) return false;
        throw hostError(`delete tap ${n}`, e);
      }
    },
    async apply(ops) {
      if (ops.length === 0) return;
      const script = renderIpBatch(ops);
      try {
        await ip(['-batch', '-'], script);
      } catch (e) {
        if (!(e instanceof AppError)) throw e;
        const stderr = String(e.extra?.stderr ?? '');
        // ip names the failing line as "Command failed -:N" (1-based).
        const m = /Command failed -:(\d+)/.exec(stderr);
        const failedIndex = m ? Number(m[1]) - 1 : undefined;
        const failed = failedIndex === undefined ? undefined : ops[failedIndex];
        const why = stderr.split('\n').filter((l) => l && !l.startsWith('Command failed')).join('; ');
        throw new AppError('HOST_ERROR', `ip ${failed ? renderLinkOp(failed) : '-batch'} failed: ${why}`, {
          cause: e,
          extra: { stderr, failedIndex, op: failed },
        });
      }
    },
    list,
    async get(n) {
      const r = await ip(['-d', '-j', 'link', 'show', 'dev', name(n)], undefined, [1]);
      if (r.code !== 0) {
        if (/does not exist|Cannot find device/.test(r.stderr)) return undefined;
        throw new AppError('HOST_ERROR', `ip link show ${n}: ${r.stderr.trim()}`, { extra: { stderr: r.stderr } });
      }
      return parseIpLinks(r.stdout)[0];
    },
  };
}

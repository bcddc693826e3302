// Small clients over a daemon process's API for end-to-end tests and the VM benchmark: networks, VMs, their
// actions (synchronous today, 202 operations soon; both handled), leases, and the VM's serial console.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Schemas } from '../../../daemon/api/types.js';
import type { ApiResponse } from '../../../daemon/cli/api-client.js';
import { readSerialUntil } from './serial.js';

/** What the helpers need of a daemon: DaemonProcess satisfies it. */
export interface ApiHandle {
  api(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<ApiResponse>;
}

// Wire types from the spec, as the daemon answers them.
export type VmView = Schemas['Vm'];
export type LeaseView = Schemas['Lease'];
type OperationBody = Schemas['Operation'];

export const SERIAL_DIR = '/run/nodevirt';

/** A short random hex id for unique names (VMs, networks, links, namespaces). */
export const runId = (bytes = 3): string => randomBytes(bytes).toString('hex');

/** A /24 from 10.200-10.249 chosen at random, so parallel runs of different suites rarely collide. */
export function randomSubnet(): { prefix: string; cidr: string } {
  const b = randomBytes(2);
  const prefix = `10.${200 + (b[0]! % 50)}.${b[1]!}`;
  return { prefix, cidr: `${prefix}.0/24` };
}

function fail(what: string, r: ApiResponse): never {
  throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function isOperation(body: unknown): body is OperationBody {
  if (typeof body !== 'object' || body === null) return false;
  const b = body as Record<string, unknown>;
  return typeof b.id === 'string' && typeof b.kind === 'string' && typeof b.status === 'string' && ['running', 'succeeded', 'failed', 'cancelled'].includes(b.status);
}

/**
 * Turns an action's answer into its final result, whatever shape the API has today: 200/204 with the result
 * (synchronous), 202 + Location: /v1/operations/{id} (polled until it ends), or 200 with an operation body
 * (?wait=, finished or still running when the wait ran out).
 */
export async function settle(d: ApiHandle, what: string, r: ApiResponse, timeoutMs = 180_000): Promise<unknown> {
  if (r.status >= 400) fail(what, r);
  let op: OperationBody | undefined;
  let location: string | undefined;
  if (r.status === 202) {
    const loc = r.headers.location;
    location = Array.isArray(loc) ? loc[0] : loc;
    if (isOperation(r.body)) op = r.body;
    if (location === undefined && op) location = `/v1/operations/${op.id}`;
    if (location === undefined) fail(`${what} answered 202 without a Location or an operation`, r);
  } else if (isOperation(r.body)) {
    op = r.body;
    location = `/v1/operations/${op.id}`;
  } else {
    return r.body;
  }
  const end = Date.now() + timeoutMs;
  while (!op || op.status === 'running') {
    if (Date.now() > end) throw new Error(`${what}: operation ${location} still running after ${timeoutMs} ms`);
    if (op) await sleep(100);
    const g = await d.api('GET', location!);
    if (g.status !== 200 || !isOperation(g.body)) fail(`${what}: GET ${location}`, g);
    op = g.body;
  }
  if (op.status !== 'succeeded') throw new Error(`${what}: operation ${op.id} ${op.status}: ${JSON.stringify(op.error)}`);
  return op.result;
}

export async function putNetwork(d: ApiHandle, name: string, spec: Record<string, unknown>): Promise<Record<string, unknown>> {
  const r = await d.api('PUT', `/v1/networks/${name}`, spec);
  if (r.status !== 200 && r.status !== 201) fail(`PUT /v1/networks/${name}`, r);
  return r.body as Record<string, unknown>;
}

export async function deleteNetwork(d: ApiHandle, name: string): Promise<void> {
  const r = await d.api('DELETE', `/v1/networks/${name}`);
  if (r.status !== 204 && r.status !== 404) await settle(d, `DELETE /v1/networks/${name}`, r);
}

/** PUT /v1/vms/{name}; returns the VM as stored (its status carries the server-made MACs and IPs). */
export async function putVm(d: ApiHandle, name: string, spec: Record<string, unknown>): Promise<VmView> {
  const r = await d.api('PUT', `/v1/vms/${name}`, { name, ...spec });
  if (r.status !== 200 && r.status !== 201) fail(`PUT /v1/vms/${name}`, r);
  return (r.body as { vm: VmView }).vm;
}

export async function getVm(d: ApiHandle, name: string): Promise<VmView | undefined> {
  const r = await d.api('GET', `/v1/vms/${name}`);
  if (r.status === 404) return undefined;
  if (r.status !== 200) fail(`GET /v1/vms/${name}`, r);
  return r.body as VmView;
}

/** The VM after the start finished (from the answer, the operation's result, or a GET when neither has it). */
async function action(d: ApiHandle, name: string, verb: string, query = '', timeoutMs?: number): Promise<VmView> {
  const path = `/v1/vms/${name}/${verb}${query}`;
  const r = await d.api('POST', path, undefined, timeoutMs ?? 180_000);
  const result = await settle(d, `POST ${path}`, r, timeoutMs);
  if (typeof result === 'object' && result !== null && 'status' in result && 'name' in result) return result as VmView;
  const vm = await getVm(d, name);
  if (!vm) throw new Error(`${path} succeeded but the VM is gone`);
  return vm;
}

export const startVm = (d: ApiHandle, name: string, timeoutMs?: number) => action(d, name, 'start', '', timeoutMs);
export const stopVm = (d: ApiHandle, name: string, opts: { force?: boolean } = {}) => action(d, name, 'stop', opts.force ? '?force=true' : '');

/** DELETE /v1/vms/{name}; a VM already gone is fine (cleanup paths call this unconditionally). */
export async function deleteVm(d: ApiHandle, name: string, opts: { keepDisks?: boolean } = {}): Promise<void> {
  const path = `/v1/vms/${name}${opts.keepDisks ? '?keepDisks=true' : ''}`;
  const r = await d.api('DELETE', path, undefined, 180_000);
  if (r.status === 404) return;
  await settle(d, `DELETE ${path}`, r);
}

async function poll<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, last: () => string): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what} not reached within ${timeoutMs} ms; last seen: ${last()}`);
    await sleep(100);
  }
}

export async function waitForPhase(d: ApiHandle, name: string, phase: string, timeoutMs = 60_000): Promise<VmView> {
  let seen = '';
  return poll(
    `VM ${name} phase ${phase}`,
    timeoutMs,
    async () => {
      const vm = await getVm(d, name);
      seen = vm ? vm.status.phase : 'no such VM';
      return vm?.status.phase === phase ? vm : undefined;
    },
    () => seen,
  );
}

export async function listLeases(d: ApiHandle, filter: { mac?: string; interface?: string } = {}): Promise<LeaseView[]> {
  const q = new URLSearchParams(Object.entries(filter).filter((e): e is [string, string] => e[1] !== undefined));
  const path = `/v1/leases${q.size ? `?${q}` : ''}`;
  const r = await d.api('GET', path);
  if (r.status !== 200) fail(`GET ${path}`, r);
  return (r.body as { items: LeaseView[] }).items;
}

/** Waits until our DHCP server has ACKed the MAC (optionally with this IP) and returns the lease. */
export async function waitForLease(d: ApiHandle, mac: string, opts: { ip?: string; timeoutMs?: number } = {}): Promise<LeaseView> {
  let seen: LeaseView[] = [];
  return poll(
    `an acked lease for ${mac}${opts.ip ? ` with ${opts.ip}` : ''}`,
    opts.timeoutMs ?? 120_000,
    async () => {
      seen = await listLeases(d, { mac });
      return seen.find((l) => l.lastAckAt !== null && (opts.ip === undefined || l.ip === opts.ip));
    },
    () => JSON.stringify(seen),
  );
}

/**
 * The daemon answers before its libvirt client has connected (it serves the API either way and says why);
 * VM calls need the connection, so tests wait for GET /v1/node to report it.
 */
export async function waitForLibvirt(d: ApiHandle, timeoutMs = 30_000): Promise<void> {
  let seen = '';
  await poll(
    'libvirt connected',
    timeoutMs,
    async () => {
      const r = await d.api('GET', '/v1/node');
      const lv = (r.body as { libvirt?: { connected: boolean } }).libvirt;
      seen = JSON.stringify(lv ?? r.body);
      return lv?.connected ? true : undefined;
    },
    () => seen,
  );
}

export const serialPath = (domain: string): string => `${SERIAL_DIR}/${domain}.serial`;

export interface SerialConsole {
  /** Everything read so far, \r stripped. */
  text(): string;
  /** Resolves with the first line matching `re` that arrives at or after `from` (an offset into text()). */
  waitFor(re: RegExp, timeoutMs: number, from?: number): Promise<string>;
  /** Sends one line; the test guest in stay mode echoes it and runs lines starting with "!". */
  send(line: string): void;
  /** Runs `!cmd` in the guest and resolves with its NODEVIRT-OUT lines once NODEVIRT-EXIT arrives. */
  run(cmd: string, timeoutMs: number): Promise<{ out: string[]; exit: number }>;
  close(): void;
}

/**
 * Connects to a domain's serial socket (libvirt creates it when the domain starts: retried until it exists)
 * and keeps reading, so later markers and command output can be awaited on the same connection: QEMU's
 * socket chardev serves one client at a time.
 */
export async function openSerial(domain: string, timeoutMs = 15_000): Promise<SerialConsole> {
  const path = serialPath(domain);
  const end = Date.now() + timeoutMs;
  let socket: Socket;
  for (;;) {
    // The marker never matches: the helper is used for its connection only. Its timer (not unref'd) runs out
    // soon and rejects a promise nobody waits on; the socket stays open, and a bench process can still exit.
    const r = readSerialUntil(path, /(?!)/, timeoutMs);
    r.done.catch(() => undefined);
    const ok = await new Promise<boolean>((res) => {
      r.socket.once('connect', () => res(true));
      r.socket.once('error', () => res(false));
    });
    if (ok) {
      socket = r.socket;
      break;
    }
    r.socket.destroy();
    if (Date.now() > end) throw new Error(`serial socket ${path} not connectable within ${timeoutMs} ms`);
    await sleep(50);
  }
  let buf = '';
  const waiters = new Set<() => void>();
  socket.on('data', (c: Buffer) => {
    buf += c.toString('latin1').replace(/\r/g, '');
    for (const w of [...waiters]) w();
  });
  const lineMatching = (re: RegExp, from: number): string | undefined => {
    const start = buf.lastIndexOf('\n', from - 1) + 1;
    // Only whole lines: a marker's fields may still be arriving.
    const complete = buf.slice(start, buf.lastIndexOf('\n') + 1);
    return complete.split('\n').find((l) => re.test(l));
  };
  const con: SerialConsole = {
    text: () => buf,
    waitFor(re, ms, from = 0) {
      const hit = lineMatching(re, from);
      if (hit !== undefined) return Promise.resolve(hit);
      return new Promise((ok, no) => {
        const check = () => {
          const h = lineMatching(re, from);
          if (h === undefined) return;
          waiters.delete(check);
          clearTimeout(timer);
          ok(h);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          no(new Error(`no line matching ${re} on ${path} within ${ms} ms; console so far:\n${buf.slice(-3000)}`));
        }, ms);
        waiters.add(check);
      });
    },
    send(line) {
      socket.write(`${line}\n`);
    },
    async run(cmd, ms) {
      const from = buf.length;
      con.send(`!${cmd}`);
      const exit = await con.waitFor(/NODEVIRT-EXIT \d+/, ms, from);
      const lines = buf.slice(from).split('\n');
      const out = lines.filter((l) => l.startsWith('NODEVIRT-OUT ')).map((l) => l.slice('NODEVIRT-OUT '.length));
      return { out, exit: Number(exit.split(' ')[1]) };
    },
    close: () => socket.destroy(),
  };
  return con;
}

// The real client recovers by itself: from a dropped bus connection (through a socket proxy we cut), from
// libvirt-dbus exiting, and from libvirtd restarting; each time calls and events work again afterwards.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLibvirtClient } from '../../daemon/libvirt/client.js';
import { createLogger } from '../../daemon/lib/logger.js';
import type { ConnectionEvent, LibvirtClient } from '../../daemon/libvirt/types.js';
import { cleanupTestDomains, EventLog, ev, expectAppError } from '../contract/libvirt-client.contract.js';
import { testDomainName, testDomainXml } from '../contract/test-domain.js';

const BUS = '/run/dbus/system_bus_socket';
const LIBVIRTD_PID = '/run/libvirtd.pid';
const LIBVIRT_DBUS_LOG = '/var/log/nodevirt/libvirt-dbus.log';
const missing =
  process.getuid?.() !== 0 ? 'needs root' : !existsSync(BUS) ? `no system bus at ${BUS}` : !existsSync(LIBVIRTD_PID) ? `no ${LIBVIRTD_PID}` : undefined;

const logger = createLogger({ level: process.env.NODEVIRT_LOG_LEVEL ? undefined : 'warn' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The one process whose /proc/<pid>/comm is exactly `comm` (the services run once on this host). */
function pidOf(comm: string): number | undefined {
  const out = (() => {
    try {
      return execFileSync('pidof', ['-s', comm], { encoding: 'utf8' }).trim();
    } catch {
      return '';
    }
  })();
  return out ? Number(out) : undefined;
}

async function killAndWait(pid: number): Promise<void> {
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
  if (alive(pid)) throw new Error(`pid ${pid} did not exit within 10 s of SIGTERM`);
}

/** Restarts libvirt-dbus the way the host setup starts it: detached, system bus, log in /var/log/nodevirt. */
function startLibvirtDbus(): void {
  const fd = openSync(LIBVIRT_DBUS_LOG, 'a');
  spawn('libvirt-dbus', ['--system'], { detached: true, stdio: ['ignore', fd, fd] }).unref();
  closeSync(fd);
}

function nextConnection(client: LibvirtClient, connected: boolean, timeoutMs: number): Promise<ConnectionEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('connection', on);
      reject(new Error(`no connection event connected=${connected} within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (e: ConnectionEvent): void => {
      if (e.connected !== connected) return;
      clearTimeout(timer);
      client.off('connection', on);
      resolve(e);
    };
    client.on('connection', on);
  });
}

/** Calls and events both work: define a domain, see its event, undefine it. */
async function expectWorking(client: LibvirtClient, log: EventLog, label: string): Promise<void> {
  expect((await client.getVersions()).libvirt).toMatch(/^\d+\.\d+\.\d+$/);
  const name = testDomainName(label);
  try {
    await client.defineDomain(testDomainXml({ name }));
    await log.waitFor(ev(name, 'defined', 'added'), `defined after ${label}`, 10_000);
  } finally {
    await cleanupTestDomains(client, [name]);
  }
}

/** A unix-socket proxy in front of the system bus, so the test can cut the client's bus connection. */
function busProxy(path: string): { server: Server; cut(): void } {
  const pairs = new Set<[Socket, Socket]>();
  const server = createServer((down) => {
    const up = createConnection(BUS);
    const pair: [Socket, Socket] = [down, up];
    pairs.add(pair);
    down.pipe(up).pipe(down);
    const close = () => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on('error', close).on('close', close);
    up.on('error', close).on('close', close);
  });
  server.listen(path);
  return {
    server,
    cut() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
    },
  };
}

describe.skipIf(missing !== undefined)(`libvirt client reconnect${missing ? ` (skipped: ${missing})` : ''}`, () => {
  const clients: LibvirtClient[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'nv-busproxy-'));

  afterAll(async () => {
    // Whatever happened, leave libvirtd and libvirt-dbus running for the next test.
    if (!pidOf('libvirtd')) execFileSync('libvirtd', ['-d']);
    if (!pidOf('libvirt-dbus')) startLibvirtDbus();
    for (const c of clients) await c.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function makeClient(busAddress: string): { client: LibvirtClient; log: EventLog } {
    const client = createLibvirtClient({ busAddress, logger, heartbeatMs: 300, backoff: { initialMs: 100, maxMs: 1_000 } });
    const log = new EventLog();
    client.on('domain', log.listener);
    clients.push(client);
    return { client, log };
  }

  it('reconnects after its system bus connection drops', async () => {
    const proxy = busProxy(join(dir, 'bus.sock'));
    try {
      const { client, log } = makeClient(`unix:path=${join(dir, 'bus.sock')}`);
      await client.start();
      await client.waitForConnection(5_000);
      const t0 = Date.now();
      const down = nextConnection(client, false, 5_000);
      const up = nextConnection(client, true, 10_000);
      proxy.cut();
      expect((await down).error?.code).toBe('LIBVIRT_UNAVAILABLE');
      await up;
      logger.info({ ms: Date.now() - t0 }, 'bus drop -> reconnected');
      await expectWorking(client, log, 'busdrop');
      await client.stop();
    } finally {
      proxy.server.close();
    }
  }, 20_000);

  it('reports libvirt-dbus exiting and reconnects when it is back', async () => {
    const { client, log } = makeClient(`unix:path=${BUS}`);
    await client.start();
    await client.waitForConnection(5_000);
    const pid = pidOf('libvirt-dbus');
    expect(pid, 'libvirt-dbus is running').toBeDefined();
    const down = nextConnection(client, false, 5_000);
    await killAndWait(pid!);
    expect((await down).error?.message).toMatch(/libvirt-dbus/);
    expect(client.connected).toBe(false);
    await expectAppError(client.listDomains(), 'LIBVIRT_UNAVAILABLE');

    const t0 = Date.now();
    const up = nextConnection(client, true, 10_000);
    startLibvirtDbus();
    await up;
    logger.info({ ms: Date.now() - t0 }, 'libvirt-dbus restart -> reconnected');
    await expectWorking(client, log, 'dbusrestart');
    await client.stop();
  }, 30_000);

  it('notices libvirtd restarting and recovers calls and events', async () => {
    const { client, log } = makeClient(`unix:path=${BUS}`);
    await client.start();
    await client.waitForConnection(5_000);
    const pid = Number(readFileSync(LIBVIRTD_PID, 'utf8').trim());
    expect(alive(pid), `libvirtd pid ${pid} is alive`).toBe(true);
    const down = nextConnection(client, false, 5_000);
    await killAndWait(pid);
    expect((await down).error?.code).toBe('LIBVIRT_UNAVAILABLE');
    await expectAppError(client.listDomains(), 'LIBVIRT_UNAVAILABLE');

    const t0 = Date.now();
    const up = nextConnection(client, true, 15_000);
    execFileSync('libvirtd', ['-d']);
    await up;
    logger.info({ ms: Date.now() - t0 }, 'libvirtd restart -> reconnected');
    await expectWorking(client, log, 'virtdrestart');
    await client.stop();
  }, 30_000);
});

// The listeners: a unix socket (trusted: its file mode and group are the authentication) and an optional
// TCP listener (bearer tokens, enforced in app.ts). close() drains in-flight requests before returning.
import { createConnection } from 'node:net';
import { chmod, chown, lstat, mkdir, readFile, unlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import type Koa from 'koa';
import type { Logger } from '../lib/logger.js';
import { requestListener } from './app.js';
import { upgradeListener, type UpgradeListener } from './upgrade.js';

export const DEFAULT_SOCKET_PATH = '/run/nodevirt/nodevirt.sock';
export const DEFAULT_SOCKET_GROUP = 'nodevirt';

export interface ServerOptions {
  app: Koa;
  logger: Logger;
  unixSocket: {
    path?: string;
    /** Default 0o660: owner and group may connect. */
    mode?: number;
    /** Group that owns the socket when it exists in /etc/group; default "nodevirt". */
    group?: string;
  };
  tcp?: { host: string; port: number };
  /** How long close() lets in-flight requests run before cutting them off. Default 10 s. */
  closeTimeoutMs?: number;
}

export interface Servers {
  addresses: { unix: string; tcp?: { host: string; port: number } };
  close(): Promise<void>;
}

export async function startServers(opts: ServerOptions): Promise<Servers> {
  const logger = opts.logger.child({ component: 'server' });
  const socketPath = opts.unixSocket.path ?? DEFAULT_SOCKET_PATH;
  const mode = opts.unixSocket.mode ?? 0o660;
  const groupName = opts.unixSocket.group ?? DEFAULT_SOCKET_GROUP;
  const closeTimeoutMs = opts.closeTimeoutMs ?? 10_000;

  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await removeStaleSocket(socketPath);

  const servers: Server[] = [];
  // WebSocket upgrades (console, VNC) run through the same app and auth as requests on their listener.
  const upgrades: UpgradeListener[] = [];
  const withUpgrades = (server: Server, transport: 'unix' | 'tcp') => {
    const u = upgradeListener(opts.app, transport);
    server.on('upgrade', u.handle);
    upgrades.push(u);
    return server;
  };
  try {
    const unix = withUpgrades(createServer(requestListener(opts.app, 'unix')), 'unix');
    await listen(unix, { path: socketPath });
    servers.push(unix);
    // The default umask already denies others write (= connect) on the fresh socket; this sets the final mode.
    await chmod(socketPath, mode);
    const gid = await lookupGid(groupName);
    if (gid !== undefined) await chown(socketPath, process.getuid?.() ?? 0, gid);
    logger.info({ path: socketPath, mode: mode.toString(8), group: gid === undefined ? null : groupName }, 'listening on unix socket');

    let tcpAddress: Servers['addresses']['tcp'];
    if (opts.tcp) {
      const tcp = withUpgrades(createServer(requestListener(opts.app, 'tcp')), 'tcp');
      await listen(tcp, { host: opts.tcp.host, port: opts.tcp.port });
      servers.push(tcp);
      const address = tcp.address() as AddressInfo;
      tcpAddress = { host: address.address, port: address.port };
      logger.info(tcpAddress, 'listening on tcp (bearer tokens required)');
    }

    let closing: Promise<void> | undefined;
    return {
      addresses: { unix: socketPath, ...(tcpAddress ? { tcp: tcpAddress } : {}) },
      close() {
        // Upgraded sockets are no longer HTTP connections: server.close() would wait for them forever.
        for (const u of upgrades) u.close();
        closing ??= Promise.all(servers.map((s) => closeGracefully(s, closeTimeoutMs, logger))).then(() => undefined);
        return closing;
      },
    };
  } catch (err) {
    for (const u of upgrades) u.close();
    await Promise.all(servers.map((s) => closeGracefully(s, 0, logger)));
    throw err;
  }
}

function listen(server: Server, where: { path: string } | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(where, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Stop accepting, let in-flight requests finish (idle keep-alive connections are closed at once, busy
 * ones after their response), and cut whatever is still open after the timeout.
 */
function closeGracefully(server: Server, timeoutMs: number, logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    const timer = setTimeout(() => {
      logger.warn({ timeoutMs }, 'requests still running at shutdown; closing their connections');
      server.closeAllConnections();
    }, timeoutMs);
    timer.unref();
    // A connection that finishes its response while closing must not be kept alive for another request.
    server.on('request', (_req, res) => res.setHeader('Connection', 'close'));
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
    // Responses finishing later leave their connection idle; close those as they go idle.
    const sweep = setInterval(() => server.closeIdleConnections(), 50);
    sweep.unref();
    server.once('close', () => clearInterval(sweep));
  });
}

/** Removes a socket file nobody listens on; refuses to touch a live socket or a non-socket file. */
async function removeStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${path} is in use by a running process (another nodevirtd?)`);
  await unlink(path);
}

/** getgrnam without a native addon: the group database is /etc/group on the hosts we support. */
async function lookupGid(name: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile('/etc/group', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [group, , gid] = line.split(':');
    if (group === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

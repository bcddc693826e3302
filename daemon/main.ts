#!/usr/bin/env node
// Composition root: config -> adapters -> services -> API -> READY. Also dispatches the small admin CLI,
// which talks to a running daemon over its socket and never opens the store itself.
import { readFileSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import { createApp } from './api/app.js';
import { loadApiSpec } from './api/openapi.js';
import { startServers } from './api/server.js';
import { createTokenService, type StoredToken } from './auth/token-service.js';
import { runCli, USAGE } from './cli/cli.js';
import { loadConfig, type Config } from './config/config.js';
import { createHostProbe } from './host/host-probe.js';
import { createNotifier } from './host/notify.js';
import { createLibvirtClient } from './libvirt/client.js';
import { errorMessage, isAppError } from './lib/errors.js';
import { createLogger, type Logger } from './lib/logger.js';
import { createDhcpService } from './net/dhcp/dhcp-service.js';
import { createLeaseRepo, type StoredLease } from './net/dhcp/lease-repo.js';
import { createDhcpServerRegistry } from './net/dhcp/registry.js';
import { createRelayTransport } from './net/dhcp/relay-transport.js';
import { openPacketSocket } from './host/native.js';
import { createNodeService, emulatorFromCapabilities } from './node/node-service.js';
import { createMacAllocator, type MacRecord } from './net/macs.js';
import { createImageStore } from './storage/images.js';
import { createImageRegistry } from './storage/image-registry.js';
import { diskImages, imagesOf } from './vm/vm-disks.js';
import { createPathGuard } from './storage/paths.js';
import { createQemuImg } from './storage/qemu-img.js';
import { createGuestAgentCache } from './vm/guest-agent.js';
import { createVmService, vmRecords } from './vm/vm-service.js';
import { createVmReconciler } from './vm/reconciler.js';
import { createConsoleService } from './vm/console.js';
import { createVncProxy } from './vm/vnc.js';
import { createLinks } from './host/links.js';
import { createNftables } from './host/nftables.js';
import { createNetHost } from './host/net-host.js';
import { createHostChanges } from './net/host-change.js';
import { createNetworkService } from './net/network-service.js';
import { createNicPlumber, nicId, type NicRecord } from './net/nic.js';
import { createStore } from './store/store.js';
import { createEventLog } from './ops/event-log.js';
import { createOperations } from './ops/operations.js';

const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** GET /v1/healthz over the unix socket we just opened: READY=1 means the API really answers. */
function selfCheck(socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: '/v1/healthz', timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`healthz answered ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error('healthz self-check timed out')));
    req.on('error', reject);
  });
}

async function serve(config: Config, configSource: string | null, logger: Logger): Promise<void> {
  const notifier = createNotifier();
  // Installed before anything starts: a stop during start-up (probes, libvirt) still says STOPPING=1 and
  // closes whatever was opened so far, newest first.
  const closers: Array<{ name: string; close: () => Promise<void> }> = [];
  let stopping = false;
  let watchdog: NodeJS.Timeout | undefined;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    // VMs are children of libvirtd, not ours: stopping the daemon never stops them.
    logger.info({ signal }, 'stopping: finishing in-flight requests; VMs keep running');
    notifier.stopping();
    if (watchdog) clearInterval(watchdog);
    const errors: string[] = [];
    for (const c of closers.reverse()) {
      await withTimeout(c.close(), 15_000, `${c.name} did not close within 15 s`).catch((e) => errors.push(`${c.name}: ${errorMessage(e)}`));
    }
    if (errors.length) logger.error({ errors }, 'stopped with errors');
    else logger.info('stopped');
    process.exit(errors.length ? 1 : 0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  logger.info({ version: VERSION, config: configSource ?? 'built-in defaults', stateDir: config.stateDir }, 'nodevirtd starting');

  // adapters
  const store = createStore({ stateDir: config.stateDir });
  await store.open();
  closers.push({ name: 'store', close: () => store.close() });
  const libvirt = createLibvirtClient({
    logger, // the client names its own component
    uri: config.libvirt.uri,
    ...(config.libvirt.busAddress ? { busAddress: config.libvirt.busAddress } : {}),
  });
  libvirt.on('connection', (ev) => {
    if (stopping) return;
    if (ev.connected) logger.info({ uri: config.libvirt.uri }, 'connected to libvirt over D-Bus');
    else logger.warn({ err: ev.error?.message }, 'libvirt unreachable; retrying with backoff');
  });
  libvirt.on('domain', (ev) => logger.info({ domain: ev.name, event: ev.event, detail: ev.detail }, 'domain lifecycle event'));
  // Resolves after the first attempt either way: a node without libvirt still serves its API and says why.
  closers.push({ name: 'libvirt', close: () => libvirt.stop() });
  await libvirt.start();

  // services
  const node = createNodeService({
    probe: createHostProbe(),
    libvirt,
    logger: logger.child({ component: 'node' }),
    version: VERSION,
    uri: config.libvirt.uri,
    configuredVirtType: config.virtType,
    startedAt: performance.timeOrigin,
  });
  const tokens = createTokenService({ tokens: store.sublevel<StoredToken>('tokens') });
  // Per-interface DHCP: the NIC layer attaches one server per VM interface; the packet transport opens when
  // the tap appears and closes with it. Leases are persisted (coalesced) and served at GET /v1/leases.
  // Events (GET /v1/events) and async operations (202 + /v1/operations/{id}) live in memory: created before
  // the services that publish to them.
  const events = createEventLog();
  const ops = createOperations({ events, logger });
  const dhcpLog = logger.child({ component: 'dhcp' });
  const leases = createLeaseRepo({ leases: store.sublevel<StoredLease>('dhcp-leases'), logger: dhcpLog });
  await leases.start();
  closers.push({ name: 'leases', close: () => leases.stop() });
  const dhcpRegistry = createDhcpServerRegistry();
  const dhcp = createDhcpService({ openPacketSocket, leases, events, registry: dhcpRegistry, logger: dhcpLog });
  dhcp.start();
  closers.push({ name: 'dhcp', close: async () => dhcp.stop() });
  // Host networks and the NIC plumber share one set of kernel adapters. A network is in use while a
  // plumbed NIC is a port of its bridge or holds one of its addresses; the VM layer will plumb those NICs.
  const links = createLinks();
  const nft = createNftables();
  const plumber = createNicPlumber({ links, nft, records: store.sublevel<NicRecord>('nics'), logger: logger.child({ component: 'nic' }) });
  // Host changes that may cut the node off (a bridge over the uplink that carries its address) run with a
  // checkpoint and a revert agent outside this process; finish what a previous run left pending first.
  const hostChanges = createHostChanges({ store, stateDir: config.stateDir, log: logger.child({ component: 'host-change' }) });
  closers.push({ name: 'host-changes', close: async () => hostChanges.stop() });
  for (const c of await hostChanges.reconcile()) logger.warn(c, `host change ${c.id} reconciled: ${c.state}`);
  const networks = createNetworkService({
    hostChanges,
    store,
    adapters: { links, nft, host: createNetHost() },
    logger: logger.child({ component: 'network' }),
    // Records, not the VM service (built later): forwards and floating IPs name "<vm>/<nic>", IPAM owners "<uuid>/<nic>".
    nicOwnerByName: async () => {
      const m = new Map<string, string>();
      for (const [, r] of await vmRecords(store).list()) for (const n of r.nics) m.set(`${r.name}/${n.name}`, nicId(r.uuid, n.name));
      return m;
    },
    nicsUsing: async (network) => {
      const [att, nics] = await Promise.all([networks.nicAttachment(network), plumber.list()]);
      const users = new Set(nics.filter((n) => att.bridge !== undefined && n.spec.bridge === att.bridge).map((n) => n.id));
      if (att.ipam) for (const entry of await (await networks.ipam(network)).list()) users.add(entry.owner);
      return [...users];
    },
  });
  for (const r of await networks.reconcile()) {
    if (r.error) logger.warn(r, `network ${r.name} did not converge`);
    else if (r.changes.length) logger.info(r, `network ${r.name} reconciled`);
  }
  const sweep = await plumber.sweep({ alsoOwned: await networks.ownedLinks() });
  if (sweep.orphanLinks.length || sweep.orphanChains.length || sweep.unfinished.length) {
    // Reported, not deleted: removal belongs to the VM reconciler once it knows which NICs should exist.
    logger.warn(sweep, 'kernel objects with our prefix that no record owns, or NICs a crash left half-plumbed');
  }

  if (config.dhcp.relay) {
    const relay = createRelayTransport({ registry: dhcpRegistry, address: config.dhcp.relay.address, port: config.dhcp.relay.port, logger: dhcpLog });
    const bound = await relay.start();
    closers.push({ name: 'dhcp-relay', close: () => relay.stop() });
    dhcpLog.info(bound, 'DHCP relay listener up');
  }
  const virt = await node.virtType();
  logger.info(virt, `virtualization: ${virt.virtType}`);

  // VMs. QEMU runs as libvirt-qemu and must traverse into the storage root (seeds, volumes): the state dir is
  // 0711 (enter, not list) while the database under it stays 0700.
  const storageRoot = join(config.stateDir, 'storage');
  await mkdir(storageRoot, { recursive: true });
  await chmod(config.stateDir, 0o711);
  await chmod(join(config.stateDir, 'db'), 0o700);
  await chmod(storageRoot, 0o711);
  const guard = createPathGuard({ roots: [storageRoot, '/var/cache/nodevirt'] });
  // Images live in <storage root>/images; one is in use while a stored VM spec names it (image, cdrom, volume.fromImage); read from the store so a
  // delete does not depend on libvirt answering.
  const imageStore = createImageStore({ qemuImg: createQemuImg(), guard });
  const imageRegistry = createImageRegistry({
    store,
    images: imageStore,
    guard,
    dir: join(storageRoot, 'images'),
    ops,
    usedBy: async (image) => (await vmRecords(store).list()).filter(([, r]) => imagesOf(r.spec).includes(image)).map(([, r]) => r.name),
    logger,
  });
  await imageRegistry.start();
  // Guest-agent answers are gathered in the background so a VM GET never waits on a guest (domains: nodevirt-<name>).
  const guestAgent = createGuestAgentCache({ libvirt, isOurs: (d) => d.startsWith('nodevirt-'), logger });
  await guestAgent.start();
  closers.push({ name: 'guest-agent', close: () => guestAgent.stop() });
  const vms = createVmService({
    store,
    libvirt,
    guestAgent,
    events,
    plumber,
    networks,
    dhcp,
    leases,
    macs: createMacAllocator({ macs: store.sublevel<MacRecord>('macs'), nodeId: 0 }),
    guard,
    images: diskImages(imageStore, imageRegistry),
    host: async () => ({
      virtType: virt.virtType,
      emulator: emulatorFromCapabilities(await libvirt.getCapabilities()) ?? '/usr/bin/qemu-system-x86_64',
      capacity: { cpus: cpus().length, memoryMiB: Math.floor(totalmem() / 2 ** 20) },
    }),
    runDir: '/run/nodevirt',
    vmDir: join(storageRoot, 'vms'),
    logger,
  });
  // Running guests are adopted, never restarted; their NICs get their DHCP servers back so renewals are answered.
  const adopted = await vms.adoptRunning().catch((e: unknown) => {
    logger.warn({ err: errorMessage(e) }, 'could not adopt running VMs (libvirt unreachable?)');
    return [];
  });
  if (adopted.length) logger.info({ vms: adopted }, 'adopted running VMs');
  // Run strategies from here on: after the adoption above, so a running guest is never restarted.
  const vmReconciler = createVmReconciler({ vms, libvirt, logger });
  vmReconciler.start();
  closers.push({ name: 'vm-reconciler', close: () => vmReconciler.stop() });

  // Serial console (one QEMU connection per VM, fanned out) and VNC (one per client) for the WebSocket routes.
  const guestLocator = { domainOf: async (vm: string) => (await vms.get(vm)).status.domain };
  const consoles = createConsoleService({ vms: guestLocator, libvirt, logger });
  closers.push({ name: 'console', close: () => consoles.stop() });
  const vnc = createVncProxy({ vms: guestLocator, libvirt, logger });
  closers.push({ name: 'vnc', close: () => vnc.stop() });

  // transport
  const spec = await loadApiSpec();
  const app = createApp({ logger, spec, node, tokens, leases, networks, vms, console: consoles, vnc, ops, events, images: imageRegistry, version: VERSION });
  const servers = await startServers({
    app,
    logger,
    unixSocket: config.api.unixSocket,
    ...(config.api.tcp ? { tcp: config.api.tcp } : {}),
  });
  closers.push({ name: 'api', close: () => servers.close() });
  // Closers run newest first: open event streams and long-polls end before the listeners wait for their requests.
  closers.push({ name: 'event-streams', close: async () => events.close() });
  closers.push({ name: 'operation-waits', close: async () => ops.stop() });
  await selfCheck(servers.addresses.unix);
  if (stopping) return;
  notifier.ready(`API on ${servers.addresses.unix}${servers.addresses.tcp ? ` and tcp ${servers.addresses.tcp.host}:${servers.addresses.tcp.port}` : ''}`);
  logger.info({ unix: servers.addresses.unix, tcp: servers.addresses.tcp ?? null }, 'nodevirtd ready');

  const watchdogMs = notifier.watchdogIntervalMs();
  if (watchdogMs && !stopping) watchdog = setInterval(() => notifier.watchdog(), Math.max(500, Math.floor(watchdogMs / 2)));
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]);
}

async function main(argv: string[]): Promise<number> {
  const args = [...argv];
  if (args.includes('--version')) {
    process.stdout.write(`nodevirtd ${VERSION}\n`);
    return 0;
  }
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  let configPath: string | undefined;
  const i = args.indexOf('--config');
  if (i !== -1) {
    configPath = args[i + 1];
    if (!configPath) {
      process.stderr.write('nodevirtd: --config needs a path\n');
      return 2;
    }
    args.splice(i, 2);
  }
  let loaded: Awaited<ReturnType<typeof loadConfig>>;
  try {
    loaded = await loadConfig(configPath ? { path: configPath } : {});
  } catch (e) {
    process.stderr.write(`nodevirtd: ${errorMessage(e)}\n`);
    return isAppError(e, 'CONFIG_INVALID') ? 78 /* EX_CONFIG */ : 1;
  }
  if (args.length > 0 && args[0] !== 'serve') {
    return runCli(args, { socketPath: loaded.config.api.unixSocket.path }, {
      out: (l) => process.stdout.write(`${l}\n`),
      err: (l) => process.stderr.write(`${l}\n`),
    });
  }
  const logger = createLogger({ level: loaded.config.logLevel });
  process.on('uncaughtException', (e) => {
    logger.fatal({ err: e }, 'uncaught exception: exiting');
    process.exit(70);
  });
  process.on('unhandledRejection', (e) => {
    logger.fatal({ err: e }, 'unhandled rejection: exiting');
    process.exit(70);
  });
  try {
    await serve(loaded.config, loaded.source, logger);
  } catch (e) {
    logger.fatal({ err: e }, `nodevirtd failed to start: ${errorMessage(e)}`);
    return 1;
  }
  return -1; // keep running
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e) => {
    process.stderr.write(`nodevirtd: ${errorMessage(e)}\n`);
    process.exit(1);
  },
);

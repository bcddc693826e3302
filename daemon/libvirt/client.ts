// The real LibvirtClient: libvirt-dbus on the system bus through dbus-next, with reconnect (bus drop,
// libvirt-dbus exit, libvirtd restart), lifecycle events from Connect.DomainEvent and error translation.
import { EventEmitter } from 'node:events';
import dbus, { Message, type MessageBus } from 'dbus-next';
import { waitForConnected } from './wait-connection.js';
import { AppError, errorMessage, isAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { createBackoff, type Backoff } from './backoff.js';
import { bindInterface, isSignal, type Bound, type DBusCaller } from './dbus-bind.js';
import {
  decodeDomainEvent,
  decodeDomainState,
  VIR_DOMAIN_REBOOT_ACPI_POWER_BTN,
  VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN,
  VIR_DOMAIN_UNDEFINE_ALL,
  VIR_DOMAIN_XML_INACTIVE,
  VIR_DOMAIN_XML_SECURE,
} from './enums.js';
import { ConnectSpec, DomainSpec } from './generated/index.js';
import { translateError } from './libvirt-errors.js';
import type {
  AgentEvent,
  ConnectionEvent,
  GuestInterface,
  DomainCapabilitiesQuery,
  DomainInfo,
  DomainState,
  LibvirtClient,
  LibvirtClientOptions,
  LibvirtVersions,
} from './types.js';

const SERVICE = 'org.libvirt';
const BUS_DAEMON = 'org.freedesktop.DBus';
const BUS_PATH = '/org/freedesktop/DBus';
const DEFAULT_BUS = 'unix:path=/run/dbus/system_bus_socket';
const HELLO_TIMEOUT_MS = 5_000;
const NAME_LOOKUP_TIMEOUT_MS = 2_000;
const NAME_CACHE_MAX = 4_096;
const AGENT_TIMEOUT_MS = 5_000;
// virDomainGetHostnameFlags (LEASE is 1) / virDomainInterfaceAddressesSource / virConnectDomainEventAgentLifecycleState
const VIR_DOMAIN_GET_HOSTNAME_AGENT = 2;
const VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT = 1;
const VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED = 1;
/** libvirt's texts for "no agent to ask" (libvirt-dbus drops the error code); all become GUEST_AGENT_UNAVAILABLE. */
const NO_AGENT = [/guest agent/i, /QEMU agent/i, /agent command/i, /domain is not running/];

/** libvirt URI -> [virConnectGetType, libvirt-dbus object path]. libvirt-dbus --system serves these drivers. */
const URIS: Record<string, [string, string]> = {
  'qemu:///system': ['QEMU', '/org/libvirt/QEMU'],
};

/** libvirt-dbus names domain objects after the UUID: .../domain/_0a17e08a_06b2_... */
export function uuidFromDomainPath(path: string): string | undefined {
  const m = /\/domain\/_([0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12})$/i.exec(path);
  return m ? m[1]!.replace(/_/g, '-') : undefined;
}

/** libvirt packs versions as major * 1e6 + minor * 1e3 + micro. */
export function formatLibvirtVersion(v: bigint | number): string {
  const n = BigInt(v);
  return `${n / 1_000_000n}.${(n / 1_000n) % 1_000n}.${n % 1_000n}`;
}

function unavailable(message: string, cause?: unknown): AppError {
  return new AppError('LIBVIRT_UNAVAILABLE', message, cause === undefined ? {} : { cause });
}

interface PendingCall {
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** dbus-next keeps the socket private and neither reports its end nor fails calls left waiting on it. */
function busStream(bus: MessageBus): NodeJS.EventEmitter | undefined {
  return (bus as unknown as { _connection?: { stream?: NodeJS.EventEmitter } })._connection?.stream;
}

class DbusLibvirtClient extends EventEmitter implements LibvirtClient {
  private readonly log: Logger;
  private readonly busAddress: string;
  private readonly hypervisorType: string;
  private readonly connectPath: string;
  private readonly backoff: Backoff;
  private readonly heartbeatMs: number;
  private readonly callTimeoutMs: number;
  private readonly maxInFlight: number;
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];

  private running = false;
  private bus: MessageBus | undefined;
  private busReady = false;
  /** Unique bus name of the current libvirt-dbus; signals from anyone else are ignored. */
  private owner: string | undefined;
  private generation = 0;
  private isConnected = false;
  private reported: boolean | undefined;
  private readonly pending = new Map<number, PendingCall>();
  private callSeq = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private attempting: Promise<void> | undefined;
  private attemptAgain = false;
  private eventChain: Promise<void> = Promise.resolve();
  /** uuid -> name, so events for domains that are already gone (destroyed transient ones) still carry a name. */
  private readonly names = new Map<string, string>();
  private readonly caller: DBusCaller;
  private readonly connect: Bound<typeof ConnectSpec>;

  constructor(opts: LibvirtClientOptions) {
    super();
    const uri = opts.uri ?? 'qemu:///system';
    const mapped = URIS[uri];
    if (!mapped) throw new AppError('CONFIG_INVALID', `libvirt uri ${uri} is not supported (only ${Object.keys(URIS).join(', ')})`);
    [this.hypervisorType, this.connectPath] = mapped;
    this.log = opts.logger.child({ component: 'libvirt' });
    this.busAddress = opts.busAddress ?? process.env.DBUS_SYSTEM_BUS_ADDRESS ?? DEFAULT_BUS;
    this.backoff = createBackoff(opts.backoff);
    this.heartbeatMs = opts.heartbeatMs ?? 5_000;
    this.callTimeoutMs = opts.callTimeoutMs ?? 60_000;
    this.maxInFlight = Math.max(1, opts.maxInFlightCalls ?? 64);
    this.caller = { call: (path, iface, member, signature, body) => this.libvirtCall(path, iface, member, signature, body) };
    this.connect = bindInterface(this.caller, this.connectPath, ConnectSpec);
  }

  get connected(): boolean {
    return this.isConnected;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.attempt();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.stopHeartbeat();
    const stopped = unavailable('libvirt client stopped');
    this.teardownBus(stopped);
    this.markDisconnected(stopped, 'debug');
    await this.attempting;
    await this.eventChain;
  }

  waitForConnection(timeoutMs: number): Promise<void> {
    return waitForConnected(this, this.isConnected, timeoutMs);
  }

  // --- connection management ------------------------------------------------------------------------------

  /** One connect/probe pass; concurrent triggers coalesce into one extra pass. */
  private attempt(): Promise<void> {
    if (this.attempting) {
      this.attemptAgain = true;
      return this.attempting;
    }
    this.attempting = (async () => {
      do {
        this.attemptAgain = false;
        await this.attemptOnce();
      } while (this.attemptAgain && this.running);
    })().finally(() => {
      this.attempting = undefined;
    });
    return this.attempting;
  }

  private async attemptOnce(): Promise<void> {
    if (!this.running) return;
    try {
      if (!this.bus) await this.openBus();
      if (!this.owner) {
        this.owner = await this.getNameOwner();
        if (!this.owner) throw unavailable('libvirt-dbus (org.libvirt) is not on the system bus');
      }
      await this.probe();
      this.markConnected();
    } catch (e) {
      if (!this.running) return;
      const err = isAppError(e) ? e : unavailable(`libvirt connect failed: ${errorMessage(e)}`, e);
      this.markDisconnected(err);
      this.scheduleRetry();
    }
  }

  /** Any libvirt round trip; libvirt-dbus reopens its libvirtd connection (and re-registers events) on it. */
  private async probe(): Promise<void> {
    try {
      await this.connect.getProperty('LibVersion');
    } catch (e) {
      const err = isAppError(e) ? e : translateError(e, 'probe');
      // Any failure of this trivial call means libvirt is not usable, whatever the text says.
      throw isAppError(err, 'LIBVIRT_UNAVAILABLE') ? err : unavailable(`libvirt probe failed: ${err.message}`, err);
    }
  }

  private async openBus(): Promise<void> {
    const gen = ++this.generation;
    // sessionBus() is dbus-next's "connect to this address" (systemBus() ignores a given address).
    const bus = dbus.sessionBus({ busAddress: this.busAddress });
    this.bus = bus;
    this.busReady = false;
    const lost = (why: string) => (err?: unknown) => this.onBusLost(gen, why, err);
    bus.on('error', lost('bus error'));
    busStream(bus)?.on('close', () => this.onBusLost(gen, 'bus connection closed'));
    bus.on('message', (msg: Message) => this.onMessage(gen, msg));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(unavailable(`no answer from the system bus at ${this.busAddress}`)), HELLO_TIMEOUT_MS);
      const fail = (err: unknown): void => {
        clearTimeout(timer);
        reject(unavailable(`cannot connect to the system bus at ${this.busAddress}: ${errorMessage(err)}`, err));
      };
      const closed = (): void => fail(new Error('connection closed during the handshake'));
      bus.once('error', fail);
      busStream(bus)?.once('close', closed);
      bus.once('connect', () => {
        clearTimeout(timer);
        bus.off('error', fail);
        busStream(bus)?.off('close', closed);
        resolve();
      });
    }).catch((e: unknown) => {
      if (gen === this.generation) this.teardownBus(isAppError(e) ? e : unavailable(errorMessage(e)));
      throw e;
    });
    if (gen !== this.generation) throw unavailable('system bus connection replaced');
    await this.busCall('AddMatch', 's', [
      `type='signal',sender='${BUS_DAEMON}',path='${BUS_PATH}',interface='${BUS_DAEMON}',member='NameOwnerChanged',arg0='${SERVICE}'`,
    ]);
    await this.busCall('AddMatch', 's', [
      `type='signal',sender='${SERVICE}',path='${this.connectPath}',interface='${ConnectSpec.name}',member='DomainEvent'`,
    ]);
    // Agent lifecycle is a signal on each domain object, so this match has no path.
    await this.busCall('AddMatch', 's', [`type='signal',sender='${SERVICE}',interface='${DomainSpec.name}',member='AgentEvent'`]);
    this.busReady = true;
    this.log.debug({ address: this.busAddress }, 'system bus connected');
  }

  private async getNameOwner(): Promise<string | undefined> {
    try {
      const [owner] = await this.busCall('GetNameOwner', 's', [SERVICE]);
      return typeof owner === 'string' && owner !== '' ? owner : undefined;
    } catch (e) {
      if (e instanceof dbus.DBusError && e.type === 'org.freedesktop.DBus.Error.NameHasNoOwner') return undefined;
      throw e;
    }
  }

  private onBusLost(gen: number, why: string, err?: unknown): void {
    if (gen !== this.generation || !this.bus) return;
    const error = unavailable(`${why}${err === undefined ? '' : `: ${errorMessage(err)}`}`, err);
    this.log.warn({ err: errorMessage(error) }, 'system bus connection lost');
    this.teardownBus(error);
    if (!this.running) return;
    this.markDisconnected(error);
    this.scheduleRetry();
  }

  private teardownBus(reason: AppError): void {
    this.generation++;
    const bus = this.bus;
    this.bus = undefined;
    this.busReady = false;
    this.owner = undefined;
    this.stopHeartbeat();
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(reason);
    }
    if (bus) {
      // The old bus keeps its 'error' listener so late socket errors stay handled.
      try {
        bus.disconnect();
      } catch {
        /* already closed */
      }
    }
  }

  private scheduleRetry(): void {
    if (!this.running || this.retryTimer) return;
    const delay = this.backoff.next();
    this.log.debug({ delayMs: delay }, 'libvirt reconnect scheduled');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.attempt();
    }, delay);
    this.retryTimer.unref();
  }

  private markConnected(): void {
    this.backoff.reset();
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.scheduleHeartbeat();
    if (this.isConnected) return;
    this.isConnected = true;
    this.reported = true;
    this.log.info({ owner: this.owner }, 'libvirt connected');
    // Fill the uuid -> name cache so later events for vanished domains still resolve.
    this.listDomains().catch((e: unknown) => this.log.debug({ err: errorMessage(e) }, 'warming the domain name cache failed'));
    this.emit('connection', { connected: true } satisfies ConnectionEvent);
  }

  private markDisconnected(error: AppError, level: 'warn' | 'debug' = 'warn'): void {
    this.stopHeartbeat();
    if (!this.isConnected && this.reported === false) return;
    this.isConnected = false;
    this.reported = false;
    this.log[level]({ err: error.message }, 'libvirt unavailable');
    this.emit('connection', { connected: false, error } satisfies ConnectionEvent);
  }

  private scheduleHeartbeat(): void {
    this.stopHeartbeat();
    if (!this.running) return;
    this.heartbeatTimer = setTimeout(() => {
      this.heartbeatTimer = undefined;
      this.probe().then(
        () => this.scheduleHeartbeat(),
        (e: unknown) => {
          if (!this.running) return;
          this.markDisconnected(isAppError(e) ? e : unavailable(errorMessage(e)));
          this.scheduleRetry();
        },
      );
    }, this.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  private stopHeartbeat(): void {
    clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  // --- calls --------------------------------------------------------------------------------------------

  private async send(destination: string, path: string, iface: string, member: string, signature: string, body: unknown[]): Promise<unknown[]> {
    // FIFO beyond the bound: the bus answers LimitsExceeded past its per-connection pending-reply limit.
    if (this.inFlight >= this.maxInFlight) await new Promise<void>((ok) => this.waiting.push(ok));
    else this.inFlight++;
    try {
      return await this.sendNow(destination, path, iface, member, signature, body);
    } finally {
      // The slot passes straight to the next waiter, so inFlight never drops below the number running.
      const next = this.waiting.shift();
      if (next) next();
      else this.inFlight--;
    }
  }

  private sendNow(destination: string, path: string, iface: string, member: string, signature: string, body: unknown[]): Promise<unknown[]> {
    const bus = this.bus;
    if (!bus) return Promise.reject(unavailable(`${member}: not connected to the system bus`));
    // NO_AUTO_START: the bus must not activate libvirt-dbus itself (its activation file runs it as an
    // unprivileged user that cannot reach qemu:///system); the host setup owns starting it.
    const msg = new Message({ destination, path, interface: iface, member, signature, body, flags: dbus.MessageFlag.NO_AUTO_START });
    return new Promise<unknown[]>((resolve, reject) => {
      const id = ++this.callSeq;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(unavailable(`${member}: no reply within ${this.callTimeoutMs} ms`));
      }, this.callTimeoutMs);
      this.pending.set(id, { reject, timer });
      bus.call(msg).then(
        (reply) => {
          if (!this.pending.delete(id)) return;
          clearTimeout(timer);
          resolve(reply?.body ?? []);
        },
        (err: unknown) => {
          if (!this.pending.delete(id)) return;
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  private busCall(member: string, signature: string, body: unknown[]): Promise<unknown[]> {
    return this.send(BUS_DAEMON, BUS_PATH, BUS_DAEMON, member, signature, body);
  }

  private async libvirtCall(path: string, iface: string, member: string, signature: string, body: unknown[]): Promise<unknown[]> {
    if (!this.busReady) throw unavailable(`${member}: libvirt is not connected`);
    if (!this.owner) throw unavailable(`${member}: libvirt-dbus (org.libvirt) is not on the system bus`);
    try {
      const reply = await this.send(SERVICE, path, iface, member, signature, body);
      // A call that works while we think libvirt is down: re-probe now instead of waiting for the backoff.
      if (!this.isConnected && this.running && !this.attempting) void this.attempt();
      return reply;
    } catch (e) {
      const err = translateError(e, member);
      if (isAppError(err, 'LIBVIRT_UNAVAILABLE') && this.isConnected) {
        this.markDisconnected(err);
        this.scheduleRetry();
      }
      throw err;
    }
  }

  // --- signals ------------------------------------------------------------------------------------------

  private onMessage(gen: number, msg: Message): void {
    if (gen !== this.generation || msg.type !== dbus.MessageType.SIGNAL) return;
    if (msg.interface === BUS_DAEMON && msg.member === 'NameOwnerChanged' && msg.sender === BUS_DAEMON) {
      const [name, , newOwner] = msg.body as [string, string, string];
      if (name !== SERVICE) return;
      this.owner = newOwner || undefined;
      if (!newOwner) {
        this.markDisconnected(unavailable('libvirt-dbus (org.libvirt) left the system bus'));
        this.scheduleRetry();
      } else {
        this.log.info({ owner: newOwner }, 'libvirt-dbus appeared on the bus');
        this.backoff.reset();
        clearTimeout(this.retryTimer);
        this.retryTimer = undefined;
        void this.attempt();
      }
      return;
    }
    if (msg.sender !== this.owner) return;
    const body = msg.body as unknown[];
    if (msg.path !== undefined && isSignal(DomainSpec, 'AgentEvent', msg.interface, msg.member, msg.signature, body)) {
      const domainPath = msg.path;
      const [state] = body;
      const at = new Date();
      this.eventChain = this.eventChain
        .then(() => this.deliverAgentEvent(domainPath, state === VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED, at))
        .catch((e: unknown) => this.log.error({ err: errorMessage(e) }, 'agent event listener failed'));
      return;
    }
    if (msg.path !== this.connectPath) return;
    if (!isSignal(ConnectSpec, 'DomainEvent', msg.interface, msg.member, msg.signature, body)) return;
    const [path, event, detail] = body;
    const at = new Date();
    // Ordered delivery: a name lookup for one event must not let a later event overtake it.
    this.eventChain = this.eventChain
      .then(() => this.deliverDomainEvent(path, event, detail, at))
      .catch((e: unknown) => this.log.error({ err: errorMessage(e) }, 'domain event listener failed'));
  }

  private async deliverDomainEvent(path: string, event: number, detail: number, at: Date): Promise<void> {
    const decoded = decodeDomainEvent(event, detail);
    const uuid = uuidFromDomainPath(path);
    if (!decoded || !uuid) {
      this.log.warn({ path, event, detail }, 'unrecognised domain event dropped');
      return;
    }
    let name = this.names.get(uuid);
    if (name === undefined) {
      name = await this.nameOf(path);
      if (name !== undefined) this.remember(uuid, name);
    }
    this.emit('domain', { ...decoded, name, uuid, at });
  }

  private async deliverAgentEvent(path: string, connected: boolean, at: Date): Promise<void> {
    const uuid = uuidFromDomainPath(path);
    if (!uuid) return;
    let name = this.names.get(uuid);
    if (name === undefined) {
      name = await this.nameOf(path);
      if (name !== undefined) this.remember(uuid, name);
    }
    this.emit('agent', { name, uuid, connected, at } satisfies AgentEvent);
  }

  private async nameOf(path: string): Promise<string | undefined> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const lookup = bindInterface(this.caller, path, DomainSpec).getProperty('Name');
      const timeout = new Promise<undefined>((resolve) => {
        timer = setTimeout(resolve, NAME_LOOKUP_TIMEOUT_MS, undefined);
      });
      const name = await Promise.race([lookup, timeout]);
      return typeof name === 'string' && name !== '' ? name : undefined;
    } catch {
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  private remember(uuid: string, name: string): void {
    this.names.delete(uuid);
    this.names.set(uuid, name);
    if (this.names.size > NAME_CACHE_MAX) this.names.delete(this.names.keys().next().value!);
  }

  // --- domain operations ----------------------------------------------------------------------------------

  private domain(path: string): Bound<typeof DomainSpec> {
    return bindInterface(this.caller, path, DomainSpec);
  }

  private async pathOf(name: string): Promise<string> {
    const path = await this.connect.DomainLookupByName(name);
    const uuid = uuidFromDomainPath(path);
    if (uuid) this.remember(uuid, name);
    return path;
  }

  private async infoByPath(path: string): Promise<DomainInfo | undefined> {
    const d = this.domain(path);
    try {
      const [props, [state, reason]] = await Promise.all([d.getAllProperties(), d.GetState(0)]);
      if (props.Name === undefined || props.UUID === undefined) return undefined;
      this.remember(props.UUID, props.Name);
      return {
        name: props.Name,
        uuid: props.UUID,
        state: decodeDomainState(state),
        reason,
        persistent: props.Persistent ?? false,
        active: props.Active ?? false,
      };
    } catch (e) {
      if (isAppError(e, 'DOMAIN_NOT_FOUND')) return undefined;
      throw e;
    }
  }

  private async byName(name: string, op: (d: Bound<typeof DomainSpec>) => Promise<void>): Promise<void> {
    await op(this.domain(await this.pathOf(name)));
  }

  private async infoOrThrow(path: string, what: string): Promise<DomainInfo> {
    const info = await this.infoByPath(path);
    if (!info) throw new AppError('DOMAIN_NOT_FOUND', `${what}: domain vanished right after it was created`);
    return info;
  }

  async getVersions(): Promise<LibvirtVersions> {
    const p = await this.connect.getAllProperties();
    if (p.LibVersion === undefined || p.Version === undefined) throw new AppError('LIBVIRT_ERROR', 'libvirt-dbus returned no version properties');
    return {
      libvirt: formatLibvirtVersion(p.LibVersion),
      hypervisor: { type: this.hypervisorType, version: formatLibvirtVersion(p.Version) },
      hostname: p.Hostname ?? '',
    };
  }

  getCapabilities(): Promise<string> {
    return this.connect.GetCapabilities();
  }

  getDomainCapabilities(q: DomainCapabilitiesQuery = {}): Promise<string> {
    // libvirt-dbus maps '' to NULL (libvirt's default) for each of these.
    return this.connect.GetDomainCapabilities(q.emulator ?? '', q.arch ?? '', q.machine ?? '', q.virttype ?? '', 0);
  }

  async listDomains(): Promise<DomainInfo[]> {
    const paths = await this.connect.ListDomains(0);
    const infos = await Promise.all(paths.map((p) => this.infoByPath(p)));
    return infos.filter((i): i is DomainInfo => i !== undefined).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async lookupDomain(name: string): Promise<DomainInfo | undefined> {
    try {
      return await this.infoByPath(await this.pathOf(name));
    } catch (e) {
      if (isAppError(e, 'DOMAIN_NOT_FOUND')) return undefined;
      throw e;
    }
  }

  async getDomainState(name: string): Promise<{ state: DomainState; reason: number }> {
    const [state, reason] = await this.domain(await this.pathOf(name)).GetState(0);
    return { state: decodeDomainState(state), reason };
  }

  async getDomainXml(name: string, opts: { inactive?: boolean; secure?: boolean } = {}): Promise<string> {
    const flags = (opts.inactive ? VIR_DOMAIN_XML_INACTIVE : 0) | (opts.secure ? VIR_DOMAIN_XML_SECURE : 0);
    return this.domain(await this.pathOf(name)).GetXMLDesc(flags);
  }

  async defineDomain(xml: string): Promise<DomainInfo> {
    return this.infoOrThrow(await this.connect.DomainDefineXML(xml), 'define');
  }

  async createDomain(xml: string): Promise<DomainInfo> {
    const path = await this.connect.DomainCreateXML(xml, 0);
    // Remember the name before anything else: a transient domain can be gone again by the next call.
    const info = await this.infoByPath(path);
    if (!info) throw new AppError('DOMAIN_NOT_FOUND', 'create: the transient domain stopped before it could be inspected');
    return info;
  }

  startDomain(name: string): Promise<void> {
    return this.byName(name, (d) => d.Create(0));
  }

  shutdownDomain(name: string): Promise<void> {
    return this.byName(name, (d) => d.Shutdown(VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN));
  }

  rebootDomain(name: string): Promise<void> {
    return this.byName(name, (d) => d.Reboot(VIR_DOMAIN_REBOOT_ACPI_POWER_BTN));
  }

  resetDomain(name: string): Promise<void> {
    return this.byName(name, (d) => d.Reset(0));
  }

  destroyDomain(name: string): Promise<void> {
    return this.byName(name, (d) => d.Destroy(0));
  }

  undefineDomain(name: string): Promise<void> {
    return this.byName(name, (d) => d.Undefine(VIR_DOMAIN_UNDEFINE_ALL));
  }

  suspendDomain(name: string): Promise<void> {
    return this.byName(name, (d) => d.Suspend());
  }

  resumeDomain(name: string): Promise<void> {
    return this.byName(name, (d) => d.Resume());
  }

  /** An agent query bounded by our own timeout; every "no agent" shape becomes GUEST_AGENT_UNAVAILABLE. */
  private async agentCall<T>(name: string, what: string, timeoutMs: number, op: (d: Bound<typeof DomainSpec>) => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const call = (async () => op(this.domain(await this.pathOf(name))))();
    // A late failure of an abandoned call must not surface as an unhandled rejection.
    call.catch(() => undefined);
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AppError('GUEST_AGENT_UNAVAILABLE', `${what}: no guest agent reply within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([call, timeout]);
    } catch (e) {
      if (isAppError(e, 'LIBVIRT_ERROR') && NO_AGENT.some((re) => re.test(e.message))) {
        throw new AppError('GUEST_AGENT_UNAVAILABLE', `${what}: ${e.message}`, { cause: e });
      }
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  getGuestHostname(name: string, opts: { timeoutMs?: number } = {}): Promise<string> {
    return this.agentCall(name, 'guest hostname', opts.timeoutMs ?? AGENT_TIMEOUT_MS, (d) => d.GetHostname(VIR_DOMAIN_GET_HOSTNAME_AGENT));
  }

  async getGuestInterfaces(name: string, opts: { timeoutMs?: number } = {}): Promise<GuestInterface[]> {
    const raw = await this.agentCall(name, 'guest interfaces', opts.timeoutMs ?? AGENT_TIMEOUT_MS, (d) =>
      d.InterfaceAddresses(VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0),
    );
    // virIPAddrType: 0 ipv4, 1 ipv6. Sizes are capped by the caller (guest-agent.ts), which owns the policy.
    return raw.map(([ifname, mac, addrs]) => ({
      name: ifname,
      mac,
      addresses: addrs.map(([type, ip, prefix]) => ({ family: type === 1 ? ('ipv6' as const) : ('ipv4' as const), ip, prefix })),
    }));
  }
}

export function createLibvirtClient(opts: LibvirtClientOptions): LibvirtClient {
  return new DbusLibvirtClient(opts);
}

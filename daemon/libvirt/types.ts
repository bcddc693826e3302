// The libvirt adapter's public surface: one interface implemented by the libvirt-dbus client (client.ts) and
// the stateful fake (fake.ts); both are held to it by test/contract/libvirt-client.contract.ts.
import type { Logger } from '../lib/logger.js';
import type { AppError } from '../lib/errors.js';
import type { DomainLifecycle, DomainState } from './enums.js';

export type { DomainState, DomainEventType, DomainEventDetail, DomainLifecycle } from './enums.js';

export interface LibvirtVersions {
  /** libvirt library version of the daemon side, e.g. '9.0.0'. */
  libvirt: string;
  hypervisor: {
    /** virConnectGetType, e.g. 'QEMU'. */
    type: string;
    /** Hypervisor version, e.g. '7.2.0'. */
    version: string;
  };
  /** Host name libvirt reports. */
  hostname: string;
}

export interface DomainInfo {
  name: string;
  uuid: string;
  state: DomainState;
  /** Raw virDomain*Reason value for `state` (meaning depends on the state). */
  reason: number;
  persistent: boolean;
  active: boolean;
}

/** `detail` is typed per `event` (switch on `event` to narrow it). */
export type DomainEvent = DomainLifecycle & {
  /** Undefined only when the domain vanished before its name could be looked up (never for domains this client saw). */
  name: string | undefined;
  uuid: string;
  /** When the client received the event. */
  at: Date;
};

export interface ConnectionEvent {
  connected: boolean;
  /** Why the client is not connected (LIBVIRT_UNAVAILABLE), absent when connected. */
  error?: AppError;
}

/** The guest agent channel of a domain came up or went away (libvirt's agent lifecycle event). */
export interface AgentEvent {
  /** Undefined only when the domain vanished before its name could be looked up. */
  name: string | undefined;
  uuid: string;
  connected: boolean;
  at: Date;
}

/** One guest interface as the guest agent reports it (untrusted: the guest says what it likes). */
export interface GuestInterface {
  name: string;
  mac: string;
  addresses: { family: 'ipv4' | 'ipv6'; ip: string; prefix: number }[];
}

export interface DomainCapabilitiesQuery {
  emulator?: string;
  arch?: string;
  machine?: string;
  /** 'qemu' or 'kvm' */
  virttype?: string;
}

export interface BackoffOptions {
  /** First retry delay (ms). Default 250. */
  initialMs?: number;
  /** Cap on the delay (ms). Default 10_000. */
  maxMs?: number;
  /** Growth per failed attempt. Default 2. */
  factor?: number;
  /** Fraction of the delay randomised away (0..1): delay * (1 - jitter * random). Default 0.3. */
  jitter?: number;
}

export interface LibvirtClientOptions {
  /** D-Bus address of the system bus, e.g. 'unix:path=/run/dbus/system_bus_socket' (default: that, or $DBUS_SYSTEM_BUS_ADDRESS). */
  busAddress?: string;
  /** Only qemu:///system (object path /org/libvirt/QEMU) and qemu:///session are mapped. Default qemu:///system. */
  uri?: string;
  logger: Logger;
  backoff?: BackoffOptions;
  /** How often a connected client probes libvirt (ms): libvirt-dbus only notices a restarted libvirtd, and
   *  re-subscribes to its events, on the next call, so the probe is what restores events. Default 5000. */
  heartbeatMs?: number;
  /** Per-call timeout (ms) after which a call fails with LIBVIRT_UNAVAILABLE. Default 60_000. */
  callTimeoutMs?: number;
  /**
   * Calls in flight on the bus connection at most (default 64); more wait their turn. The system bus refuses a
   * connection more than 128 pending replies (LimitsExceeded), which 50 VMs started at once did reach.
   */
  maxInFlightCalls?: number;
}

export interface LibvirtClientEvents {
  connection: [ConnectionEvent];
  domain: [DomainEvent];
  agent: [AgentEvent];
}

export type Listener<K extends keyof LibvirtClientEvents> = (...args: LibvirtClientEvents[K]) => void;

/**
 * Domain operations by name. Failures are AppErrors: DOMAIN_NOT_FOUND (no such domain), LIBVIRT_UNAVAILABLE
 * (bus, libvirt-dbus or libvirtd unreachable; the client is reconnecting), LIBVIRT_ERROR (libvirt refused,
 * e.g. "Requested operation is not valid: domain is already running"; message is libvirt's).
 */
export interface LibvirtClient {
  /** Connects in the background and resolves after the first attempt, connected or not (then retries with backoff). */
  start(): Promise<void>;
  /** Stops retrying, drops the bus connection; pending calls fail with LIBVIRT_UNAVAILABLE. */
  stop(): Promise<void>;
  readonly connected: boolean;
  /** Resolves once connected; rejects with LIBVIRT_UNAVAILABLE after timeoutMs. */
  waitForConnection(timeoutMs: number): Promise<void>;

  on<K extends keyof LibvirtClientEvents>(event: K, listener: Listener<K>): this;
  off<K extends keyof LibvirtClientEvents>(event: K, listener: Listener<K>): this;

  getVersions(): Promise<LibvirtVersions>;
  getCapabilities(): Promise<string>;
  getDomainCapabilities(query?: DomainCapabilitiesQuery): Promise<string>;

  listDomains(): Promise<DomainInfo[]>;
  /** Undefined when there is no such domain. */
  lookupDomain(name: string): Promise<DomainInfo | undefined>;
  getDomainState(name: string): Promise<{ state: DomainState; reason: number }>;
  getDomainXml(name: string, opts?: { inactive?: boolean; secure?: boolean }): Promise<string>;

  /** Defines (or updates, same name and uuid) a persistent domain. */
  defineDomain(xml: string): Promise<DomainInfo>;
  /** Creates and starts a transient domain. */
  createDomain(xml: string): Promise<DomainInfo>;
  startDomain(name: string): Promise<void>;
  /** ACPI power button; the guest decides whether and when to stop. */
  shutdownDomain(name: string): Promise<void>;
  /** ACPI reboot request. */
  rebootDomain(name: string): Promise<void>;
  /** Hard reset, like pressing the reset button. */
  resetDomain(name: string): Promise<void>;
  /** Powers off at once; a transient domain disappears. */
  destroyDomain(name: string): Promise<void>;
  /** Removes the persistent definition (and managed save, snapshot/checkpoint metadata, NVRAM). */
  undefineDomain(name: string): Promise<void>;
  suspendDomain(name: string): Promise<void>;
  resumeDomain(name: string): Promise<void>;

  /** Guest-agent queries. GUEST_AGENT_UNAVAILABLE when no agent answers (none configured, not connected,
   *  domain not running, guest error, or no reply within timeoutMs, default 5000); DOMAIN_NOT_FOUND as above. */
  getGuestHostname(name: string, opts?: { timeoutMs?: number }): Promise<string>;
  getGuestInterfaces(name: string, opts?: { timeoutMs?: number }): Promise<GuestInterface[]>;
}

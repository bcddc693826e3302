// A stateful in-memory LibvirtClient for unit tests of the layers above: domains live in a map, follow
// libvirt's state machine, fail with libvirt's messages and emit the event sequences libvirt-dbus emits.
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { waitForConnected } from './wait-connection.js';
import { AppError } from '../lib/errors.js';
import type { DomainLifecycle } from './enums.js';
import { child, escapeXml, parseXml, XmlParseError } from './xml.js';
import type {
  AgentEvent,
  ConnectionEvent,
  GuestInterface,
  DomainCapabilitiesQuery,
  DomainEvent,
  DomainInfo,
  DomainState,
  LibvirtClient,
  LibvirtVersions,
} from './types.js';

export interface FakeLibvirtClient extends LibvirtClient {
  /** As if the bus or libvirt went away: emits connection {connected:false}; calls fail with LIBVIRT_UNAVAILABLE. */
  simulateDisconnect(reason?: string): void;
  /** Comes back (emits connection {connected:true}); domains are as they were. */
  simulateReconnect(): void;
  /** The guest powers itself off (e.g. `poweroff` inside it). */
  simulateGuestPoweroff(name: string): void;
  /** The emulator dies under the guest. */
  simulateCrash(name: string): void;
  /** The guest's agent connects and answers with `data` (as given: tests feed it garbage too), or disconnects
   *  (undefined). Emits 'agent' events like libvirt; a stopped domain's agent disconnects by itself. */
  simulateAgent(name: string, data: FakeAgentData | undefined): void;
}

export interface FakeAgentData {
  hostname: string;
  interfaces: GuestInterface[];
  /** Connected but never replies (a wedged agent): queries run into their timeout. */
  hang?: boolean;
}

export interface FakeLibvirtOptions {
  versions?: LibvirtVersions;
  /** Whether a guest reacts to the ACPI power button (default true: it powers off shortly after). */
  guestHonoursAcpi?: boolean;
}

interface FakeDomain {
  name: string;
  uuid: string;
  xml: string;
  persistent: boolean;
  state: DomainState;
  reason: number;
  agent?: FakeAgentData;
}

// virDomain*Reason values the fake reports alongside its states.
const REASON = { shutoffUnknown: 0, shutoffShutdown: 1, shutoffDestroyed: 2, shutoffCrashed: 3, running: 1, unpaused: 3, pausedUser: 1 };

const NOT_VALID = 'Requested operation is not valid: ';

function notFound(name: string): AppError {
  return new AppError('DOMAIN_NOT_FOUND', `Domain not found: no domain with matching name '${name}'`);
}

function libvirtError(message: string): AppError {
  return new AppError('LIBVIRT_ERROR', message);
}

/** The parts of a domain XML libvirt insists on; messages follow libvirt's where it has one. */
function parseDomainXml(xml: string): { name: string; uuid: string | undefined } {
  let root;
  try {
    root = parseXml(xml);
  } catch (e) {
    throw libvirtError(`(domain_definition): ${e instanceof XmlParseError ? e.message : String(e)}`);
  }
  if (root.name !== 'domain') throw libvirtError(`XML error: unexpected root element <${root.name}>, expecting <domain>`);
  if (!root.attrs.type) throw libvirtError("XML error: missing domain type attribute");
  const name = child(root, 'name')?.text.trim();
  if (!name) throw libvirtError('XML error: missing name information');
  if (name.includes('/')) throw libvirtError(`XML error: name ${name} cannot contain '/'`);
  const uuidText = child(root, 'uuid')?.text.trim();
  if (uuidText !== undefined && !/^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i.test(uuidText)) {
    throw libvirtError(`XML error: malformed uuid element`);
  }
  return { name, uuid: uuidText?.toLowerCase() };
}

function withUuid(xml: string, uuid: string, hasUuid: boolean): string {
  return hasUuid ? xml : xml.replace(/(<\/name\s*>)/, `$1<uuid>${escapeXml(uuid)}</uuid>`);
}

class FakeClient extends EventEmitter implements FakeLibvirtClient {
  private readonly domains = new Map<string, FakeDomain>();
  private running = false;
  private isConnected = false;
  private readonly versions: LibvirtVersions;
  private readonly acpi: boolean;

  constructor(opts: FakeLibvirtOptions) {
    super();
    this.versions = opts.versions ?? { libvirt: '9.0.0', hypervisor: { type: 'QEMU', version: '7.2.0' }, hostname: hostname() };
    this.acpi = opts.guestHonoursAcpi ?? true;
  }

  get connected(): boolean {
    return this.isConnected;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.setConnected(true);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.setConnected(false, new AppError('LIBVIRT_UNAVAILABLE', 'libvirt client stopped'));
  }

  waitForConnection(timeoutMs: number): Promise<void> {
    return waitForConnected(this, this.isConnected, timeoutMs);
  }

  simulateDisconnect(reason = 'simulated libvirt outage'): void {
    this.setConnected(false, new AppError('LIBVIRT_UNAVAILABLE', reason));
  }

  simulateReconnect(): void {
    if (this.running) this.setConnected(true);
  }

  simulateGuestPoweroff(name: string): void {
    const d = this.domains.get(name);
    if (!d || !this.isActive(d)) throw libvirtError(`${NOT_VALID}domain is not running`);
    this.emitEvent(d, { event: 'shutdown', detail: 'guest' });
    this.stopDomain(d, REASON.shutoffShutdown, { event: 'stopped', detail: 'shutdown' });
  }

  simulateCrash(name: string): void {
    const d = this.domains.get(name);
    if (!d || !this.isActive(d)) throw libvirtError(`${NOT_VALID}domain is not running`);
    this.stopDomain(d, REASON.shutoffCrashed, { event: 'stopped', detail: 'failed' });
  }

  simulateAgent(name: string, data: FakeAgentData | undefined): void {
    const d = this.get_(name);
    if (data && !this.isActive(d)) throw libvirtError(`${NOT_VALID}domain is not running`);
    const was = d.agent !== undefined;
    d.agent = data;
    if (was !== (data !== undefined)) this.emitAgent(d, data !== undefined);
  }

  private emitAgent(d: FakeDomain, connected: boolean): void {
    const event: AgentEvent = { name: d.name, uuid: d.uuid, connected, at: new Date() };
    setImmediate(() => this.emit('agent', event));
  }

  private async agent(name: string, timeoutMs: number | undefined): Promise<FakeAgentData> {
    await this.guard();
    const d = this.get_(name);
    if (!this.isActive(d)) throw new AppError('GUEST_AGENT_UNAVAILABLE', `${NOT_VALID}domain is not running`);
    const a = d.agent;
    if (!a) throw new AppError('GUEST_AGENT_UNAVAILABLE', 'Guest agent is not responding: QEMU guest agent is not connected');
    if (a.hang) {
      const ms = timeoutMs ?? 5_000;
      await new Promise((resolve) => setTimeout(resolve, ms));
      throw new AppError('GUEST_AGENT_UNAVAILABLE', `no guest agent reply within ${ms} ms`);
    }
    return a;
  }

  async getGuestHostname(name: string, opts: { timeoutMs?: number } = {}): Promise<string> {
    return (await this.agent(name, opts.timeoutMs)).hostname;
  }

  async getGuestInterfaces(name: string, opts: { timeoutMs?: number } = {}): Promise<GuestInterface[]> {
    return structuredClone((await this.agent(name, opts.timeoutMs)).interfaces);
  }

  private setConnected(connected: boolean, error?: AppError): void {
    if (this.isConnected === connected) return;
    this.isConnected = connected;
    this.emit('connection', connected ? { connected } : { connected, error } satisfies ConnectionEvent);
  }

  /** Every call goes through here, like every real call crosses the bus. */
  private async guard(): Promise<void> {
    if (!this.isConnected) throw new AppError('LIBVIRT_UNAVAILABLE', 'libvirt is not connected');
    // Yield like a round trip would, so callers cannot depend on synchronous completion.
    await Promise.resolve();
  }

  private get_(name: string): FakeDomain {
    const d = this.domains.get(name);
    if (!d) throw notFound(name);
    return d;
  }

  private isActive(d: FakeDomain): boolean {
    return d.state !== 'shutoff';
  }

  private info(d: FakeDomain): DomainInfo {
    return { name: d.name, uuid: d.uuid, state: d.state, reason: d.reason, persistent: d.persistent, active: this.isActive(d) };
  }

  private emitEvent(d: FakeDomain, e: DomainLifecycle): void {
    const event = { ...e, name: d.name, uuid: d.uuid, at: new Date() } as DomainEvent;
    // Signals arrive asynchronously on the real bus too.
    setImmediate(() => this.emit('domain', event));
  }

  private stopDomain(d: FakeDomain, reason: number, e: DomainLifecycle): void {
    d.state = 'shutoff';
    d.reason = reason;
    if (d.agent) {
      d.agent = undefined;
      this.emitAgent(d, false);
    }
    this.emitEvent(d, e);
    if (!d.persistent) this.domains.delete(d.name);
  }

  private boot(d: FakeDomain): void {
    d.state = 'running';
    d.reason = REASON.running;
    // QEMU starts with paused CPUs and libvirt resumes them: libvirt-dbus emits resumed before started.
    this.emitEvent(d, { event: 'resumed', detail: 'unpaused' });
    this.emitEvent(d, { event: 'started', detail: 'booted' });
  }

  private existing(name: string, uuid: string | undefined): FakeDomain | undefined {
    const byName = this.domains.get(name);
    if (byName && uuid !== undefined && byName.uuid !== uuid) throw libvirtError(`operation failed: domain '${name}' already exists with uuid ${byName.uuid}`);
    if (byName && uuid === undefined) throw libvirtError(`operation failed: domain '${name}' already exists with uuid ${byName.uuid}`);
    if (!byName && uuid !== undefined) {
      for (const d of this.domains.values()) {
        if (d.uuid === uuid) throw libvirtError(`operation failed: domain '${d.name}' is already defined with uuid ${uuid}`);
      }
    }
    return byName;
  }

  async getVersions(): Promise<LibvirtVersions> {
    await this.guard();
    return structuredClone(this.versions);
  }

  async getCapabilities(): Promise<string> {
    await this.guard();
    return [
      '<capabilities>',
      `  <host><uuid>00000000-0000-0000-0000-000000000000</uuid><cpu><arch>x86_64</arch></cpu></host>`,
      "  <guest><os_type>hvm</os_type><arch name='x86_64'><emulator>/usr/bin/qemu-system-x86_64</emulator>",
      "    <machine>pc</machine><machine>q35</machine><domain type='qemu'/></arch></guest>",
      '</capabilities>',
      '',
    ].join('\n');
  }

  async getDomainCapabilities(q: DomainCapabilitiesQuery = {}): Promise<string> {
    await this.guard();
    return [
      '<domainCapabilities>',
      `  <path>${escapeXml(q.emulator ?? '/usr/bin/qemu-system-x86_64')}</path>`,
      `  <domain>${escapeXml(q.virttype ?? 'qemu')}</domain>`,
      `  <machine>${escapeXml(q.machine ?? 'pc-i440fx-7.2')}</machine>`,
      `  <arch>${escapeXml(q.arch ?? 'x86_64')}</arch>`,
      '</domainCapabilities>',
      '',
    ].join('\n');
  }

  async listDomains(): Promise<DomainInfo[]> {
    await this.guard();
    return [...this.domains.values()].map((d) => this.info(d)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async lookupDomain(name: string): Promise<DomainInfo | undefined> {
    await this.guard();
    const d = this.domains.get(name);
    return d && this.info(d);
  }

  async getDomainState(name: string): Promise<{ state: DomainState; reason: number }> {
    await this.guard();
    const d = this.get_(name);
    return { state: d.state, reason: d.reason };
  }

  async getDomainXml(name: string): Promise<string> {
    await this.guard();
    return this.get_(name).xml;
  }

  async defineDomain(xml: string): Promise<DomainInfo> {
    await this.guard();
    const parsed = parseDomainXml(xml);
    const prior = this.existing(parsed.name, parsed.uuid);
    if (prior) {
      prior.xml = withUuid(xml, prior.uuid, parsed.uuid !== undefined);
      prior.persistent = true;
      this.emitEvent(prior, { event: 'defined', detail: 'updated' });
      return this.info(prior);
    }
    const uuid = parsed.uuid ?? randomUUID();
    const d: FakeDomain = { name: parsed.name, uuid, xml: withUuid(xml, uuid, parsed.uuid !== undefined), persistent: true, state: 'shutoff', reason: REASON.shutoffUnknown };
    this.domains.set(d.name, d);
    this.emitEvent(d, { event: 'defined', detail: 'added' });
    return this.info(d);
  }

  async createDomain(xml: string): Promise<DomainInfo> {
    await this.guard();
    const parsed = parseDomainXml(xml);
    const prior = this.existing(parsed.name, parsed.uuid);
    if (prior) {
      if (this.isActive(prior)) throw libvirtError(`operation failed: domain '${prior.name}' is already active`);
      this.boot(prior);
      return this.info(prior);
    }
    const uuid = parsed.uuid ?? randomUUID();
    const d: FakeDomain = { name: parsed.name, uuid, xml: withUuid(xml, uuid, parsed.uuid !== undefined), persistent: false, state: 'shutoff', reason: 0 };
    this.domains.set(d.name, d);
    this.boot(d);
    return this.info(d);
  }

  async startDomain(name: string): Promise<void> {
    await this.guard();
    const d = this.get_(name);
    if (this.isActive(d)) throw libvirtError(`${NOT_VALID}domain is already running`);
    this.boot(d);
  }

  async shutdownDomain(name: string): Promise<void> {
    await this.guard();
    const d = this.get_(name);
    if (!this.isActive(d)) throw libvirtError(`${NOT_VALID}domain is not running`);
    if (!this.acpi || d.state !== 'running') return;
    setImmediate(() => {
      if (this.domains.get(name) === d && d.state === 'running') this.simulateGuestPoweroff(name);
    });
  }

  async rebootDomain(name: string): Promise<void> {
    await this.guard();
    if (!this.isActive(this.get_(name))) throw libvirtError(`${NOT_VALID}domain is not running`);
  }

  async resetDomain(name: string): Promise<void> {
    await this.guard();
    if (!this.isActive(this.get_(name))) throw libvirtError(`${NOT_VALID}domain is not running`);
  }

  async destroyDomain(name: string): Promise<void> {
    await this.guard();
    const d = this.get_(name);
    if (!this.isActive(d)) throw libvirtError(`${NOT_VALID}domain is not running`);
    // QEMU reports the SIGTERM as a host-requested shutdown before libvirt reports the stop.
    this.emitEvent(d, { event: 'shutdown', detail: 'host' });
    this.stopDomain(d, REASON.shutoffDestroyed, { event: 'stopped', detail: 'destroyed' });
  }

  async undefineDomain(name: string): Promise<void> {
    await this.guard();
    const d = this.get_(name);
    if (!d.persistent) throw libvirtError(`${NOT_VALID}cannot undefine transient domain`);
    if (this.isActive(d)) d.persistent = false;
    else this.domains.delete(name);
    this.emitEvent(d, { event: 'undefined', detail: 'removed' });
  }

  async suspendDomain(name: string): Promise<void> {
    await this.guard();
    const d = this.get_(name);
    if (!this.isActive(d)) throw libvirtError(`${NOT_VALID}domain is not running`);
    if (d.state === 'paused') return;
    d.state = 'paused';
    d.reason = REASON.pausedUser;
    this.emitEvent(d, { event: 'suspended', detail: 'paused' });
  }

  async resumeDomain(name: string): Promise<void> {
    await this.guard();
    const d = this.get_(name);
    if (!this.isActive(d)) throw libvirtError(`${NOT_VALID}domain is not running`);
    if (d.state !== 'paused') throw libvirtError(`${NOT_VALID}domain is already running`);
    d.state = 'running';
    d.reason = REASON.unpaused;
    this.emitEvent(d, { event: 'resumed', detail: 'unpaused' });
  }
}

export function createFakeLibvirtClient(opts: FakeLibvirtOptions = {}): FakeLibvirtClient {
  return new FakeClient(opts);
}

// The behaviour every LibvirtClient must show, run against the fake (unit) and libvirt-dbus (system):
// versions, capabilities, the domain state machine, its lifecycle events and its errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError, type ErrorCode } from '../../daemon/lib/errors.js';
import type { DomainEvent, LibvirtClient } from '../../daemon/libvirt/types.js';
import { child, parseXml } from '../../daemon/libvirt/xml.js';
import { TEST_DOMAIN_PREFIX, testDomainName, testDomainXml } from './test-domain.js';

const EVENT_TIMEOUT_MS = 15_000;

/** Records every domain event and lets a test wait for one (the bus may deliver it before or after the reply). */
export class EventLog {
  readonly events: DomainEvent[] = [];
  private waiters: { pred: (e: DomainEvent) => boolean; resolve: (e: DomainEvent) => void }[] = [];
  readonly listener = (e: DomainEvent): void => {
    this.events.push(e);
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred(e)) return true;
      w.resolve(e);
      return false;
    });
  };

  waitFor(pred: (e: DomainEvent) => boolean, what: string, timeoutMs = EVENT_TIMEOUT_MS): Promise<DomainEvent> {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`no domain event ${what} within ${timeoutMs} ms; saw ${JSON.stringify(this.events.map((e) => [e.name, e.event, e.detail]))}`));
      }, timeoutMs);
      const done = (e: DomainEvent): void => {
        clearTimeout(timer);
        resolve(e);
      };
      this.waiters.push({ pred, resolve: done });
    });
  }

  /** [event, detail] pairs for one domain, in arrival order. */
  of(name: string): [string, string][] {
    return this.events.filter((e) => e.name === name).map((e) => [e.event, e.detail]);
  }
}

export function ev(name: string, event: DomainEvent['event'], detail?: string): (e: DomainEvent) => boolean {
  return (e) => e.name === name && e.event === event && (detail === undefined || e.detail === detail);
}

export async function expectAppError(p: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeDefined();
  if (!isAppError(err)) throw new Error(`expected AppError ${code}, got ${String(err)}`);
  expect(err.code, err.message).toBe(code);
  if (message) expect(err.message).toMatch(message);
}

/** Removes every domain this process created with the test prefix; best effort, for afterAll. */
export async function cleanupTestDomains(client: LibvirtClient, names: Iterable<string>): Promise<void> {
  // Another suite may be restarting libvirt right now; give the client a moment to come back first.
  await client.waitForConnection(15_000).catch(() => undefined);
  for (const name of names) {
    if (!name.startsWith(TEST_DOMAIN_PREFIX)) continue;
    const info = await client.lookupDomain(name).catch(() => undefined);
    if (!info) continue;
    if (info.active) await client.destroyDomain(name).catch(() => undefined);
    if (info.persistent) await client.undefineDomain(name).catch(() => undefined);
  }
}

export function describeLibvirtClientContract(label: string, factory: () => Promise<LibvirtClient> | LibvirtClient): void {
  describe(`LibvirtClient contract: ${label}`, () => {
    let client: LibvirtClient;
    const log = new EventLog();
    const created = new Set<string>();
    const newName = (what: string): string => {
      const name = testDomainName(what);
      created.add(name);
      return name;
    };

    beforeAll(async () => {
      client = await factory();
      client.on('domain', log.listener);
      await client.start();
      await client.waitForConnection(10_000);
    });

    afterAll(async () => {
      if (!client) return;
      await cleanupTestDomains(client, created);
      client.off('domain', log.listener);
      await client.stop();
    });

    it('reports connected and libvirt/hypervisor versions', async () => {
      expect(client.connected).toBe(true);
      const v = await client.getVersions();
      expect(v.libvirt).toMatch(/^\d+\.\d+\.\d+$/);
      expect(v.hypervisor.type).toBe('QEMU');
      expect(v.hypervisor.version).toMatch(/^\d+\.\d+\.\d+$/);
      expect(typeof v.hostname).toBe('string');
    });

    it('returns host and domain capabilities as XML', async () => {
      const caps = parseXml(await client.getCapabilities());
      expect(caps.name).toBe('capabilities');
      const osTypes = caps.children.filter((c) => c.name === 'guest').map((g) => child(g, 'os_type')?.text);
      expect(osTypes).toContain('hvm');
      const dcaps = parseXml(await client.getDomainCapabilities({ virttype: 'qemu', arch: 'x86_64' }));
      expect(dcaps.name).toBe('domainCapabilities');
      expect(child(dcaps, 'domain')?.text).toBe('qemu');
    });

    it('walks a persistent domain through define, start, suspend, resume, destroy, undefine with events', async () => {
      const name = newName('life');
      const defined = await client.defineDomain(testDomainXml({ name }));
      expect(defined).toMatchObject({ name, state: 'shutoff', active: false, persistent: true });
      expect(defined.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      const added = await log.waitFor(ev(name, 'defined', 'added'), 'defined/added');
      expect(added.uuid).toBe(defined.uuid);
      expect(added.at).toBeInstanceOf(Date);

      expect(await client.lookupDomain(name)).toEqual(defined);
      expect((await client.listDomains()).find((d) => d.name === name)).toEqual(defined);
      const xml = parseXml(await client.getDomainXml(name));
      expect(child(xml, 'name')?.text).toBe(name);
      expect(child(xml, 'uuid')?.text).toBe(defined.uuid);

      await client.startDomain(name);
      await log.waitFor(ev(name, 'started', 'booted'), 'started/booted');
      expect(await client.getDomainState(name)).toMatchObject({ state: 'running' });
      expect(await client.lookupDomain(name)).toMatchObject({ active: true, persistent: true, state: 'running' });

      await client.suspendDomain(name);
      await log.waitFor(ev(name, 'suspended', 'paused'), 'suspended/paused');
      expect((await client.getDomainState(name)).state).toBe('paused');
      // Suspending a paused domain is a no-op in libvirt, not an error.
      await client.suspendDomain(name);

      await client.resumeDomain(name);
      await log.waitFor((e) => ev(name, 'resumed', 'unpaused')(e) && log.events.indexOf(e) > log.events.findIndex(ev(name, 'suspended')), 'resumed after suspend');
      expect((await client.getDomainState(name)).state).toBe('running');

      await client.destroyDomain(name);
      await log.waitFor(ev(name, 'stopped', 'destroyed'), 'stopped/destroyed');
      expect(await client.getDomainState(name)).toMatchObject({ state: 'shutoff' });
      expect(await client.lookupDomain(name)).toMatchObject({ active: false, persistent: true });

      await client.undefineDomain(name);
      await log.waitFor(ev(name, 'undefined', 'removed'), 'undefined/removed');
      expect(await client.lookupDomain(name)).toBeUndefined();
      expect((await client.listDomains()).some((d) => d.name === name)).toBe(false);

      // libvirt's own sequence: QEMU starts with paused CPUs (resumed before started) and reports destroy's
      // SIGTERM as a host-requested shutdown before the stop.
      expect(log.of(name)).toEqual([
        ['defined', 'added'],
        ['resumed', 'unpaused'],
        ['started', 'booted'],
        ['suspended', 'paused'],
        ['resumed', 'unpaused'],
        ['shutdown', 'host'],
        ['stopped', 'destroyed'],
        ['undefined', 'removed'],
      ]);
    });

    it('refuses state transitions that do not apply, with libvirt-style messages', async () => {
      const name = newName('state');
      await client.defineDomain(testDomainXml({ name }));
      for (const op of [
        () => client.destroyDomain(name),
        () => client.suspendDomain(name),
        () => client.resumeDomain(name),
        () => client.shutdownDomain(name),
        () => client.rebootDomain(name),
        () => client.resetDomain(name),
      ]) {
        await expectAppError(op(), 'LIBVIRT_ERROR', /domain is not running/);
      }
      await client.startDomain(name);
      await expectAppError(client.startDomain(name), 'LIBVIRT_ERROR', /domain is already running/);
      await expectAppError(client.resumeDomain(name), 'LIBVIRT_ERROR', /domain is already running/);
      // A reset and an ACPI reboot request are accepted by a running domain and leave it running.
      await client.resetDomain(name);
      await client.rebootDomain(name);
      expect((await client.getDomainState(name)).state).toBe('running');
      await client.destroyDomain(name);
      await client.undefineDomain(name);
    });

    it('reports DOMAIN_NOT_FOUND (with the name) for every operation on a missing domain', async () => {
      const name = `${TEST_DOMAIN_PREFIX}missing-${Date.now()}`;
      expect(await client.lookupDomain(name)).toBeUndefined();
      const ops: [string, () => Promise<unknown>][] = [
        ['start', () => client.startDomain(name)],
        ['shutdown', () => client.shutdownDomain(name)],
        ['reboot', () => client.rebootDomain(name)],
        ['reset', () => client.resetDomain(name)],
        ['destroy', () => client.destroyDomain(name)],
        ['undefine', () => client.undefineDomain(name)],
        ['suspend', () => client.suspendDomain(name)],
        ['resume', () => client.resumeDomain(name)],
        ['xml', () => client.getDomainXml(name)],
        ['state', () => client.getDomainState(name)],
      ];
      for (const [, op] of ops) await expectAppError(op(), 'DOMAIN_NOT_FOUND', new RegExp(name));
    });

    it('creates a transient domain that vanishes when destroyed and cannot be undefined', async () => {
      const name = newName('trans');
      const info = await client.createDomain(testDomainXml({ name }));
      expect(info).toMatchObject({ name, active: true, persistent: false, state: 'running' });
      await log.waitFor(ev(name, 'started', 'booted'), 'started/booted (transient)');
      await expectAppError(client.undefineDomain(name), 'LIBVIRT_ERROR', /transient/);
      await client.destroyDomain(name);
      // The name still resolves although the domain is gone by the time the event is handled.
      const stopped = await log.waitFor(ev(name, 'stopped', 'destroyed'), 'stopped/destroyed (transient)');
      expect(stopped.uuid).toBe(info.uuid);
      expect(await client.lookupDomain(name)).toBeUndefined();
    });

    it('updates a definition with the same name and uuid, refuses another uuid and malformed XML', async () => {
      const name = newName('redef');
      const first = await client.defineDomain(testDomainXml({ name }));
      const again = await client.defineDomain(testDomainXml({ name, uuid: first.uuid, memoryMiB: 48 }));
      expect(again.uuid).toBe(first.uuid);
      await log.waitFor(ev(name, 'defined', 'updated'), 'defined/updated');
      await expectAppError(
        client.defineDomain(testDomainXml({ name, uuid: '6e0cbd4c-1f57-4c6b-9d39-000000000001' })),
        'LIBVIRT_ERROR',
        /already exists/,
      );
      await expectAppError(client.defineDomain('<domain type="qemu"><name>'), 'LIBVIRT_ERROR');
      await client.undefineDomain(name);
    });

    it('reports "no guest agent" as GUEST_AGENT_UNAVAILABLE, quickly, whether the agent is unconfigured, silent or the domain is off', async () => {
      const bare = newName('noagent');
      const chan = newName('agentch');
      await client.createDomain(testDomainXml({ name: bare }));
      // The channel exists but nothing in the guest (no OS boots) ever opens it: libvirt says "not connected".
      const channel = "    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\n    <memballoon";
      await client.createDomain(testDomainXml({ name: chan }).replace('    <memballoon', channel));
      for (const name of [bare, chan]) {
        const t0 = Date.now();
        await expectAppError(client.getGuestHostname(name, { timeoutMs: 3_000 }), 'GUEST_AGENT_UNAVAILABLE');
        await expectAppError(client.getGuestInterfaces(name, { timeoutMs: 3_000 }), 'GUEST_AGENT_UNAVAILABLE');
        // libvirt answers "not configured"/"not connected" at once; our 3 s timeout would mean it hung instead.
        expect(Date.now() - t0).toBeLessThan(2_500);
      }
      await client.destroyDomain(bare);
      await client.destroyDomain(chan);
      const off = newName('agentoff');
      await client.defineDomain(testDomainXml({ name: off }));
      await expectAppError(client.getGuestHostname(off), 'GUEST_AGENT_UNAVAILABLE');
      await client.undefineDomain(off);
      await expectAppError(client.getGuestHostname(`${TEST_DOMAIN_PREFIX}missing-${Date.now()}`), 'DOMAIN_NOT_FOUND');
    });

    it('lists domains with consistent fields', async () => {
      const a = newName('list-a');
      const b = newName('list-b');
      await client.defineDomain(testDomainXml({ name: a }));
      await client.createDomain(testDomainXml({ name: b }));
      const mine = (await client.listDomains()).filter((d) => d.name === a || d.name === b);
      expect(mine.map((d) => [d.name, d.state, d.active, d.persistent])).toEqual(
        [
          [a, 'shutoff', false, true],
          [b, 'running', true, false],
        ].sort((x, y) => (String(x[0]) < String(y[0]) ? -1 : 1)),
      );
      await client.destroyDomain(b);
      await client.undefineDomain(a);
    });
  });
}

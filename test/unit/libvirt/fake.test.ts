// Runs the LibvirtClient contract against the in-memory fake, plus the fake's own simulation controls.
import { describe, expect, it } from 'vitest';
import { createFakeLibvirtClient } from '../../../daemon/libvirt/fake.js';
import type { ConnectionEvent } from '../../../daemon/libvirt/types.js';
import { describeLibvirtClientContract, EventLog, ev, expectAppError } from '../../contract/libvirt-client.contract.js';
import { testDomainXml } from '../../contract/test-domain.js';

describeLibvirtClientContract('fake', () => createFakeLibvirtClient());

describe('fake libvirt client simulations', () => {
  it('disconnects and reconnects on demand, failing calls in between', async () => {
    const client = createFakeLibvirtClient();
    const conn: ConnectionEvent[] = [];
    client.on('connection', (e) => conn.push(e));
    await client.start();
    await client.defineDomain(testDomainXml({ name: 'nvtest-sim' }));
    client.simulateDisconnect('bus gone');
    expect(client.connected).toBe(false);
    await expectAppError(client.listDomains(), 'LIBVIRT_UNAVAILABLE');
    const waiting = client.waitForConnection(1_000);
    client.simulateReconnect();
    await waiting;
    expect((await client.listDomains()).map((d) => d.name)).toEqual(['nvtest-sim']);
    expect(conn.map((e) => [e.connected, e.error?.code])).toEqual([
      [true, undefined],
      [false, 'LIBVIRT_UNAVAILABLE'],
      [true, undefined],
    ]);
    await client.stop();
  });

  it('powers a guest off on ACPI shutdown, and reports crashes and guest poweroff', async () => {
    const client = createFakeLibvirtClient();
    const log = new EventLog();
    client.on('domain', log.listener);
    await client.start();
    await client.defineDomain(testDomainXml({ name: 'nvtest-acpi' }));
    await client.startDomain('nvtest-acpi');
    await client.shutdownDomain('nvtest-acpi');
    await log.waitFor(ev('nvtest-acpi', 'stopped', 'shutdown'), 'stopped/shutdown');
    expect(await client.getDomainState('nvtest-acpi')).toEqual({ state: 'shutoff', reason: 1 });

    await client.startDomain('nvtest-acpi');
    client.simulateCrash('nvtest-acpi');
    await log.waitFor(ev('nvtest-acpi', 'stopped', 'failed'), 'stopped/failed');

    await client.createDomain(testDomainXml({ name: 'nvtest-gone' }));
    client.simulateGuestPoweroff('nvtest-gone');
    await log.waitFor(ev('nvtest-gone', 'stopped', 'shutdown'), 'stopped/shutdown transient');
    expect(await client.lookupDomain('nvtest-gone')).toBeUndefined();
    await client.stop();
  });

  it('ignores ACPI when the guest does not honour it', async () => {
    const client = createFakeLibvirtClient({ guestHonoursAcpi: false });
    await client.start();
    await client.createDomain(testDomainXml({ name: 'nvtest-deaf' }));
    await client.shutdownDomain('nvtest-deaf');
    await new Promise((r) => setImmediate(r));
    expect((await client.getDomainState('nvtest-deaf')).state).toBe('running');
    await client.stop();
  });
});

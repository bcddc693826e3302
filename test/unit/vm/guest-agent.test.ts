// The guest-agent cache against the stateful libvirt fake: filled only while an agent is connected, cleared on
// disconnect and stop, bounded against a hostile guest, and never blocking a reader.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createFakeLibvirtClient, type FakeLibvirtClient } from '../../../daemon/libvirt/fake.js';
import type { GuestInterface } from '../../../daemon/libvirt/types.js';
import { agentConnectedInXml, createGuestAgentCache, type GuestAgentCache } from '../../../daemon/vm/guest-agent.js';
import { testDomainXml } from '../../contract/test-domain.js';

const AT = new Date('2026-11-23T12:00:00.000Z');
const IFS: GuestInterface[] = [
  { name: 'lo', mac: '00:00:00:00:00:00', addresses: [{ family: 'ipv4', ip: '127.0.0.1', prefix: 8 }] },
  {
    name: 'eth0',
    mac: '52:54:00:AB:CD:EF',
    addresses: [
      { family: 'ipv4', ip: '10.201.7.23', prefix: 24 },
      { family: 'ipv6', ip: 'fe80::5054:ff:feab:cdef', prefix: 64 },
    ],
  },
];

const setups: { cache: GuestAgentCache; lv: FakeLibvirtClient }[] = [];

async function setup(opts: { refreshMs?: number; timeoutMs?: number; xml?: string } = {}) {
  const lv = createFakeLibvirtClient();
  await lv.start();
  const calls = { hostname: 0 };
  const orig = lv.getGuestHostname.bind(lv);
  lv.getGuestHostname = (n, o) => {
    calls.hostname++;
    return orig(n, o);
  };
  const cache = createGuestAgentCache({
    libvirt: lv,
    isOurs: (d) => d.startsWith('nodevirt-'),
    refreshMs: opts.refreshMs ?? 60_000,
    timeoutMs: opts.timeoutMs ?? 1_000,
    now: () => AT,
  });
  setups.push({ cache, lv });
  return { lv, cache, calls };
}

/** Lets the fake's setImmediate events land, then waits for the queries they started. */
async function settle(cache: GuestAgentCache): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  await cache.idle();
}

afterEach(async () => {
  for (const { cache, lv } of setups.splice(0)) {
    await cache.stop();
    await lv.stop();
  }
});

describe('guest agent cache', () => {
  it('caches hostname and interfaces once the agent connects, and clears them on disconnect', async () => {
    const { lv, cache } = await setup();
    await cache.start();
    await lv.createDomain(testDomainXml({ name: 'nodevirt-a' }));
    expect(cache.get('nodevirt-a')).toBeNull();
    lv.simulateAgent('nodevirt-a', { hostname: 'guest-a', interfaces: IFS });
    await settle(cache);
    expect(cache.get('nodevirt-a')).toEqual({
      connected: true,
      hostname: 'guest-a',
      interfaces: [
        { name: 'lo', mac: '00:00:00:00:00:00', addresses: [{ ip: '127.0.0.1', prefix: 8 }] },
        {
          name: 'eth0',
          mac: '52:54:00:ab:cd:ef',
          addresses: [
            { ip: '10.201.7.23', prefix: 24 },
            { ip: 'fe80::5054:ff:feab:cdef', prefix: 64 },
          ],
        },
      ],
      updatedAt: AT.toISOString(),
    });
    lv.simulateAgent('nodevirt-a', undefined);
    await settle(cache);
    expect(cache.get('nodevirt-a')).toBeNull();
  });

  it('clears the entry when the domain stops, and never queries a domain whose agent is not connected', async () => {
    const { lv, cache, calls } = await setup();
    await cache.start();
    await lv.defineDomain(testDomainXml({ name: 'nodevirt-b' }));
    await lv.startDomain('nodevirt-b');
    await lv.createDomain(testDomainXml({ name: 'nodevirt-quiet' }));
    await settle(cache);
    expect(calls.hostname).toBe(0);
    lv.simulateAgent('nodevirt-b', { hostname: 'b', interfaces: [] });
    await settle(cache);
    expect(cache.get('nodevirt-b')?.hostname).toBe('b');
    await lv.destroyDomain('nodevirt-b');
    await settle(cache);
    expect(cache.get('nodevirt-b')).toBeNull();
    expect(cache.get('nodevirt-quiet')).toBeNull();
  });

  it('ignores domains that are not ours', async () => {
    const { lv, cache, calls } = await setup();
    await cache.start();
    await lv.createDomain(testDomainXml({ name: 'someone-else' }));
    lv.simulateAgent('someone-else', { hostname: 'x', interfaces: [] });
    await settle(cache);
    expect(calls.hostname).toBe(0);
    expect(cache.get('someone-else')).toBeNull();
  });

  it('stays null when a connected agent never answers, and a reader never waits for it', async () => {
    const { lv, cache } = await setup({ timeoutMs: 50 });
    await cache.start();
    await lv.createDomain(testDomainXml({ name: 'nodevirt-hang' }));
    lv.simulateAgent('nodevirt-hang', { hostname: 'h', interfaces: [], hang: true });
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    const t0 = Date.now();
    expect(cache.get('nodevirt-hang')).toBeNull();
    expect(Date.now() - t0).toBeLessThan(20);
    await cache.idle();
    expect(cache.get('nodevirt-hang')).toBeNull();
  });

  it('bounds and cleans what a hostile guest returns', async () => {
    const { lv, cache } = await setup();
    await cache.start();
    await lv.createDomain(testDomainXml({ name: 'nodevirt-evil' }));
    const junk = [
      ...Array.from({ length: 200 }, (_, i) => ({
        name: `if${i}`,
        mac: 'not-a-mac',
        addresses: Array.from({ length: 200 }, () => ({ family: 'ipv4', ip: '10.0.0.1', prefix: 24 })),
      })),
    ];
    const garbage = [
      { name: 'x\u0000\u001b[31m\u202e' + 'y'.repeat(1000), mac: 42, addresses: 'nope' },
      null,
      'str',
      { name: 7, mac: '52:54:00:00:00:01', addresses: [] },
      { name: 'ok', mac: '52:54:00:00:00:02', addresses: [{ ip: '999.1.1.1', prefix: 24 }, { ip: '10.1.1.1', prefix: 33 }, { ip: 'fe80::1', prefix: 1.5 }, null, { ip: '10.1.1.2', prefix: 32 }] },
    ];
    lv.simulateAgent('nodevirt-evil', {
      hostname: '\u0007evil\nhost' + 'z'.repeat(100_000),
      interfaces: [...garbage, ...junk] as unknown as GuestInterface[],
    });
    await settle(cache);
    const got = cache.get('nodevirt-evil');
    expect(got).not.toBeNull();
    expect(got!.hostname!.startsWith('evilhost')).toBe(true);
    expect(got!.hostname!.length).toBe(255);
    expect(got!.interfaces.length).toBeLessThanOrEqual(32);
    expect(got!.interfaces[0]).toEqual({ name: 'x[31m' + 'y'.repeat(59), mac: null, addresses: [] });
    expect(got!.interfaces[1]).toEqual({ name: 'ok', mac: '52:54:00:00:00:02', addresses: [{ ip: '10.1.1.2', prefix: 32 }] });
    for (const i of got!.interfaces) expect(i.addresses.length).toBeLessThanOrEqual(16);
    expect(JSON.stringify(got).length).toBeLessThan(64 * 1024);
  });

  it('a non-array interfaces answer or a non-string hostname does not crash the cache', async () => {
    const { lv, cache } = await setup();
    await cache.start();
    await lv.createDomain(testDomainXml({ name: 'nodevirt-odd' }));
    lv.simulateAgent('nodevirt-odd', { hostname: { toString: 1 } as unknown as string, interfaces: { length: 1e9 } as unknown as GuestInterface[] });
    await settle(cache);
    expect(cache.get('nodevirt-odd')).toMatchObject({ connected: true, hostname: null, interfaces: [] });
  });

  it('finds agents already connected at start-up from the live XML (adoption)', async () => {
    const { lv, cache } = await setup();
    const channel = "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' state='connected'/></channel><memballoon";
    await lv.createDomain(testDomainXml({ name: 'nodevirt-adopt' }).replace('<memballoon', channel));
    lv.simulateAgent('nodevirt-adopt', { hostname: 'adopted', interfaces: [] });
    await settle(cache); // the connect event fires before the cache listens
    await cache.start();
    await settle(cache);
    expect(cache.get('nodevirt-adopt')?.hostname).toBe('adopted');
  });

  it('refreshes while connected', async () => {
    const { lv, cache } = await setup({ refreshMs: 20 });
    await cache.start();
    await lv.createDomain(testDomainXml({ name: 'nodevirt-r' }));
    lv.simulateAgent('nodevirt-r', { hostname: 'one', interfaces: [] });
    await settle(cache);
    expect(cache.get('nodevirt-r')?.hostname).toBe('one');
    lv.simulateAgent('nodevirt-r', { hostname: 'two', interfaces: [] });
    await vi.waitFor(() => expect(cache.get('nodevirt-r')?.hostname).toBe('two'), { timeout: 2_000 });
  });
});

describe('agentConnectedInXml', () => {
  it('reads the channel state libvirt puts in the live XML', () => {
    const xml = (state: string) =>
      `<domain><devices><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'${state}/></channel></devices></domain>`;
    expect(agentConnectedInXml(xml(" state='connected'"))).toBe(true);
    expect(agentConnectedInXml(xml(" state='disconnected'"))).toBe(false);
    expect(agentConnectedInXml(xml(''))).toBe(false);
    expect(agentConnectedInXml('<domain')).toBe(false);
  });
});

// Many libvirt calls at once on the daemon's one D-Bus connection (50 VMs started together do this): the bus
// refuses more than its max_replies_per_connection pending calls (LimitsExceeded), so the client must queue
// beyond a bound instead of passing that refusal on as a libvirt error.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../daemon/lib/logger.js';
import { createLibvirtClient } from '../../daemon/libvirt/client.js';
import type { LibvirtClient } from '../../daemon/libvirt/types.js';

const BUS = '/run/dbus/system_bus_socket';
const missing = process.getuid?.() !== 0 ? 'needs root' : !existsSync(BUS) ? `no system bus at ${BUS}` : undefined;

describe.skipIf(missing !== undefined)(`libvirt client under many concurrent calls${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let client: LibvirtClient;

  beforeAll(async () => {
    client = createLibvirtClient({ busAddress: `unix:path=${BUS}`, logger: silentLogger() });
    await client.start();
    await client.waitForConnection(10_000);
  });
  afterAll(async () => {
    await client?.stop();
  });

  it('600 calls issued at once all answer; none is refused by the bus', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 600 }, (_, i) => (i % 3 === 0 ? client.getCapabilities() : i % 3 === 1 ? client.getDomainCapabilities() : client.lookupDomain(`nodevirt-no-such-${i}`))),
    );
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as Error).message)] : []));
    expect(refused.slice(0, 3)).toEqual([]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(600);
  }, 120_000);
});

// The real client without a usable bus: start() must not throw, must report disconnected, keep retrying
// with backoff, fail calls fast with LIBVIRT_UNAVAILABLE, and stop cleanly.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLibvirtClient } from '../../../daemon/libvirt/client.js';
import type { ConnectionEvent } from '../../../daemon/libvirt/types.js';
import { silentLogger } from '../../../daemon/lib/logger.js';
import { isAppError } from '../../../daemon/lib/errors.js';
import { expectAppError } from '../../contract/libvirt-client.contract.js';

const dir = mkdtempSync(join(tmpdir(), 'nv-libvirt-client-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('libvirt client without a bus', () => {
  it('rejects unsupported URIs at construction', () => {
    let err: unknown;
    try {
      createLibvirtClient({ uri: 'xen:///system', logger: silentLogger() });
    } catch (e) {
      err = e;
    }
    expect(isAppError(err, 'CONFIG_INVALID')).toBe(true);
  });

  it('starts disconnected when the socket is missing, retries, and stops', async () => {
    const client = createLibvirtClient({
      busAddress: `unix:path=${join(dir, 'missing.sock')}`,
      logger: silentLogger(),
      backoff: { initialMs: 20, maxMs: 40 },
    });
    const events: ConnectionEvent[] = [];
    client.on('connection', (e) => events.push(e));
    await client.start();
    expect(client.connected).toBe(false);
    expect(events).toHaveLength(1);
    expect(events[0]!.error?.code).toBe('LIBVIRT_UNAVAILABLE');
    expect(events[0]!.error?.message).toMatch(/missing\.sock/);
    await expectAppError(client.listDomains(), 'LIBVIRT_UNAVAILABLE');
    await expectAppError(client.waitForConnection(150), 'LIBVIRT_UNAVAILABLE');
    // Retries happened meanwhile but state changes are reported once, not per attempt.
    expect(events).toHaveLength(1);
    await client.stop();
  });

  it('treats a peer that hangs up during the handshake as unavailable', async () => {
    const path = join(dir, 'rude.sock');
    let accepted = 0;
    const server = createServer((s) => {
      accepted++;
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const client = createLibvirtClient({ busAddress: `unix:path=${path}`, logger: silentLogger(), backoff: { initialMs: 20, maxMs: 40 } });
      const t0 = Date.now();
      await client.start();
      expect(Date.now() - t0).toBeLessThan(4_000);
      expect(client.connected).toBe(false);
      await new Promise((r) => setTimeout(r, 200));
      expect(accepted).toBeGreaterThan(1);
      await client.stop();
    } finally {
      server.close();
    }
  });
});

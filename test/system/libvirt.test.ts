// Runs the LibvirtClient contract against the real libvirt-dbus on the system bus (libvirtd qemu:///system, TCG).
import { existsSync } from 'node:fs';
import { describe, it } from 'vitest';
import { createLibvirtClient } from '../../daemon/libvirt/client.js';
import { createLogger } from '../../daemon/lib/logger.js';
import { describeLibvirtClientContract } from '../contract/libvirt-client.contract.js';

const BUS = '/run/dbus/system_bus_socket';
const missing = process.getuid?.() !== 0 ? 'needs root' : !existsSync(BUS) ? `no system bus at ${BUS}` : undefined;

if (missing) {
  describe('LibvirtClient contract: libvirt-dbus', () => {
    it.skip(`skipped: ${missing}`, () => {});
  });
} else {
  describeLibvirtClientContract('libvirt-dbus', () =>
    createLibvirtClient({ busAddress: `unix:path=${BUS}`, logger: createLogger({ level: process.env.NODEVIRT_LOG_LEVEL ? undefined : 'warn' }) }),
  );
}

// End to end through the daemon process: a VM with cloudInit userData/metaData boots the test guest, which
// finds the NoCloud seed the daemon built and prints the hostname, instance-id and user-data hash it read.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_CMDLINE, GUEST_OUT } from '../guest/paths.js';
import { startDaemon, type DaemonProcess } from './helpers/daemon-process.js';
import { deleteVm, openSerial, putVm, runId, startVm, waitForLibvirt, waitForPhase, type SerialConsole } from './helpers/vm-api.js';

const BOOT_MS = 120_000;
const why =
  process.getuid?.() !== 0 ? 'needs root' : existsSync(join(GUEST_OUT, 'vmlinuz')) ? undefined : `no test guest in ${GUEST_OUT} (test/guest/build.sh)`;

describe.skipIf(why !== undefined)(`cloud-init NoCloud seed through the daemon${why ? ` (skipped: ${why})` : ''}`, () => {
  const id = runId();
  const vm = `e2eci-${id}`;
  let daemon: DaemonProcess | undefined;
  let serial: SerialConsole | undefined;

  beforeAll(async () => {
    daemon = await startDaemon();
    await waitForLibvirt(daemon);
  }, 60_000);

  afterAll(async () => {
    serial?.close();
    if (daemon) {
      await deleteVm(daemon, vm).catch((e) => console.warn(`cleanup: ${e}`));
      await daemon.remove();
    }
  }, 120_000);

  it('the guest reads hostname and instance-id from the seed and prints them, with the user-data it got', async () => {
    const d = daemon!;
    const hostname = `ci-host-${id}`;
    const instanceId = `iid-${id}`;
    // Quotes and a comment: the seed must carry the documents byte for byte, not re-rendered.
    const metaData = `instance-id: "${instanceId}"\nlocal-hostname: ${hostname}\n# written by vm-e2e-cloud-init\n`;
    const userData = `#cloud-config\nruncmd:\n  - echo hello ${id}\n`;
    await putVm(d, vm, {
      memory: 128,
      cloudInit: { userData, metaData },
      // No NICs: the guest then skips DHCP and finishes at once; it powers off after NODEVIRT-GUEST-DONE.
      kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz'), cmdline: GUEST_CMDLINE },
    });
    const started = await startVm(d, vm);
    serial = await openSerial(started.status.domain);
    const line = await serial.waitFor(/NODEVIRT-CLOUDINIT /, BOOT_MS);
    expect(line).toContain(`instance-id=${instanceId} `);
    expect(line).toContain(`hostname=${hostname} `);
    expect(line).toMatch(new RegExp(`userdata-sha256=${createHash('sha256').update(userData).digest('hex')}$`));
    await serial.waitFor(/NODEVIRT-GUEST-DONE/, BOOT_MS);
    // The guest powered itself off: the daemon sees the domain off.
    await waitForPhase(d, vm, 'Stopped', 60_000);
  }, 240_000);
});

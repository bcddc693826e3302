// Boots the test guest (test/guest) through the real libvirt client: direct kernel boot under TCG, serial
// console on a unix socket, READY marker read over node:net, started/stopped events observed.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';

import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSerialOnce } from './helpers/serial.js';
import { createLibvirtClient } from '../../daemon/libvirt/client.js';
import { createLogger } from '../../daemon/lib/logger.js';
import type { LibvirtClient } from '../../daemon/libvirt/types.js';
import { cleanupTestDomains, EventLog, ev } from '../contract/libvirt-client.contract.js';
import { testDomainName, testDomainXml } from '../contract/test-domain.js';
import { GUEST_CMDLINE, GUEST_OUT } from '../guest/paths.js';

const BUS = '/run/dbus/system_bus_socket';
const GUEST = resolve('test/guest');
const OUT = GUEST_OUT;
const SERIAL_DIR = '/run/nodevirt';
// Wide on purpose: two shared cores under TCG; the measured time is logged and reported separately.
const READY_TIMEOUT_MS = 60_000;

const missing =
  process.getuid?.() !== 0
    ? 'needs root'
    : !existsSync(BUS)
      ? `no system bus at ${BUS}`
      : !existsSync(join(GUEST, 'build.sh'))
        ? 'test/guest/build.sh is missing'
        : undefined;

const logger = createLogger({ level: process.env.NODEVIRT_LOG_LEVEL ? undefined : 'warn' });

/** Connects to the console socket and resolves with everything read once `marker` appears. */

describe.skipIf(missing !== undefined)(`guest boot through the libvirt client${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let client: LibvirtClient;
  const log = new EventLog();
  const names: string[] = [];

  beforeAll(async () => {
    // Cached: a no-change run is a hash check.
    execFileSync('bash', [join(GUEST, 'build.sh')], { stdio: 'pipe' });
    mkdirSync(SERIAL_DIR, { recursive: true });
    client = createLibvirtClient({ busAddress: `unix:path=${BUS}`, logger });
    client.on('domain', log.listener);
    await client.start();
    await client.waitForConnection(10_000);
  });

  afterAll(async () => {
    if (!client) return;
    await cleanupTestDomains(client, names);
    await client.stop();
    for (const n of names) rmSync(join(SERIAL_DIR, `${n}.serial`), { force: true });
  });

  it('boots to NODEVIRT-GUEST-READY on the serial socket, then stops on destroy', async () => {
    const name = testDomainName('boot');
    names.push(name);
    const serial = join(SERIAL_DIR, `${name}.serial`);
    const xml = testDomainXml({
      name,
      memoryMiB: 256,
      machine: 'pc',
      kernel: { path: join(OUT, 'vmlinuz'), initrd: join(OUT, 'initramfs.gz'), cmdline: `${GUEST_CMDLINE} nodevirt.stay=1` },
      serialSocket: serial,
    });

    const t0 = performance.now();
    const info = await client.createDomain(xml);
    expect(info).toMatchObject({ name, active: true, persistent: false, state: 'running' });
    const started = await log.waitFor(ev(name, 'started', 'booted'), 'started/booted');
    expect(started.uuid).toBe(info.uuid);

    // mode='bind': libvirt/QEMU listen on the path; output before we connect would be lost, and the
    // kernel takes seconds to reach init, so connecting right after create is early enough.
    const consoleText = await readSerialOnce(serial, /NODEVIRT-GUEST-READY/, READY_TIMEOUT_MS);
    const bootMs = Math.round(performance.now() - t0);
    console.info(`test guest: createDomain -> NODEVIRT-GUEST-READY in ${bootMs} ms`);
    // The Foundation issue's budget: under 30 s per boot here (measured ~10 s, so a 3x margin).
    expect(bootMs).toBeLessThan(30_000);

    const release = readFileSync(join(OUT, 'kernel-release'), 'utf8').trim();
    expect(consoleText).toMatch(new RegExp(`NODEVIRT-GUEST-BOOT kernel=${release.replace(/\./g, '\\.')}\\b`));
    expect(consoleText.indexOf('NODEVIRT-GUEST-BOOT')).toBeLessThan(consoleText.indexOf('NODEVIRT-GUEST-READY'));
    expect((await client.getDomainState(name)).state).toBe('running');

    await client.destroyDomain(name);
    const stopped = await log.waitFor(ev(name, 'stopped', 'destroyed'), 'stopped/destroyed');
    expect(stopped.uuid).toBe(info.uuid);
    expect(await client.lookupDomain(name)).toBeUndefined();
  }, READY_TIMEOUT_MS + 30_000);
});

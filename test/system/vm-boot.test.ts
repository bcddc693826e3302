// End to end for the VM foundations: the test guest booted through the real libvirt client (TCG, direct kernel
// boot) from buildDomainXml, with seeds from storage/cloud-init.ts on a CD-ROM or an overlay disk, BIOS and UEFI.
import { createHash, randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSerialOnce } from './helpers/serial.js';
import { createLibvirtClient } from '../../daemon/libvirt/client.js';
import { createLogger } from '../../daemon/lib/logger.js';
import { child, parseXml } from '../../daemon/libvirt/xml.js';
import type { LibvirtClient } from '../../daemon/libvirt/types.js';
import { emulatorFromCapabilities } from '../../daemon/node/node-service.js';
import { seedFiles, writeSeedIso } from '../../daemon/storage/cloud-init.js';
import { createImageStore } from '../../daemon/storage/images.js';
import { createPathGuard } from '../../daemon/storage/paths.js';
import { createQemuImg } from '../../daemon/storage/qemu-img.js';
import { buildDomainXml } from '../../daemon/vm/domain-xml.js';
import { findOvmf } from '../../daemon/vm/firmware.js';
import { tapName } from '../../daemon/net/names.js';
import { validateVmSpec, type VmSpec } from '../../daemon/vm/vm-model.js';
import { cleanupTestDomains } from '../contract/libvirt-client.contract.js';
import { testDomainName } from '../contract/test-domain.js';
import { GUEST_CMDLINE, GUEST_OUT } from '../guest/paths.js';

const BUS = '/run/dbus/system_bus_socket';
const GUEST = resolve('test/guest');
const RUN_DIR = '/run/nodevirt';
// Wide on purpose: two shared cores under TCG (READY is ~10 s when idle).
const BOOT_TIMEOUT_MS = 90_000;

const hasXorriso = (() => {
  try {
    execFileSync('xorriso', ['-version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const missing =
  process.getuid?.() !== 0 ? 'needs root' : !existsSync(BUS) ? `no system bus at ${BUS}` : !hasXorriso ? 'xorriso is not installed' : undefined;


describe.skipIf(missing !== undefined)(`cloud-init seed read by the test guest${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let client: LibvirtClient;
  let work: string;
  const names: string[] = [];

  beforeAll(async () => {
    execFileSync('bash', [join(GUEST, 'build.sh')], { stdio: 'pipe' });
    mkdirSync(RUN_DIR, { recursive: true });
    // Outside /root (mode 0700) and world-readable: libvirt's qemu user opens the ISO.
    work = mkdtempSync('/var/tmp/nvtest-seed-');
    chmodSync(work, 0o755);
    client = createLibvirtClient({ busAddress: `unix:path=${BUS}`, logger: createLogger({ level: 'warn' }) });
    await client.start();
    await client.waitForConnection(10_000);
  });

  afterAll(async () => {
    if (client) {
      await cleanupTestDomains(client, names);
      await client.stop();
    }
    if (work) rmSync(work, { recursive: true, force: true });
    for (const n of names) rmSync(join(RUN_DIR, `${n}.serial`), { force: true });
  });

  it('boots with the seed as a CD-ROM, prints the instance id, hostname and user-data hash, and serves VNC on its socket', async () => {
    const name = testDomainName('seed');
    names.push(name);
    const uuid = randomUUID();
    const spec: VmSpec = {
      name: 'seeded-guest',
      memory: 256,
      machine: 'q35',
      runStrategy: 'Manual',
      cloudInit: { userData: '#cloud-config\nruncmd: [echo "<&>"]\n' },
      kernelBoot: { kernel: 'vmlinuz', initrd: 'initramfs.gz', cmdline: `${GUEST_CMDLINE} nodevirt.stay=1` },
    };
    expect(validateVmSpec(spec, { cpus: 2, memoryMiB: 1024 })).toEqual([]);

    const files = seedFiles(spec, [], uuid);
    const iso = join(work, 'seed.iso');
    await writeSeedIso(files, iso);
    const label = execFileSync('xorriso', ['-indev', iso, '-pvd_info'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    expect(label).toMatch(/Volume Id\s*:\s*cidata/);

    const serial = join(RUN_DIR, `${name}.serial`);
    // QEMU binds the VNC socket itself as libvirt's qemu user, so its directory must be that user's.
    const vncDir = join(work, 'vnc');
    mkdirSync(vncDir);
    const qemuUser = execFileSync('id', ['-u', 'libvirt-qemu'], { encoding: 'utf8' }).trim();
    chownSync(vncDir, Number(qemuUser), 0);
    const xml = buildDomainXml(spec, {
      domainName: name,
      uuid,
      virtType: 'qemu',
      emulator: emulatorFromCapabilities(await client.getCapabilities()) ?? '/usr/bin/qemu-system-x86_64',
      generation: 1,
      disks: {},
      nics: [],
      serialSocket: serial,
      vncSocket: join(vncDir, 'vnc.sock'),
      cloudInitIso: iso,
      kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz') },
    });

    const t0 = performance.now();
    await client.createDomain(xml);
    const text = await readSerialOnce(serial, /NODEVIRT-GUEST-READY/, BOOT_TIMEOUT_MS);
    console.info(`seeded guest: createDomain -> READY in ${Math.round(performance.now() - t0)} ms`);
    const line = text.split('\n').find((l) => l.includes('NODEVIRT-CLOUDINIT'));
    expect(line, `no NODEVIRT-CLOUDINIT line in:\n${text}`).toBeDefined();
    const sha = createHash('sha256').update(spec.cloudInit!.userData!).digest('hex');
    expect(line!.slice(line!.indexOf('NODEVIRT-CLOUDINIT')).trim()).toMatch(
      new RegExp(`^NODEVIRT-CLOUDINIT device=\\w+ instance-id=${uuid} hostname=seeded-guest userdata-sha256=${sha}$`),
    );

    // The VNC server greets with its RFB version on the unix socket.
    const vnc = createConnection(join(vncDir, 'vnc.sock'));
    const greeting = await new Promise<string>((ok, fail) => {
      vnc.once('data', (c: Buffer) => ok(c.toString('latin1')));
      vnc.once('error', fail);
    }).finally(() => vnc.destroy());
    expect(greeting).toMatch(/^RFB 003\.\d{3}\n/);
    await client.destroyDomain(name);
  }, BOOT_TIMEOUT_MS + 30_000);

  it('boots a pc guest whose seed is a virtio disk: a qcow2 overlay made by the image store on the seed ISO', async () => {
    const name = testDomainName('ovl');
    names.push(name);
    const uuid = randomUUID();
    const spec: VmSpec = {
      name: 'overlay-guest',
      memory: 256,
      machine: 'pc',
      disks: [{ name: 'seed', image: { name: 'seed' }, bootOrder: 1 }],
      kernelBoot: { kernel: 'vmlinuz', initrd: 'initramfs.gz', cmdline: GUEST_CMDLINE },
    };
    expect(validateVmSpec(spec, { cpus: 2, memoryMiB: 1024 })).toEqual([]);
    const root = join(work, 'root');
    mkdirSync(join(root, 'images'), { recursive: true });
    await writeSeedIso(seedFiles(spec, [], uuid), join(root, 'images', 'seed.iso'));
    const images = createImageStore({ qemuImg: createQemuImg(), guard: createPathGuard({ roots: [root] }) });
    const overlay = await images.createOverlay('images/seed.iso', `overlays/${name}-seed.qcow2`);
    expect(overlay.backingChain).toEqual([{ path: join(root, 'images', 'seed.iso'), format: 'raw' }]);
    chmodSync(overlay.path, 0o644);
    const baseSha = () => createHash('sha256').update(readFileSync(join(root, 'images', 'seed.iso'))).digest('hex');
    const before = baseSha();
    chmodSync(join(root, 'overlays'), 0o755);

    const serial = join(RUN_DIR, `${name}.serial`);
    const xml = buildDomainXml(spec, {
      domainName: name,
      uuid,
      virtType: 'qemu',
      emulator: emulatorFromCapabilities(await client.getCapabilities()) ?? '/usr/bin/qemu-system-x86_64',
      generation: 1,
      disks: { seed: { path: overlay.path, format: overlay.format } },
      nics: [],
      serialSocket: serial,
      kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz') },
    });
    // Persistent this time, the way the reconciler will run VMs: define, then start.
    await client.defineDomain(xml);
    await client.startDomain(name);
    const text = await readSerialOnce(serial, /NODEVIRT-GUEST-DONE/, BOOT_TIMEOUT_MS);
    expect(text).toMatch(new RegExp(`NODEVIRT-CLOUDINIT device=vda instance-id=${uuid} hostname=overlay-guest `));
    // The base image stays byte-identical: the guest only writes to the overlay.
    expect(baseSha()).toBe(before);
    await client.destroyDomain(name).catch(() => undefined);
    await client.undefineDomain(name);
    expect(await client.lookupDomain(name)).toBeUndefined();
  }, BOOT_TIMEOUT_MS + 30_000);

  const ovmf = findOvmf();
  it.skipIf(!ovmf)(`boots under UEFI (OVMF) with the seed on a CD-ROM${ovmf ? '' : ' (skipped: OVMF is not installed; apt-get install ovmf)'}`, async () => {
    const name = testDomainName('uefi');
    names.push(name);
    const uuid = randomUUID();
    const spec: VmSpec = {
      name: 'uefi-guest',
      memory: 256,
      firmware: 'uefi',
      kernelBoot: { kernel: 'vmlinuz', initrd: 'initramfs.gz', cmdline: GUEST_CMDLINE },
    };
    const iso = join(work, `${name}.iso`);
    await writeSeedIso(seedFiles(spec, [], uuid), iso);
    const serial = join(RUN_DIR, `${name}.serial`);
    const xml = buildDomainXml(spec, {
      domainName: name,
      uuid,
      virtType: 'qemu',
      emulator: emulatorFromCapabilities(await client.getCapabilities()) ?? '/usr/bin/qemu-system-x86_64',
      generation: 1,
      disks: {},
      nics: [],
      serialSocket: serial,
      cloudInitIso: iso,
      ovmf: ovmf!,
      kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz') },
    });
    await client.defineDomain(xml);
    const t0 = performance.now();
    await client.startDomain(name);
    const text = await readSerialOnce(serial, /NODEVIRT-GUEST-DONE/, BOOT_TIMEOUT_MS);
    console.info(`uefi guest: start -> DONE in ${Math.round(performance.now() - t0)} ms`);
    expect(text).toMatch(new RegExp(`NODEVIRT-CLOUDINIT device=sr0 instance-id=${uuid} hostname=uefi-guest `));
    const defined = parseXml(await client.getDomainXml(name, { inactive: true }));
    const os = child(defined, 'os')!;
    expect(child(os, 'loader')!.text).toBe(ovmf!.code);
    const nvram = child(os, 'nvram')!.text;
    expect(existsSync(nvram), `libvirt's NVRAM copy ${nvram}`).toBe(true);
    await client.destroyDomain(name).catch(() => undefined);
    // Undefine also removes the NVRAM copy libvirt made from the template.
    await client.undefineDomain(name);
    expect(await client.lookupDomain(name)).toBeUndefined();
    expect(existsSync(nvram)).toBe(false);
  }, BOOT_TIMEOUT_MS + 30_000);

  it('attaches a NIC to a tap we created (ethernet, managed=no): the guest sees our MAC and its frames reach the tap', async () => {
    const name = testDomainName('nic');
    names.push(name);
    const tap = tapName(name, 'net0');
    const mac = '0e:00:00:7e:57:01';
    execFileSync('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    try {
      execFileSync('ip', ['link', 'set', tap, 'up']);
      const spec: VmSpec = {
        name: 'nic-guest',
        memory: 256,
        interfaces: [{ network: 'lan', model: 'virtio' }],
        // No DHCP server on the tap: a short timeout makes the guest report failure quickly.
        kernelBoot: { kernel: 'vmlinuz', initrd: 'initramfs.gz', cmdline: `${GUEST_CMDLINE} nodevirt.dhcp_timeout=3` },
      };
      const serial = join(RUN_DIR, `${name}.serial`);
      const xml = buildDomainXml(spec, {
        domainName: name,
        uuid: randomUUID(),
        virtType: 'qemu',
        emulator: emulatorFromCapabilities(await client.getCapabilities()) ?? '/usr/bin/qemu-system-x86_64',
        generation: 1,
        disks: {},
        nics: [{ tap, mac, model: 'virtio' }],
        serialSocket: serial,
        kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz') },
      });
      await client.createDomain(xml);
      const text = await readSerialOnce(serial, /NODEVIRT-GUEST-DONE/, BOOT_TIMEOUT_MS);
      expect(text).toMatch(new RegExp(`NODEVIRT-DHCP iface=eth0 mac=${mac} status=fail`));
      // The guest's DHCP discovers came out of QEMU into our tap.
      expect(Number(readFileSync(`/sys/class/net/${tap}/statistics/rx_packets`, 'utf8'))).toBeGreaterThan(0);
      await client.destroyDomain(name).catch(() => undefined);
      // managed='no': libvirt leaves our tap alone when the domain ends.
      expect(existsSync(`/sys/class/net/${tap}`)).toBe(true);
    } finally {
      execFileSync('ip', ['link', 'del', tap], { stdio: 'ignore' });
    }
  }, BOOT_TIMEOUT_MS + 30_000);
});

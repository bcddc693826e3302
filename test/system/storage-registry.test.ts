// The image registry and image-backed VM disks with the real qemu-img (imports over a loopback HTTP server and
// from local files, hostile images refused, overlays and grown volumes on registry images) and, as root with
// libvirt, one boot of the test guest whose only disk is an overlay on a registry image, plus a registry CD-ROM.
import { createHash, randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLibvirtClient } from '../../daemon/libvirt/client.js';
import type { LibvirtClient } from '../../daemon/libvirt/types.js';
import { createLogger } from '../../daemon/lib/logger.js';
import { isAppError } from '../../daemon/lib/errors.js';
import { emulatorFromCapabilities } from '../../daemon/node/node-service.js';
import { createOperations } from '../../daemon/ops/operations.js';
import type { OperationView, Operations } from '../../daemon/ops/types.js';
import { seedFiles, writeSeedIso } from '../../daemon/storage/cloud-init.js';
import { createImageRegistry, type ImageRecord, type ImageRegistry } from '../../daemon/storage/image-registry.js';
import { createImageStore } from '../../daemon/storage/images.js';
import { createPathGuard } from '../../daemon/storage/paths.js';
import { createQemuImg } from '../../daemon/storage/qemu-img.js';
import { buildDomainXml } from '../../daemon/vm/domain-xml.js';
import { createVmDisks, diskImages, type VmDisks } from '../../daemon/vm/vm-disks.js';
import { validateVmSpec, type VmSpec } from '../../daemon/vm/vm-model.js';
import { cleanupTestDomains } from '../contract/libvirt-client.contract.js';
import { testDomainName } from '../contract/test-domain.js';
import { GUEST_CMDLINE, GUEST_OUT } from '../guest/paths.js';
import { serve, startByteServer, type ByteServer } from '../unit/storage/image-helpers.js';
import { readSerialOnce } from './helpers/serial.js';

const has = (bin: string, arg: string): boolean => {
  try {
    execFileSync(bin, [arg], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const hasQemuImg = has('qemu-img', '--version');
const MiB = 2 ** 20;
const qi = (...args: string[]): string => execFileSync('qemu-img', args, { encoding: 'utf8' });
const info = (p: string) => JSON.parse(qi('info', '--output=json', '-U', p)) as Record<string, unknown>;
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

let work: string;
let root: string;
let http: ByteServer;
let ops: Operations;
let registry: ImageRegistry;
let disks: VmDisks;
const users = new Map<string, string[]>();

async function imported(view: OperationView): Promise<OperationView> {
  return ops.wait(view.id, 60_000);
}

// File-level so both suites share one registry; nothing runs without qemu-img.
beforeAll(async () => {
  if (!hasQemuImg) return;
  // Under /var/tmp and traversable: the boot below has libvirt's qemu user open these files.
  work = mkdtempSync('/var/tmp/nvtest-img-');
  chmodSync(work, 0o755);
  root = join(work, 'root');
  mkdirSync(join(root, 'uploads'), { recursive: true });
  chmodSync(root, 0o755);
  const src = join(work, 'src');
  mkdirSync(src);
  // A qcow2 with data in it (written through qemu-img from a raw pattern), a vmdk, and a raw file.
  const raw = Buffer.alloc(4 * MiB);
  for (let i = 0; i < raw.length; i += 65536) raw.write(`NODEVIRT-${i}`, i);
  writeFileSync(join(src, 'pattern.raw'), raw);
  qi('convert', '-q', '-f', 'raw', '-O', 'qcow2', join(src, 'pattern.raw'), join(src, 'pattern.qcow2'));
  qi('convert', '-q', '-f', 'raw', '-O', 'vmdk', join(src, 'pattern.raw'), join(src, 'pattern.vmdk'));
  writeFileSync(join(root, 'uploads', 'pattern.raw'), raw);
  // A qcow2 whose header points at a backing file (inside the roots, still refused: images must stand alone).
  qi('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', join(root, 'uploads', 'pattern.raw'), join(root, 'uploads', 'child.qcow2'));
  http = await startByteServer();
  for (const f of ['pattern.qcow2', 'pattern.vmdk']) http.route(`/${f}`, serve(readFileSync(join(src, f))));
  ops = createOperations();
  const guard = createPathGuard({ roots: [root] });
  const store = createImageStore({ qemuImg: createQemuImg(), guard });
  const kv = new Map<string, unknown>();
  registry = createImageRegistry({
    // The registry's persistence is covered by the unit tests over the real store; a map keeps this test self-contained.
    store: {
      sublevel: <V>() => ({
        get: async (k: string) => kv.get(k) as V | undefined,
        put: async (k: string, v: V) => void kv.set(k, v),
        del: async (k: string) => void kv.delete(k),
        list: async () => [...kv.entries()] as Array<[string, V]>,
        batch: async () => {
          throw new Error('unused');
        },
      }),
    },
    images: store,
    guard,
    dir: join(root, 'images'),
    ops,
    usedBy: async (n) => users.get(n) ?? [],
  });
  await registry.start();
  disks = createVmDisks({ guard, images: diskImages(store, registry), vmDir: join(root, 'vms') });
});

afterAll(async () => {
  await http?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(!hasQemuImg)(`image registry with the real qemu-img${hasQemuImg ? '' : ' (skipped: qemu-img is not installed)'}`, () => {

  it('imports a qcow2 over http and a raw file from a storage root, as qemu-img sees them', async () => {
    const q = await imported(await registry.import({ name: 'pattern-q', source: { url: http.url('/pattern.qcow2') } }));
    expect(q.status, JSON.stringify(q.error)).toBe('succeeded');
    const rec = q.result as ImageRecord;
    expect(rec).toMatchObject({ format: 'qcow2', virtualSize: 4 * MiB, path: join(root, 'images', 'pattern-q.qcow2') });
    expect(rec.sha256).toBe(sha(rec.path));
    expect(info(rec.path)).toMatchObject({ format: 'qcow2', 'virtual-size': 4 * MiB });
    const r = await imported(await registry.import({ name: 'pattern-r', source: { path: 'uploads/pattern.raw' }, sha256: sha(join(root, 'uploads', 'pattern.raw')) }));
    expect(r.result).toMatchObject({ format: 'raw', virtualSize: 4 * MiB });
    // Same guest-visible bytes through both formats.
    qi('compare', '-q', '-f', 'qcow2', '-F', 'raw', rec.path, (r.result as ImageRecord).path);
  });

  it('refuses a vmdk and a qcow2 with a backing file, leaving nothing in the image directory', async () => {
    const before = readdirSync(join(root, 'images')).sort();
    const vmdk = await imported(await registry.import({ name: 'vm-dk', source: { url: http.url('/pattern.vmdk') } }));
    expect(vmdk.error).toMatchObject({ code: 'IMAGE_INVALID', message: expect.stringMatching(/vmdk is not supported/) });
    const child = await imported(await registry.import({ name: 'child', source: { path: 'uploads/child.qcow2' } }));
    expect(child.error).toMatchObject({ code: 'IMAGE_INVALID', message: expect.stringMatching(/backing file/) });
    expect(readdirSync(join(root, 'images')).sort()).toEqual(before);
    expect(await registry.find('vm-dk')).toBeUndefined();
    expect(await registry.find('child')).toBeUndefined();
  });

  it('an image disk is a qcow2 overlay on the registry file; a fromImage volume is a standalone copy grown to its size', async () => {
    const spec: VmSpec = {
      name: 'img',
      memory: 64,
      disks: [
        { name: 'root', image: { name: 'pattern-q' } },
        { name: 'data', volume: { fromImage: 'pattern-r', sizeBytes: 16 * MiB } },
        { name: 'cd', cdrom: { image: 'pattern-r' } },
      ],
    };
    expect(await disks.check(spec)).toEqual([]);
    const r = await disks.resolve('img', spec, false);
    const overlay = info(r.disks.root!.path);
    expect(overlay).toMatchObject({ format: 'qcow2', 'backing-filename': join(root, 'images', 'pattern-q.qcow2'), 'backing-filename-format': 'qcow2' });
    qi('compare', '-q', '-f', 'qcow2', '-F', 'raw', r.disks.root!.path, join(root, 'uploads', 'pattern.raw'));
    const vol = info(r.disks.data!.path);
    expect(vol).toMatchObject({ format: 'qcow2', 'virtual-size': 16 * MiB });
    expect(vol['backing-filename']).toBeUndefined();
    // The copy holds the image's bytes; the grown tail reads as zeros (qemu-img compare's non-strict mode).
    qi('compare', '-q', '-f', 'qcow2', '-F', 'raw', r.disks.data!.path, join(root, 'uploads', 'pattern.raw'));
    expect(r.disks.cd).toEqual({ path: join(root, 'images', 'pattern-r.raw'), format: 'raw' });
    // A VM using it blocks the delete; the per-VM files go with the VM, the registry file stays.
    users.set('pattern-q', ['img']);
    expect(isAppError(await registry.delete('pattern-q').catch((e: unknown) => e), 'IMAGE_IN_USE')).toBe(true);
    await disks.remove('img', false);
    users.delete('pattern-q');
    expect(existsSync(join(root, 'vms', 'img'))).toBe(false);
    expect(existsSync(join(root, 'images', 'pattern-q.qcow2'))).toBe(true);
  });
});

const BUS = '/run/dbus/system_bus_socket';
const RUN_DIR = '/run/nodevirt';
const BOOT_TIMEOUT_MS = 90_000;
const bootMissing =
  !hasQemuImg ? 'qemu-img is not installed'
  : process.getuid?.() !== 0 ? 'needs root'
  : !existsSync(BUS) ? `no system bus at ${BUS}`
  : !has('xorriso', '-version') ? 'xorriso is not installed'
  : undefined;

describe.skipIf(bootMissing !== undefined)(`a guest booted from a registry image${bootMissing ? ` (skipped: ${bootMissing})` : ''}`, () => {
  let client: LibvirtClient;
  const names: string[] = [];

  beforeAll(async () => {
    execFileSync('bash', [resolve('test/guest/build.sh')], { stdio: 'pipe' });
    mkdirSync(RUN_DIR, { recursive: true });
    client = createLibvirtClient({ busAddress: `unix:path=${BUS}`, logger: createLogger({ level: 'warn' }) });
    await client.start();
    await client.waitForConnection(10_000);
  });

  afterAll(async () => {
    if (client) {
      await cleanupTestDomains(client, names);
      await client.stop();
    }
    for (const n of names) rmSync(join(RUN_DIR, `${n}.serial`), { force: true });
  });

  it('boots with its only disk an overlay on an imported seed image and a registry image as CD-ROM; the base stays unchanged', async () => {
    const name = testDomainName('img');
    names.push(name);
    const uuid = randomUUID();
    const vmName = `regboot-${uuid.slice(0, 6)}`;
    const spec: VmSpec = {
      name: vmName,
      memory: 256,
      machine: 'pc',
      disks: [
        { name: 'root', image: { name: 'seed' }, bootOrder: 1 },
        { name: 'cd', cdrom: { image: 'boot-cd' } },
      ],
      kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz'), cmdline: GUEST_CMDLINE },
    };
    expect(validateVmSpec(spec, { cpus: 2, memoryMiB: 1024 })).toEqual([]);
    // The NoCloud seed is the image: the guest reads instance-id from whatever disk carries the cidata label.
    const iso = join(root, 'uploads', 'seed.iso');
    await writeSeedIso(seedFiles(spec, [], uuid), iso);
    const seed = await imported(await registry.import({ name: 'seed', source: { path: iso }, sha256: sha(iso) }));
    expect(seed.result).toMatchObject({ format: 'raw' });
    const base = (seed.result as ImageRecord).path;
    const cd = await imported(await registry.import({ name: 'boot-cd', source: { path: 'uploads/pattern.raw' } }));
    expect(cd.status).toBe('succeeded');
    const baseSha = sha(base);

    // The kernel lives in the guest cache, outside this test's storage root: resolved here, not by vm-disks.
    const { kernelBoot: _kernel, ...withoutKernel } = spec;
    const { disks: resolved } = await disks.resolve(vmName, withoutKernel, false);
    const serial = join(RUN_DIR, `${name}.serial`);
    const xml = buildDomainXml(spec, {
      domainName: name,
      uuid,
      virtType: 'qemu',
      emulator: emulatorFromCapabilities(await client.getCapabilities()) ?? '/usr/bin/qemu-system-x86_64',
      generation: 1,
      disks: resolved,
      nics: [],
      serialSocket: serial,
      kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz') },
    });
    const t0 = performance.now();
    await client.defineDomain(xml);
    await client.startDomain(name);
    const text = await readSerialOnce(serial, /NODEVIRT-GUEST-DONE/, BOOT_TIMEOUT_MS);
    console.info(`registry-image guest: start -> DONE in ${Math.round(performance.now() - t0)} ms`);
    expect(text).toMatch(new RegExp(`NODEVIRT-CLOUDINIT device=vda instance-id=${uuid} hostname=${vmName} `));

    // libvirt opened the overlay with the registry image as its backing store, and the CD-ROM read-only.
    const live = await client.getDomainXml(name);
    const overlay = join(root, 'vms', vmName, 'root.overlay.qcow2');
    expect(live).toContain(`<source file='${overlay}'`);
    expect(live).toMatch(new RegExp(`<backingStore type='file'[^>]*>\\s*<format type='raw'/>\\s*<source file='${base}'`));
    expect(live).toMatch(new RegExp(`<disk type='file' device='cdrom'>[\\s\\S]*?<source file='${join(root, 'images', 'boot-cd.raw')}'[\\s\\S]*?<readonly/>`));

    await client.destroyDomain(name).catch(() => undefined);
    await client.undefineDomain(name);
    expect(sha(base)).toBe(baseSha);
    users.set('seed', [vmName]);
    expect(isAppError(await registry.delete('seed').catch((e: unknown) => e), 'IMAGE_IN_USE')).toBe(true);
    await disks.remove(vmName, false);
    users.delete('seed');
    await registry.delete('seed');
    expect(existsSync(base)).toBe(false);
  }, BOOT_TIMEOUT_MS + 60_000);
});

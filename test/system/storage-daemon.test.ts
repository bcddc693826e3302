// Images through the compiled daemon's API: an import from a loopback HTTP server as an operation, a VM PUT
// naming an unknown image refused with a pointer into its disk, a started VM whose disk is an overlay on the
// image (libvirt opens it; boot under /tmp/guest.lock), the image held while the VM exists, and leftovers of
// an interrupted import swept at daemon start.
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_CMDLINE, GUEST_OUT } from '../guest/paths.js';
import { serve, startByteServer, type ByteServer } from '../unit/storage/image-helpers.js';
import { DAEMON_MAIN, startDaemon, type DaemonProcess } from './helpers/daemon-process.js';

const hasQemuImg = (() => {
  try {
    execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const missing =
  process.getuid?.() !== 0 ? 'needs root'
  : !existsSync('/run/dbus/system_bus_socket') ? 'no system bus'
  : !hasQemuImg ? 'qemu-img is not installed'
  : !existsSync(DAEMON_MAIN) ? 'dist/ is not built (npx tsc -p tsconfig.json)'
  : undefined;

const MiB = 2 ** 20;
const BOOT_TIMEOUT_MS = 120_000;

describe.skipIf(missing !== undefined)(`images through the daemon${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let d: DaemonProcess;
  let http: ByteServer;
  let src: string;
  const id = randomBytes(3).toString('hex');
  const image = `img-${id}`;
  const vm = `imgvm-${id}`;
  let qcowSha: string;

  beforeAll(async () => {
    execFileSync('bash', ['test/guest/build.sh'], { stdio: 'pipe' });
    src = mkdtempSync(join(tmpdir(), 'nv-img-src-'));
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(src, 'disk.qcow2'), String(64 * MiB)]);
    const bytes = readFileSync(join(src, 'disk.qcow2'));
    qcowSha = createHash('sha256').update(bytes).digest('hex');
    http = await startByteServer();
    http.route('/disk.qcow2', serve(bytes));
    // The helper makes its dir 0711: libvirt reads a qcow2 overlay's header as the qemu user.
    d = await startDaemon();
  });

  afterAll(async () => {
    for (const args of [['destroy', `nodevirt-${vm}`], ['undefine', `nodevirt-${vm}`, '--nvram']]) {
      try {
        execFileSync('virsh', ['-c', 'qemu:///system', ...args], { stdio: 'ignore' });
      } catch {
        // not there: nothing to clean
      }
    }
    await d?.remove();
    await http?.close();
    if (src) rmSync(src, { recursive: true, force: true });
  });

  it('imports over http, refuses a VM naming an unknown image, runs a VM on an overlay, holds the image while the VM exists', async () => {
    const imp = await d.api('POST', '/v1/images?wait=60', { name: image, source: { url: http.url('/disk.qcow2') }, sha256: qcowSha }, 90_000);
    expect(imp.status, JSON.stringify(imp.body)).toBe(200);
    const imagesDir = join(d.stateDir, 'storage', 'images');
    expect(imp.body).toMatchObject({ status: 'succeeded', kind: 'image.import', result: { name: image, format: 'qcow2', virtualSize: 64 * MiB, sha256: qcowSha, path: join(imagesDir, `${image}.qcow2`) } });
    expect(((await d.api('GET', '/v1/images')).body as { items: Array<{ name: string }> }).items.map((i) => i.name)).toEqual([image]);

    const spec = (img: string) => ({
      name: vm,
      memory: 256,
      disks: [{ name: 'root', image: { name: img } }],
      kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz'), cmdline: GUEST_CMDLINE },
    });
    const unknown = await d.api('PUT', `/v1/vms/${vm}`, spec(`nope-${id}`));
    expect(unknown.status).toBe(400);
    expect(unknown.body).toMatchObject({ code: 'VM_SPEC_INVALID', errors: [{ pointer: expect.stringMatching(/\/disks\/0\/image\/name$/) }] });

    const put = await d.api('PUT', `/v1/vms/${vm}`, spec(image));
    expect(put.status, JSON.stringify(put.body)).toBe(201);
    const start = await d.api('POST', `/v1/vms/${vm}/start?wait=120`, undefined, BOOT_TIMEOUT_MS + 10_000);
    expect(start.status, JSON.stringify(start.body)).toBe(200);
    const overlay = join(d.stateDir, 'storage', 'vms', vm, 'root.overlay.qcow2');
    const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', overlay], { encoding: 'utf8' })) as Record<string, unknown>;
    expect(info).toMatchObject({ format: 'qcow2', 'backing-filename': join(imagesDir, `${image}.qcow2`), 'backing-filename-format': 'qcow2' });
    const live = execFileSync('virsh', ['-c', 'qemu:///system', 'dumpxml', `nodevirt-${vm}`], { encoding: 'utf8' });
    expect(live).toContain(`<source file='${overlay}'`);
    expect(live).toContain(`<source file='${join(imagesDir, `${image}.qcow2`)}'`);

    const held = await d.api('DELETE', `/v1/images/${image}`);
    expect(held.status).toBe(409);
    expect(held.body).toMatchObject({ code: 'IMAGE_IN_USE', detail: expect.stringContaining(vm) });

    expect((await d.api('DELETE', `/v1/vms/${vm}?keepDisks=true`, undefined, 60_000)).status).toBe(204);
    // The overlay is ephemeral: it goes with the VM even when disks are kept.
    expect(existsSync(overlay)).toBe(false);
    expect((await d.api('DELETE', `/v1/images/${image}`)).status).toBe(204);
    expect(readdirSync(imagesDir)).toEqual([]);
  }, BOOT_TIMEOUT_MS + 60_000);

  it('a daemon start sweeps what an interrupted import left and keeps recorded images', async () => {
    const imp = await d.api('POST', '/v1/images?wait=60', { name: `keep-${id}`, source: { url: http.url('/disk.qcow2') } }, 90_000);
    expect(imp.status).toBe(200);
    await d.stop('SIGKILL');
    const imagesDir = join(d.stateDir, 'storage', 'images');
    writeFileSync(join(imagesDir, `.import-crashed-${id}-0123456789ab`), 'half a download');
    writeFileSync(join(imagesDir, `orphan-${id}.raw`), 'renamed but never recorded');
    await d.start();
    expect(readdirSync(imagesDir)).toEqual([`keep-${id}.qcow2`]);
    expect((await d.api('GET', `/v1/images/keep-${id}`)).status).toBe(200);
  }, 60_000);
});

// Images and volumes with the real qemu-img on small temp files: format detection, overlays, empty and copied
// volumes, and hostile images (backing files outside the roots, protocol backings, external data files, links).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError, type ErrorCode } from '../../daemon/lib/errors.js';
import { createImageStore, type ImageStore } from '../../daemon/storage/images.js';
import { createPathGuard } from '../../daemon/storage/paths.js';
import { createQemuImg, type QemuImg } from '../../daemon/storage/qemu-img.js';

const hasQemuImg = (() => {
  try {
    execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const MiB = 1 << 20;
let tmp: string;
let root: string;
let outside: string;
let store: ImageStore;
let qemuImg: QemuImg;

const qi = (...args: string[]): string => execFileSync('qemu-img', args, { encoding: 'utf8' });

async function rejects(p: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(isAppError(err, code), `expected ${code}, got ${String(err)}`).toBe(true);
  if (message) expect((err as Error).message).toMatch(message);
}

describe.skipIf(!hasQemuImg)(`images with the real qemu-img${hasQemuImg ? '' : ' (skipped: qemu-img is not installed)'}`, () => {
  beforeAll(() => {
    tmp = realpathSync(mkdtempSync(join(tmpdir(), 'nv-images-')));
    root = join(tmp, 'root');
    outside = join(tmp, 'outside');
    mkdirSync(join(root, 'images'), { recursive: true });
    mkdirSync(outside);
    // A raw image with a recognisable pattern, and a qcow2 made from it.
    const raw = Buffer.alloc(2 * MiB);
    raw.write('NODEVIRT-PATTERN', 4096);
    writeFileSync(join(root, 'images', 'pattern.raw'), raw);
    qi('convert', '-f', 'raw', '-O', 'qcow2', join(root, 'images', 'pattern.raw'), join(root, 'images', 'pattern.qcow2'));
    writeFileSync(join(outside, 'secret.raw'), Buffer.alloc(MiB, 7));
    qemuImg = createQemuImg();
    store = createImageStore({ qemuImg, guard: createPathGuard({ roots: [root] }) });
  });

  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('detects raw and qcow2 with their virtual sizes', async () => {
    expect(await store.inspect('images/pattern.raw')).toMatchObject({ format: 'raw', virtualSize: 2 * MiB, backingChain: [] });
    expect(await store.inspect(join(root, 'images/pattern.qcow2'))).toMatchObject({ format: 'qcow2', virtualSize: 2 * MiB, backingChain: [] });
  });

  it('creates a qcow2 overlay with an absolute backing path and explicit format', async () => {
    const facts = await store.createOverlay('images/pattern.raw', 'overlays/vm1-root.qcow2');
    expect(facts).toMatchObject({ format: 'qcow2', virtualSize: 2 * MiB, backingChain: [{ path: join(root, 'images/pattern.raw'), format: 'raw' }] });
    const info = JSON.parse(qi('info', '--output=json', join(root, 'overlays/vm1-root.qcow2'))) as Record<string, unknown>;
    expect(info['backing-filename']).toBe(join(root, 'images/pattern.raw'));
    expect(info['backing-filename-format']).toBe('raw');
    // The guest sees the base's bytes through the overlay.
    qi('compare', '-f', 'qcow2', '-F', 'raw', join(root, 'overlays/vm1-root.qcow2'), join(root, 'images/pattern.raw'));
    // An overlay on an overlay keeps the whole confined chain.
    const second = await store.createOverlay('overlays/vm1-root.qcow2', 'overlays/vm1-snap.qcow2');
    expect(second.backingChain.map((b) => b.format)).toEqual(['qcow2', 'raw']);
    expect(readdirSync(join(root, 'overlays')).filter((f) => f.includes('.partial-'))).toEqual([]);
  });

  it('creates an empty volume at a size and copies an image into a standalone volume with progress', async () => {
    expect(await store.createEmptyVolume('volumes/empty.qcow2', 64 * MiB)).toMatchObject({ format: 'qcow2', virtualSize: 64 * MiB, backingChain: [] });
    expect(await store.createEmptyVolume('volumes/empty.raw', 3 * MiB, 'raw')).toMatchObject({ format: 'raw', virtualSize: 3 * MiB });
    const progress: number[] = [];
    const copy = await store.copyToVolume('images/pattern.qcow2', 'volumes/copy.qcow2', { onProgress: (p) => progress.push(p) });
    expect(copy).toMatchObject({ format: 'qcow2', virtualSize: 2 * MiB, backingChain: [] });
    qi('compare', '-f', 'qcow2', '-F', 'raw', join(root, 'volumes/copy.qcow2'), join(root, 'images/pattern.raw'));
    expect(progress.at(-1)).toBe(100);
  });

  it('never overwrites and never writes outside the roots', async () => {
    await rejects(store.createEmptyVolume('volumes/empty.qcow2', MiB), 'CONFLICT');
    await rejects(store.createEmptyVolume(join(outside, 'v.qcow2'), MiB), 'PATH_INVALID');
    await rejects(store.copyToVolume('images/pattern.raw', '../outside/v.qcow2'), 'PATH_INVALID');
    symlinkSync(outside, join(root, 'evil-dir'));
    await rejects(store.createOverlay('images/pattern.raw', 'evil-dir/o.qcow2'), 'PATH_INVALID');
    symlinkSync(join(outside, 'secret.raw'), join(root, 'images', 'evil-link.raw'));
    await rejects(store.inspect('images/evil-link.raw'), 'PATH_INVALID');
    expect(readdirSync(outside)).toEqual(['secret.raw']);
  });

  it('refuses a qcow2 whose backing file is outside the roots, even as a relative path', async () => {
    qi('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', join(outside, 'secret.raw'), join(root, 'images', 'hostile-abs.qcow2'));
    await rejects(store.inspect('images/hostile-abs.qcow2'), 'IMAGE_INVALID', /outside the storage roots/);
    qi('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', '../../outside/secret.raw', join(root, 'images', 'hostile-rel.qcow2'));
    await rejects(store.inspect('images/hostile-rel.qcow2'), 'IMAGE_INVALID', /outside the storage roots/);
    // Neither can be used as the base of an overlay.
    await rejects(store.createOverlay('images/hostile-abs.qcow2', 'overlays/x.qcow2'), 'IMAGE_INVALID');
    // A raw file that carries such a qcow2 header is detected as that qcow2 and refused the same way.
    execFileSync('cp', [join(root, 'images', 'hostile-abs.qcow2'), join(root, 'images', 'disguised.raw')]);
    await rejects(store.inspect('images/disguised.raw'), 'IMAGE_INVALID');
  });

  it('refuses protocol backings, external data files and unsupported formats', async () => {
    qi('create', '-q', '-f', 'qcow2', '-u', '-F', 'raw', '-b', 'nbd://127.0.0.1:10809/x', join(root, 'images', 'nbd.qcow2'), '1M');
    await rejects(store.inspect('images/nbd.qcow2'), 'IMAGE_INVALID', /not a plain file path/);
    qi('create', '-q', '-f', 'qcow2', '-o', `data_file=${join(outside, 'data.raw')}`, join(root, 'images', 'datafile.qcow2'), '1M');
    await rejects(store.inspect('images/datafile.qcow2'), 'IMAGE_INVALID', /external data files/);
    qi('create', '-q', '-f', 'vmdk', join(root, 'images', 'disk.vmdk'), '1M');
    await rejects(store.inspect('images/disk.vmdk'), 'IMAGE_INVALID', /vmdk is not supported/);
    // qcow2 magic followed by nonsense: qemu-img cannot open it, so neither do we.
    writeFileSync(join(root, 'images', 'garbage.qcow2'), Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb]), Buffer.from(' garbage')]));
    await rejects(store.inspect('images/garbage.qcow2'), 'IMAGE_INVALID');
  });

  it('refuses a backing file without a recorded format (qemu would probe it)', async () => {
    // qemu-img 7.2 no longer writes such images; the header of older ones is what this reproduces.
    const legacy = createImageStore({
      qemuImg: { ...qemuImg, info: async () => ({ format: 'qcow2', virtualSize: MiB, actualSize: 0, encrypted: false, backingFilename: join(root, 'images/pattern.raw'), fullBackingFilename: join(root, 'images/pattern.raw'), backingFormat: undefined, dataFile: undefined }) },
      guard: createPathGuard({ roots: [root] }),
    });
    await rejects(legacy.inspect('images/pattern.qcow2'), 'IMAGE_INVALID', /without a recorded format/);
  });
});

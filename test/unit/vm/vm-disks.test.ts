// VM disk sources over a stateful image-store fake on a real temp dir: PUT checks are registry lookups only
// (no file operations), overlays are made once and re-made for another image, volumes are copied from an image
// once and kept, CD-ROMs are the registry file, and delete keeps volumes but never overlays with keepDisks.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError, isAppError } from '../../../daemon/lib/errors.js';
import type { ImageRecord } from '../../../daemon/storage/image-registry.js';
import type { ImageFacts, ImageStore } from '../../../daemon/storage/images.js';
import { createPathGuard } from '../../../daemon/storage/paths.js';
import { createVmDisks, diskImages, imagesOf } from '../../../daemon/vm/vm-disks.js';
import type { VmSpec } from '../../../daemon/vm/vm-model.js';

let tmp: string;
let root: string;
const GiB = 2 ** 30;

beforeAll(() => {
  tmp = realpathSync(mkdtempSync(join(tmpdir(), 'nv-vmdisks-')));
  root = join(tmp, 'root');
  mkdirSync(join(root, 'images'), { recursive: true });
  for (const f of ['deb.qcow2', 'alp.raw', 'tools.raw']) writeFileSync(join(root, 'images', f), f);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Files it makes hold their facts as JSON, so inspect reads back what create wrote; every call is counted. */
function fakeStore() {
  const calls: string[] = [];
  const write = (path: string, facts: Omit<ImageFacts, 'path'>): ImageFacts => {
    writeFileSync(path, JSON.stringify(facts));
    return { path, ...facts };
  };
  const store: ImageStore = {
    async inspect(path) {
      calls.push(`inspect ${path}`);
      if (!existsSync(path)) throw new AppError('IMAGE_INVALID', `${path}: No such file`);
      const text = readFileSync(path, 'utf8');
      return text.startsWith('{') ? { path, ...(JSON.parse(text) as Omit<ImageFacts, 'path'>) } : { path, format: 'raw', virtualSize: 1 << 20, actualSize: undefined, backingChain: [] };
    },
    async createOverlay(base, overlay) {
      calls.push(`overlay ${overlay} on ${base}`);
      return write(overlay, { format: 'qcow2', virtualSize: GiB, actualSize: 0, backingChain: [{ path: base, format: 'qcow2' }] });
    },
    async createEmptyVolume(path, size, format = 'qcow2') {
      calls.push(`empty ${path} ${size}`);
      return write(path, { format, virtualSize: size, actualSize: 0, backingChain: [] });
    },
    async copyToVolume(image, volume, opts = {}) {
      calls.push(`copy ${image} -> ${volume} ${opts.sizeBytes ?? '-'}`);
      return write(volume, { format: 'qcow2', virtualSize: opts.sizeBytes ?? GiB, actualSize: 0, backingChain: [] });
    },
  };
  return { store, calls };
}

function setup() {
  const records = new Map<string, ImageRecord>();
  const rec = (name: string, file: string, format: 'raw' | 'qcow2', virtualSize: number) =>
    records.set(name, { name, format, virtualSize, actualSize: 1, sha256: '0'.repeat(64), source: { path: file }, path: join(root, 'images', file), createdAt: '2026-01-01T00:00:00.000Z' });
  rec('deb', 'deb.qcow2', 'qcow2', 2 * GiB);
  rec('alp', 'alp.raw', 'raw', GiB);
  rec('tools', 'tools.raw', 'raw', 4 << 20);
  const lookups: string[] = [];
  const { store, calls } = fakeStore();
  const vmDir = join(root, `vms-${Math.random().toString(36).slice(2, 8)}`);
  const disks = createVmDisks({
    guard: createPathGuard({ roots: [root] }),
    images: diskImages(store, { find: async (n) => (lookups.push(n), records.get(n)) }),
    vmDir,
  });
  return { disks, records, calls, lookups, vmDir };
}

const spec = (disks: VmSpec['disks']): VmSpec => ({ name: 'web', memory: 128, disks });

describe('check at PUT', () => {
  it('without a registry, image-based sources are refused at /disks/i', async () => {
    const { store } = fakeStore();
    const disks = createVmDisks({ guard: createPathGuard({ roots: [root] }), images: { inspect: store.inspect, createEmptyVolume: store.createEmptyVolume }, vmDir: join(root, 'v') });
    const issues = await disks.check(spec([{ name: 'a', image: { name: 'deb' } }, { name: 'b', cdrom: { image: 'tools' } }, { name: 'c', volume: { fromImage: 'alp' } }, { name: 'd', volume: { sizeBytes: 1 << 20 } }]));
    expect(issues.map((i) => i.pointer)).toEqual(['/disks/0', '/disks/1', '/disks/2']);
  });

  it('unknown images are refused with a pointer into the disk; known ones pass with registry lookups only', async () => {
    const { disks, calls, lookups } = setup();
    const issues = await disks.check(spec([{ name: 'a', image: { name: 'nope' } }, { name: 'b', cdrom: { image: 'gone' } }, { name: 'c', volume: { fromImage: 'missing' } }, { name: 'd', image: { name: 'deb' } }]));
    expect(issues).toEqual([
      { pointer: '/disks/0/image/name', reason: expect.stringContaining('no image named nope') },
      { pointer: '/disks/1/cdrom/image', reason: expect.stringContaining('no image named gone') },
      { pointer: '/disks/2/volume/fromImage', reason: expect.stringContaining('no image named missing') },
    ]);
    expect(await disks.check(spec([{ name: 'a', image: { name: 'deb' } }, { name: 'b', cdrom: { image: 'tools' }, bus: 'sata' }, { name: 'c', volume: { fromImage: 'alp', sizeBytes: 2 * GiB } }]))).toEqual([]);
    expect(lookups).toEqual(['nope', 'gone', 'missing', 'deb', 'deb', 'tools', 'alp']);
    expect(calls).toEqual([]);
  });

  it('a volume copied from an image cannot be smaller than the image', async () => {
    const { disks } = setup();
    expect(await disks.check(spec([{ name: 'c', volume: { fromImage: 'alp', sizeBytes: GiB / 2 } }]))).toEqual([
      { pointer: '/disks/0/volume/sizeBytes', reason: expect.stringContaining(`${GiB} bytes`) },
    ]);
  });
});

describe('resolve at start', () => {
  it('a dry run names the files without creating or inspecting anything', async () => {
    const { disks, calls, vmDir } = setup();
    const r = await disks.resolve('web', spec([{ name: 'root', image: { name: 'deb' } }, { name: 'data', volume: { fromImage: 'alp' } }, { name: 'cd', cdrom: { image: 'tools' } }]), true);
    expect(r.disks).toEqual({
      root: { path: join(vmDir, 'web', 'root.overlay.qcow2'), format: 'qcow2' },
      data: { path: join(vmDir, 'web', 'data.qcow2'), format: 'qcow2' },
      cd: { path: join(root, 'images', 'tools.raw'), format: 'raw' },
    });
    expect(calls).toEqual([]);
    expect(existsSync(vmDir)).toBe(false);
  });

  it('an image disk gets one overlay, kept across starts and re-made when the spec names another image', async () => {
    const { disks, calls, vmDir } = setup();
    const overlay = join(vmDir, 'web', 'root.overlay.qcow2');
    const first = await disks.resolve('web', spec([{ name: 'root', image: { name: 'deb' } }]), false);
    expect(first.disks.root).toEqual({ path: overlay, format: 'qcow2' });
    await disks.resolve('web', spec([{ name: 'root', image: { name: 'deb' } }]), false);
    expect(calls.filter((c) => c.startsWith('overlay'))).toEqual([`overlay ${overlay} on ${join(root, 'images', 'deb.qcow2')}`]);
    await disks.resolve('web', spec([{ name: 'root', image: { name: 'alp' } }]), false);
    expect(calls.filter((c) => c.startsWith('overlay'))).toEqual([
      `overlay ${overlay} on ${join(root, 'images', 'deb.qcow2')}`,
      `overlay ${overlay} on ${join(root, 'images', 'alp.raw')}`,
    ]);
  });

  it('a volume from an image is copied once (grown to sizeBytes) and then kept whatever fromImage says', async () => {
    const { disks, calls, vmDir } = setup();
    const vol = join(vmDir, 'web', 'data.qcow2');
    const r = await disks.resolve('web', spec([{ name: 'data', volume: { fromImage: 'alp', sizeBytes: 3 * GiB } }]), false);
    expect(r.disks.data).toEqual({ path: vol, format: 'qcow2' });
    await disks.resolve('web', spec([{ name: 'data', volume: { fromImage: 'deb' } }]), false);
    expect(calls.filter((c) => c.startsWith('copy'))).toEqual([`copy ${join(root, 'images', 'alp.raw')} -> ${vol} ${3 * GiB}`]);
  });

  it('a cdrom is the registry file itself; an image deleted after PUT fails the start with IMAGE_NOT_FOUND', async () => {
    const { disks, records } = setup();
    const r = await disks.resolve('web', spec([{ name: 'cd', cdrom: { image: 'tools' } }]), false);
    expect(r.disks.cd).toEqual({ path: join(root, 'images', 'tools.raw'), format: 'raw' });
    records.delete('deb');
    const e = await disks.resolve('web', spec([{ name: 'root', image: { name: 'deb' } }]), false).then(() => undefined, (x: unknown) => x);
    expect(isAppError(e, 'IMAGE_NOT_FOUND')).toBe(true);
  });
});

describe('remove at delete', () => {
  it('keepDisks keeps volumes and drops the seed and overlays; without it the directory goes', async () => {
    const { disks, vmDir } = setup();
    const s = spec([{ name: 'root', image: { name: 'deb' } }, { name: 'data', volume: { sizeBytes: 1 << 20 } }]);
    await disks.resolve('web', s, false);
    writeFileSync(join(vmDir, 'web', 'seed.iso'), 'seed');
    expect(readdirSync(join(vmDir, 'web')).sort()).toEqual(['data.qcow2', 'root.overlay.qcow2', 'seed.iso']);
    await disks.remove('web', true);
    expect(readdirSync(join(vmDir, 'web'))).toEqual(['data.qcow2']);
    await disks.remove('web', false);
    expect(existsSync(join(vmDir, 'web'))).toBe(false);
    await disks.remove('never-existed', true);
  });
});

it('imagesOf lists each registry image a spec names once', () => {
  expect(imagesOf(spec([{ name: 'a', image: { name: 'deb' } }, { name: 'b', cdrom: { image: 'tools' } }, { name: 'c', volume: { fromImage: 'deb' } }, { name: 'd', host: { path: 'x' } }]))).toEqual(['deb', 'tools']);
  expect(imagesOf({})).toEqual([]);
});

// Image and disk files inside the storage roots: inspect an image (raw or qcow2, refusing headers that point
// outside the roots), create a qcow2 overlay on it, an empty volume, or a volume copied from it.
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, rename, rm } from 'node:fs/promises';
import { dirname, isAbsolute } from 'node:path';
import { AppError } from '../lib/errors.js';
import type { PathGuard } from './paths.js';
import type { ImageFormat, QemuImg } from './qemu-img.js';

export interface ImageFacts {
  /** Real path inside a root. */
  path: string;
  format: ImageFormat;
  virtualSize: number;
  actualSize: number | undefined;
  /** The confined backing chain, nearest first (empty for standalone images). */
  backingChain: Array<{ path: string; format: ImageFormat }>;
}

export interface ImageStore {
  inspect(path: string): Promise<ImageFacts>;
  /** A new qcow2 overlay at `overlayPath` on the image at `basePath`; returns the overlay's facts. */
  createOverlay(basePath: string, overlayPath: string): Promise<ImageFacts>;
  createEmptyVolume(path: string, sizeBytes: number, format?: ImageFormat): Promise<ImageFacts>;
  /**
   * Copies (and converts) an image into a new standalone volume (no backing file), grown to `sizeBytes` when
   * that is larger than the image; the volume appears under its name only once complete.
   */
  copyToVolume(imagePath: string, volumePath: string, opts?: { format?: ImageFormat; sizeBytes?: number; onProgress?: (percent: number) => void }): Promise<ImageFacts>;
}

/** Deeper chains are legitimate but rare; a bound stops a crafted loop of headers. */
const MAX_CHAIN = 8;
/** Protocol prefixes (nbd:, http:, json:{...}) would make qemu open network or arbitrary block nodes. */
const PROTOCOL_RE = /^[A-Za-z][A-Za-z0-9+.-]*:/;

function asFormat(f: string, path: string): ImageFormat {
  if (f === 'raw' || f === 'qcow2') return f;
  throw new AppError('IMAGE_INVALID', `${path}: format ${f} is not supported (raw or qcow2)`);
}

export function createImageStore(deps: { qemuImg: QemuImg; guard: PathGuard }): ImageStore {
  const { qemuImg, guard } = deps;

  async function inspect(input: string, depth = 0, format?: ImageFormat): Promise<ImageFacts> {
    const path = await guard.resolve(input);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isFile()) throw new AppError('IMAGE_INVALID', `${input}: not a regular file`);
    const info = await qemuImg.info(path, format ? { format } : {});
    const fmt = asFormat(info.format, input);
    if (info.encrypted) throw new AppError('IMAGE_INVALID', `${input}: encrypted images are not supported`);
    if (info.dataFile !== undefined) throw new AppError('IMAGE_INVALID', `${input}: qcow2 external data files are not supported`);
    const facts: ImageFacts = { path, format: fmt, virtualSize: info.virtualSize, actualSize: info.actualSize, backingChain: [] };
    if (info.backingFilename === undefined) return facts;

    const backing = info.fullBackingFilename ?? info.backingFilename;
    if (depth + 1 >= MAX_CHAIN) throw new AppError('IMAGE_INVALID', `${input}: backing chain deeper than ${MAX_CHAIN}`);
    if (PROTOCOL_RE.test(info.backingFilename) || PROTOCOL_RE.test(backing) || !isAbsolute(backing)) {
      throw new AppError('IMAGE_INVALID', `${input}: backing file ${JSON.stringify(info.backingFilename)} is not a plain file path`);
    }
    // Without a recorded format qemu would probe the backing file: a raw file could then pose as qcow2.
    if (info.backingFormat === undefined) throw new AppError('IMAGE_INVALID', `${input}: backing file without a recorded format`);
    const backingFormat = asFormat(info.backingFormat, backing);
    let parent: ImageFacts;
    try {
      parent = await inspect(backing, depth + 1, backingFormat);
    } catch (e) {
      if (e instanceof AppError && e.code === 'PATH_INVALID') {
        throw new AppError('IMAGE_INVALID', `${input}: backing file ${JSON.stringify(backing)} is outside the storage roots`, { cause: e });
      }
      throw e;
    }
    facts.backingChain = [{ path: parent.path, format: parent.format }, ...parent.backingChain];
    return facts;
  }

  /** Confines a destination that must not exist yet and makes its directory. */
  async function freshTarget(input: string): Promise<string> {
    const path = await guard.resolve(input);
    if (await lstat(path).then(() => true, () => false)) throw new AppError('CONFLICT', `${input} already exists`);
    await mkdir(dirname(path), { recursive: true });
    return path;
  }

  /** Writes through a temporary name so a crash never leaves a half-written file under the final name. */
  async function atomically(path: string, write: (tmp: string) => Promise<void>): Promise<void> {
    const tmp = `${path}.partial-${randomBytes(4).toString('hex')}`;
    try {
      await write(tmp);
      await rename(tmp, path);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }

  return {
    inspect: (p) => inspect(p),
    async createOverlay(basePath, overlayPath) {
      const base = await inspect(basePath);
      const path = await freshTarget(overlayPath);
      await atomically(path, (tmp) => qemuImg.createOverlay(tmp, { path: base.path, format: base.format }));
      return inspect(path);
    },
    async createEmptyVolume(input, sizeBytes, format = 'qcow2') {
      if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new AppError('VM_SPEC_INVALID', `volume size ${sizeBytes} is not a positive integer`);
      const path = await freshTarget(input);
      await atomically(path, (tmp) => qemuImg.create(tmp, format, sizeBytes));
      return inspect(path);
    },
    async copyToVolume(imagePath, volumePath, opts = {}) {
      const image = await inspect(imagePath);
      const path = await freshTarget(volumePath);
      const format = opts.format ?? 'qcow2';
      if (opts.sizeBytes !== undefined && opts.sizeBytes < image.virtualSize) {
        throw new AppError('VM_SPEC_INVALID', `volume size ${opts.sizeBytes} is smaller than the image (${image.virtualSize} bytes)`);
      }
      await atomically(path, async (tmp) => {
        await qemuImg.convert({ path: image.path, format: image.format }, { path: tmp, format }, opts.onProgress);
        if (opts.sizeBytes !== undefined && opts.sizeBytes > image.virtualSize) await qemuImg.resize(tmp, format, opts.sizeBytes);
      });
      return inspect(path);
    },
  };
}

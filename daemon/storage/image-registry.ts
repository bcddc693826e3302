// The image registry: named raw/qcow2 images under <storage root>/images, imported from an http(s) URL or a
// file inside a storage root as an async operation (streamed, hashed, checked, then renamed into place).
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, lstat, mkdir, readdir, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { AppError, errorMessage, isAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { OperationContext, OperationView, Operations } from '../ops/types.js';
import type { KeySpace, Store } from '../store/store.js';
import type { ImageStore } from './images.js';
import type { PathGuard } from './paths.js';
import type { ImageFormat } from './qemu-img.js';

export type ImageSource = { url: string } | { path: string };

export interface ImageRecord {
  name: string;
  format: ImageFormat;
  virtualSize: number;
  /** Bytes the file takes on disk (sparse files take less than their length). */
  actualSize: number;
  /** Of the file's bytes as imported (lowercase hex). */
  sha256: string;
  /** Where it came from; URL credentials (user:password@) are not kept. */
  source: ImageSource;
  /** Absolute path of the image file. */
  path: string;
  createdAt: string;
}

export interface ImageImportRequest {
  name: string;
  source: ImageSource;
  sha256?: string;
}

export interface ImageRegistryDeps {
  store: Pick<Store, 'sublevel'>;
  images: Pick<ImageStore, 'inspect'>;
  /** Confines local sources (and the registry directory) to the storage roots. */
  guard: PathGuard;
  /** Where image files live: <storage root>/images. */
  dir: string;
  ops: Pick<Operations, 'run'>;
  /** VMs whose spec names the image; DELETE is refused while this is not empty. */
  usedBy: (name: string) => Promise<string[]>;
  fetch?: typeof fetch;
  /** A download that delivers no byte for this long fails. Default 60 s. */
  idleTimeoutMs?: number;
  logger?: Logger;
  now?: () => Date;
}

export interface ImageRegistry {
  /** Removes what an interrupted import or delete left in the directory (temp files, files without a record). */
  start(): Promise<void>;
  list(): Promise<ImageRecord[]>;
  /** Throws IMAGE_NOT_FOUND. */
  get(name: string): Promise<ImageRecord>;
  /** A store lookup only (no file access): what VM spec checks use at PUT. */
  find(name: string): Promise<ImageRecord | undefined>;
  /**
   * Checks the request now (name free, URL scheme, local path confined and a regular file) and throws on a
   * problem; then starts the import as an operation of kind 'image.import' and returns its view.
   */
  import(req: ImageImportRequest): Promise<OperationView>;
  /** Throws IMAGE_NOT_FOUND, or IMAGE_IN_USE naming the VMs. */
  delete(name: string): Promise<void>;
}

const TEMP_PREFIX = '.import-';
const IMAGE_FILE_RE = /^([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)\.(raw|qcow2)$/;
const SHA256_RE = /^[0-9a-fA-F]{64}$/;
const MiB = 2 ** 20;
/** Progress goes up to this while bytes arrive; the rest is the qemu-img check and the rename. */
const COPY_SHARE = 95;

const mib = (n: number): string => (n / MiB).toFixed(n < 10 * MiB ? 1 : 0);

/** The URL as recorded: without credentials. */
function recordedUrl(u: URL): string {
  const c = new URL(u.href);
  c.username = '';
  c.password = '';
  return c.href;
}

export function createImageRegistry(deps: ImageRegistryDeps): ImageRegistry {
  const records: KeySpace<ImageRecord> = deps.store.sublevel<ImageRecord>('images');
  const log = deps.logger?.child({ component: 'images' });
  const now = () => (deps.now ?? (() => new Date()))().toISOString();
  const fetchFn = deps.fetch ?? fetch;
  const idleTimeoutMs = deps.idleTimeoutMs ?? 60_000;
  /** Names being imported: reserved so a second import or a delete of the same name is refused at once. */
  const importing = new Set<string>();

  const get = async (name: string): Promise<ImageRecord> => {
    const r = await records.get(name);
    if (!r) throw new AppError('IMAGE_NOT_FOUND', `no image named ${name}`, { extra: { name } });
    return r;
  };

  /** Parses the source; a URL must be http(s), a path must be a regular file inside a storage root. */
  async function checkSource(source: ImageSource): Promise<{ url: URL } | { path: string; size: number }> {
    if ('url' in source) {
      let url: URL;
      try {
        url = new URL(source.url);
      } catch {
        throw new AppError('IMAGE_SOURCE_INVALID', `${JSON.stringify(source.url)} is not a URL`, { issues: [{ pointer: '/body/source/url', reason: 'must be an absolute http(s) URL' }] });
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new AppError('IMAGE_SOURCE_INVALID', `URL scheme ${url.protocol} is not allowed (http or https)`, { issues: [{ pointer: '/body/source/url', reason: 'must be an http or https URL' }] });
      }
      return { url };
    }
    const path = await deps.guard.resolve(source.path);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isFile()) throw new AppError('IMAGE_SOURCE_INVALID', `${source.path} is not a regular file`, { issues: [{ pointer: '/body/source/path', reason: 'must be an existing regular file' }] });
    return { path, size: st.size };
  }

  /** The source's bytes and their length when known; a non-2xx answer is a failed download. */
  async function open(src: { url: URL } | { path: string; size: number }, signal: AbortSignal): Promise<{ stream: Readable; total: number | undefined }> {
    if ('path' in src) return { stream: createReadStream(src.path), total: src.size };
    let res: Response;
    try {
      // fetch refuses URLs with credentials: they travel as a Basic Authorization header instead.
      const headers: Record<string, string> = {};
      if (src.url.username || src.url.password) {
        const user = decodeURIComponent(src.url.username);
        headers.authorization = `Basic ${Buffer.from(`${user}:${decodeURIComponent(src.url.password)}`).toString('base64')}`;
      }
      res = await fetchFn(recordedUrl(src.url), { signal, redirect: 'follow', headers });
    } catch (e) {
      if (signal.aborted) throw e;
      throw new AppError('IMAGE_DOWNLOAD_FAILED', `${recordedUrl(src.url)}: ${errorMessage((e as { cause?: unknown }).cause ?? e)}`, { cause: e });
    }
    if (!res.ok || res.body === null) {
      await res.body?.cancel().catch(() => undefined);
      throw new AppError('IMAGE_DOWNLOAD_FAILED', `${recordedUrl(src.url)} answered HTTP ${res.status}`, { extra: { httpStatus: res.status } });
    }
    const len = Number(res.headers.get('content-length') ?? NaN);
    return { stream: Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), total: Number.isSafeInteger(len) && len >= 0 ? len : undefined };
  }

  async function importWork(req: ImageImportRequest, src: { url: URL } | { path: string; size: number }, ctx: OperationContext): Promise<ImageRecord> {
    const tmp = join(deps.dir, `${TEMP_PREFIX}${req.name}-${randomBytes(6).toString('hex')}`);
    let placed: string | undefined;
    // Idle watchdog: a server that stops sending would otherwise hold the operation (and the name) forever.
    const idle = new AbortController();
    let idleTimer: NodeJS.Timeout | undefined;
    const kick = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => idle.abort(new AppError('IMAGE_DOWNLOAD_FAILED', `no data for ${idleTimeoutMs} ms`)), idleTimeoutMs);
    };
    const signal = AbortSignal.any([ctx.signal, idle.signal]);
    try {
      kick();
      const { stream, total } = await open(src, signal);
      if (total !== undefined) {
        const fs = await statfs(deps.dir);
        const free = fs.bavail * fs.bsize;
        if (total > free) {
          stream.destroy();
          throw new AppError('HOST_ERROR', `the image needs ${mib(total)} MiB but ${deps.dir} has ${mib(free)} MiB free`);
        }
      }
      const hash = createHash('sha256');
      let bytes = 0;
      let lastReport = 0;
      const meter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          kick();
          bytes += chunk.length;
          if (total !== undefined && bytes > total) return cb(new AppError('IMAGE_DOWNLOAD_FAILED', `the source sent more than the ${total} bytes it announced`));
          hash.update(chunk);
          const t = Date.now();
          if (t - lastReport >= 200) {
            lastReport = t;
            ctx.progress(total ? (COPY_SHARE * bytes) / total : 0, total ? `copied ${mib(bytes)} of ${mib(total)} MiB` : `copied ${mib(bytes)} MiB`);
          }
          cb(null, chunk);
        },
      });
      try {
        // 'wx': never follows or replaces anything already at the temp name.
        await pipeline(stream, meter, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }), { signal });
      } catch (e) {
        if (ctx.signal.aborted) throw e;
        if (idle.signal.aborted) throw idle.signal.reason;
        if (isAppError(e)) throw e;
        throw new AppError('IMAGE_DOWNLOAD_FAILED', `reading the source failed: ${errorMessage(e)}`, { cause: e });
      }
      clearTimeout(idleTimer);
      if (total !== undefined && bytes !== total) throw new AppError('IMAGE_DOWNLOAD_FAILED', `the source ended after ${bytes} of ${total} bytes`);
      const sha256 = hash.digest('hex');
      if (req.sha256 !== undefined && sha256 !== req.sha256.toLowerCase()) {
        throw new AppError('IMAGE_CHECKSUM_MISMATCH', `sha256 of the imported bytes is ${sha256}, not ${req.sha256.toLowerCase()}`, { extra: { expected: req.sha256.toLowerCase(), actual: sha256 } });
      }
      ctx.progress(COPY_SHARE, 'checking the image with qemu-img');
      ctx.signal.throwIfAborted();
      const facts = await deps.images.inspect(tmp);
      // A registry image must stand alone: a backing file could be deleted or swapped under every VM using it.
      if (facts.backingChain.length > 0) throw new AppError('IMAGE_INVALID', `the image has a backing file (${facts.backingChain[0]!.path}); import a standalone image (qemu-img convert)`);
      ctx.signal.throwIfAborted();
      const path = join(deps.dir, `${req.name}.${facts.format}`);
      // link() + unlink instead of rename(): fails with EEXIST rather than replacing a file already there.
      await link(tmp, path).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'EEXIST') throw new AppError('IMAGE_EXISTS', `${path} already exists`);
        throw e;
      });
      placed = path;
      const st = await lstat(path);
      const record: ImageRecord = {
        name: req.name,
        format: facts.format,
        virtualSize: facts.virtualSize,
        actualSize: facts.actualSize ?? st.blocks * 512,
        sha256,
        source: 'url' in src ? { url: recordedUrl(src.url) } : { path: src.path },
        path,
        createdAt: now(),
      };
      await records.put(req.name, record);
      placed = undefined;
      ctx.progress(100, 'imported');
      log?.info({ image: req.name, format: record.format, virtualSize: record.virtualSize, bytes }, 'image imported');
      return record;
    } finally {
      clearTimeout(idleTimer);
      await rm(tmp, { force: true });
      if (placed !== undefined) await rm(placed, { force: true });
    }
  }

  return {
    async start() {
      await mkdir(deps.dir, { recursive: true, mode: 0o711 });
      const known = new Set((await records.list()).map(([, r]) => r.path));
      for (const f of await readdir(deps.dir)) {
        const p = join(deps.dir, f);
        // The directory is the registry's own: a temp file is an interrupted import, an image file without a
        // record one whose record was never written (crash between rename and put) or whose delete stopped halfway.
        if (f.startsWith(TEMP_PREFIX) || (IMAGE_FILE_RE.test(f) && !known.has(p))) {
          log?.warn({ file: p }, 'removing a leftover of an interrupted image import or delete');
          await rm(p, { force: true });
        }
      }
      for (const path of known) {
        if (!(await lstat(path).then((s) => s.isFile(), () => false))) log?.warn({ file: path }, 'an image file recorded in the registry is missing');
      }
    },

    async list() {
      return (await records.list()).map(([, r]) => r).sort((a, b) => a.name.localeCompare(b.name));
    },

    get,

    find: (name) => records.get(name),

    async import(req) {
      if (req.sha256 !== undefined && !SHA256_RE.test(req.sha256)) {
        throw new AppError('IMAGE_SOURCE_INVALID', 'sha256 must be 64 hex digits', { issues: [{ pointer: '/body/sha256', reason: 'must be 64 hex digits' }] });
      }
      // Reserved before the first await, so two concurrent imports of one name cannot both pass.
      if (importing.has(req.name)) throw new AppError('IMAGE_EXISTS', `image ${req.name} is being imported`, { extra: { name: req.name } });
      importing.add(req.name);
      try {
        if (await records.get(req.name)) throw new AppError('IMAGE_EXISTS', `image ${req.name} exists`, { extra: { name: req.name } });
        const src = await checkSource(req.source);
        await mkdir(deps.dir, { recursive: true, mode: 0o711 });
        return deps.ops.run('image.import', `images/${req.name}`, (ctx) => importWork(req, src, ctx).finally(() => importing.delete(req.name)));
      } catch (e) {
        importing.delete(req.name);
        throw e;
      }
    },

    async delete(name) {
      const r = await get(name);
      const users = await deps.usedBy(name);
      if (users.length) throw new AppError('IMAGE_IN_USE', `image ${name} is used by VM(s) ${users.join(', ')}`, { extra: { name, vms: users } });
      // Record first: once it is gone no new VM can use the image; a file left by a crash here is swept at start.
      await records.del(name);
      await rm(r.path, { force: true });
      log?.info({ image: name }, 'image deleted');
    },
  };
}

// Thin adapter over the qemu-img binary: info (JSON, parsed into a typed value), create (empty or an overlay
// with an explicit backing format) and convert (with progress). No shell; every call has a time limit.
import { spawn } from 'node:child_process';
import { AppError } from '../lib/errors.js';

export type ImageFormat = 'raw' | 'qcow2';

export interface QemuImgInfo {
  /** As qemu-img names it: 'raw', 'qcow2', 'vmdk', ... */
  format: string;
  virtualSize: number;
  actualSize: number | undefined;
  encrypted: boolean;
  /** The backing file as written in the image header, and as qemu resolves it (relative to the image). */
  backingFilename: string | undefined;
  fullBackingFilename: string | undefined;
  backingFormat: string | undefined;
  /** qcow2 with an external data file: the guest's data lives in that other file. */
  dataFile: string | undefined;
}

export interface QemuImg {
  /** Never opens the backing chain (qemu-img info without --backing-chain), so a hostile header reads nothing else. */
  info(path: string, opts?: { format?: ImageFormat }): Promise<QemuImgInfo>;
  create(path: string, format: ImageFormat, sizeBytes: number): Promise<void>;
  /** A qcow2 overlay on `backing` (absolute path, explicit format so qemu never probes it). */
  createOverlay(path: string, backing: { path: string; format: ImageFormat }): Promise<void>;
  convert(src: { path: string; format: ImageFormat }, dst: { path: string; format: ImageFormat }, onProgress?: (percent: number) => void): Promise<void>;
  /** Grows the image to `sizeBytes` (never shrinks: qemu-img refuses a smaller size without --shrink). */
  resize(path: string, format: ImageFormat, sizeBytes: number): Promise<void>;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Pure: `qemu-img info --output=json` text -> QemuImgInfo. Throws IMAGE_INVALID on anything unexpected. */
export function parseQemuImgInfo(text: string): QemuImgInfo {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new AppError('IMAGE_INVALID', 'qemu-img info did not print JSON');
  }
  const format = str(j.format);
  const virtualSize = num(j['virtual-size']);
  if (format === undefined || virtualSize === undefined) throw new AppError('IMAGE_INVALID', 'qemu-img info: no format or virtual size');
  const specific = j['format-specific'] as { type?: unknown; data?: Record<string, unknown> } | undefined;
  return {
    format,
    virtualSize,
    actualSize: num(j['actual-size']),
    encrypted: j.encrypted === true || (specific?.data?.encrypt !== undefined && specific.data.encrypt !== null),
    backingFilename: str(j['backing-filename']),
    fullBackingFilename: str(j['full-backing-filename']),
    backingFormat: str(j['backing-filename-format']),
    dataFile: str(specific?.data?.['data-file']),
  };
}

/** Parses qemu-img's `-p` progress lines ("    (42.17/100%)"), returning the last percentage in a chunk. */
export function parseProgress(chunk: string): number | undefined {
  let last: number | undefined;
  for (const m of chunk.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)) last = Number(m[1]);
  return last;
}

export function createQemuImg(opts: { binary?: string; timeoutMs?: number } = {}): QemuImg {
  const binary = opts.binary ?? 'qemu-img';
  // A crafted image can make qemu-img chew for a long time (huge L1 tables); metadata calls must end.
  const infoTimeoutMs = 30_000;
  const longTimeoutMs = opts.timeoutMs ?? 6 * 3600_000;

  function run(args: string[], timeoutMs: number, onStdout?: (s: string) => void): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.stdout.on('data', (c: Buffer) => {
        const s = c.toString('utf8');
        if (onStdout) onStdout(s);
        else if (out.length < 1 << 20) out += s;
      });
      child.stderr.on('data', (c: Buffer) => {
        if (err.length < 64 << 10) err += c.toString('utf8');
      });
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(new AppError('HOST_ERROR', `${binary}: ${e.message}`, { cause: e }));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) return resolve(out);
        const why = signal ? `killed by ${signal}${signal === 'SIGKILL' ? ` (time limit ${timeoutMs} ms)` : ''}` : err.trim() || `exit code ${code}`;
        reject(new AppError('HOST_ERROR', `qemu-img ${args[0]} failed: ${why}`, { extra: { args, stderr: err } }));
      });
    });
  }

  return {
    async info(path, o = {}) {
      // -U: read even while a running guest holds the image lock; info only reads metadata.
      const args = ['info', '--output=json', '-U', ...(o.format ? ['-f', o.format] : []), '--', path];
      const text = await run(args, infoTimeoutMs).catch((e: unknown) => {
        if (e instanceof AppError && e.code === 'HOST_ERROR') throw new AppError('IMAGE_INVALID', e.message, { cause: e });
        throw e;
      });
      return parseQemuImgInfo(text);
    },
    async create(path, format, sizeBytes) {
      await run(['create', '-q', '-f', format, '--', path, String(sizeBytes)], infoTimeoutMs);
    },
    async createOverlay(path, backing) {
      await run(['create', '-q', '-f', 'qcow2', '-F', backing.format, '-b', backing.path, '--', path], infoTimeoutMs);
    },
    async convert(src, dst, onProgress) {
      const args = ['convert', ...(onProgress ? ['-p'] : ['-q']), '-f', src.format, '-O', dst.format, '--', src.path, dst.path];
      await run(args, longTimeoutMs, onProgress ? (s) => {
        const p = parseProgress(s);
        if (p !== undefined) onProgress(p);
      } : undefined);
    },
    async resize(path, format, sizeBytes) {
      await run(['resize', '-q', '-f', format, '--', path, String(sizeBytes)], infoTimeoutMs);
    },
  };
}

// The image registry over a real store and a real temp storage root, importing from a loopback HTTP server and
// local files (qemu-img replaced by a magic-number inspect): checksums, failures and cancels leave nothing
// behind, names are reserved, sources are confined, used images cannot be deleted, leftovers are swept.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError, type ErrorCode } from '../../../daemon/lib/errors.js';
import { createImageRegistry, type ImageRegistry, type ImageRecord } from '../../../daemon/storage/image-registry.js';
import { createPathGuard } from '../../../daemon/storage/paths.js';
import { createStore, type Store } from '../../../daemon/store/store.js';
import { magicInspect, partial, serve, startByteServer, testOperations, type ByteServer, type TestOps } from './image-helpers.js';

let tmp: string;
let root: string;
let outside: string;
let store: Store;
let http: ByteServer;
let n = 0;

const MiB = 1 << 20;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const rawImage = (size: number, seed: number) => {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) b.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  return b;
};
const qcowImage = () => Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb]), Buffer.alloc(4096, 1)]);

async function code(p: Promise<unknown>): Promise<ErrorCode | string> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  return isAppError(e) ? e.code : `no AppError: ${String(e)}`;
}

interface Setup {
  reg: ImageRegistry;
  ops: TestOps;
  dir: string;
  users: Map<string, string[]>;
}

/** A fresh registry with its own sublevel and directory. */
function setup(opts: { idleTimeoutMs?: number; inspect?: typeof magicInspect } = {}): Setup {
  n++;
  const dir = join(root, `images-${n}`);
  const ops = testOperations();
  const users = new Map<string, string[]>();
  const reg = createImageRegistry({
    store: { sublevel: <V>(name: string) => store.sublevel<V>(`t${n}:${name}`) },
    images: { inspect: opts.inspect ?? magicInspect },
    guard: createPathGuard({ roots: [root] }),
    dir,
    ops,
    usedBy: async (name) => users.get(name) ?? [],
    ...(opts.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: opts.idleTimeoutMs }),
  });
  return { reg, ops, dir, users };
}

/** Files in the registry dir other than `keep`: temp files and strays. */
const strays = (dir: string, keep: string[] = []) => (existsSync(dir) ? readdirSync(dir).filter((f) => !keep.includes(f)) : []);

beforeAll(async () => {
  tmp = realpathSync(mkdtempSync(join(tmpdir(), 'nv-imgreg-')));
  root = join(tmp, 'root');
  outside = join(tmp, 'outside');
  mkdirSync(root);
  mkdirSync(outside);
  store = createStore({ stateDir: join(tmp, 'state') });
  await store.open();
  http = await startByteServer();
});

afterAll(async () => {
  await http.close();
  await store.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('import over http', () => {
  it('streams, hashes, checks the sha256, reports progress and places <name>.<format>', async () => {
    const body = rawImage(3 * MiB, 1);
    http.route('/disk.img', serve(body));
    const { reg, ops, dir } = setup();
    const started = await reg.import({ name: 'deb', source: { url: http.url('/disk.img') }, sha256: sha(body).toUpperCase() });
    expect(started).toMatchObject({ kind: 'image.import', target: 'images/deb', status: 'running' });
    const view = await ops.done(started.id);
    expect(view.status, JSON.stringify(view.error)).toBe('succeeded');
    const rec = view.result as ImageRecord;
    expect(rec).toMatchObject({ name: 'deb', format: 'raw', virtualSize: 3 * MiB, sha256: sha(body), source: { url: http.url('/disk.img') }, path: join(dir, 'deb.raw') });
    expect(rec.actualSize).toBeGreaterThan(0);
    expect(Date.parse(rec.createdAt)).not.toBeNaN();
    expect(readFileSync(rec.path).equals(body)).toBe(true);
    expect(await reg.get('deb')).toEqual(rec);
    expect(await reg.list()).toEqual([rec]);
    const progress = ops.progress(started.id);
    expect(progress.at(-1)).toBe(100);
    expect(progress.some((p) => p > 0 && p < 95)).toBe(true);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(strays(dir, ['deb.raw'])).toEqual([]);
  });

  it('detects qcow2 and names the file after the format; credentials in the URL are not recorded', async () => {
    const auth: string[] = [];
    const body = serve(qcowImage());
    http.route('/q.qcow2', (req, res) => {
      auth.push(req.headers.authorization ?? '');
      body(req, res);
    });
    const { reg, ops, dir } = setup();
    const url = http.url('/q.qcow2').replace('http://', 'http://user:secret@');
    const v = await ops.done((await reg.import({ name: 'q', source: { url } })).id);
    expect(v.status).toBe('succeeded');
    expect(v.result).toMatchObject({ format: 'qcow2', path: join(dir, 'q.qcow2'), source: { url: http.url('/q.qcow2') } });
    expect(JSON.stringify(await reg.get('q'))).not.toContain('secret');
    expect(auth).toEqual([`Basic ${Buffer.from('user:secret').toString('base64')}`]);
  });

  it('a sha256 mismatch fails with IMAGE_CHECKSUM_MISMATCH, leaves no file or record, and frees the name', async () => {
    const body = rawImage(MiB, 2);
    http.route('/m.img', serve(body));
    const { reg, ops, dir } = setup();
    const v = await ops.done((await reg.import({ name: 'm', source: { url: http.url('/m.img') }, sha256: 'ab'.repeat(32) })).id);
    expect(v.status).toBe('failed');
    expect(v.error?.code).toBe('IMAGE_CHECKSUM_MISMATCH');
    expect(v.error?.message).toContain(sha(body));
    expect(strays(dir)).toEqual([]);
    expect(await code(reg.get('m'))).toBe('IMAGE_NOT_FOUND');
    const again = await ops.done((await reg.import({ name: 'm', source: { url: http.url('/m.img') }, sha256: sha(body) })).id);
    expect(again.status).toBe('succeeded');
  });

  it('refuses file:, ftp: and non-URLs before starting anything', async () => {
    const { reg, dir } = setup();
    for (const url of ['file:///etc/passwd', 'ftp://127.0.0.1/x.img', 'not a url', 'gopher://x/']) {
      expect(await code(reg.import({ name: 'x', source: { url } })), url).toBe('IMAGE_SOURCE_INVALID');
    }
    expect(await code(reg.import({ name: 'x', source: { url: http.url('/disk.img') }, sha256: 'zz' }))).toBe('IMAGE_SOURCE_INVALID');
    expect(strays(dir)).toEqual([]);
    expect(await reg.list()).toEqual([]);
  });

  it('a name being imported or already imported is taken (IMAGE_EXISTS)', async () => {
    http.route('/stall', partial(MiB, Buffer.alloc(1000), 'stall'));
    http.route('/small', serve(rawImage(64 * 1024, 3)));
    const { reg, ops } = setup();
    const first = await reg.import({ name: 'one', source: { url: http.url('/stall') } });
    expect(await code(reg.import({ name: 'one', source: { url: http.url('/small') } }))).toBe('IMAGE_EXISTS');
    ops.cancel(first.id);
    expect((await ops.done(first.id)).status).toBe('cancelled');
    expect((await ops.done((await reg.import({ name: 'one', source: { url: http.url('/small') } })).id)).status).toBe('succeeded');
    expect(await code(reg.import({ name: 'one', source: { url: http.url('/small') } }))).toBe('IMAGE_EXISTS');
  });

  it('HTTP errors, truncated bodies and stalled servers fail with IMAGE_DOWNLOAD_FAILED and leave nothing', async () => {
    http.route('/trunc', partial(MiB, Buffer.alloc(5000, 1), 'drop'));
    http.route('/hang', partial(MiB, Buffer.alloc(5000, 1), 'stall'));
    const { reg, ops, dir } = setup({ idleTimeoutMs: 300 });
    for (const [name, path, why] of [['a', '/nope', /HTTP 404/], ['b', '/trunc', /.+/], ['c', '/hang', /no data for 300 ms/]] as const) {
      const v = await ops.done((await reg.import({ name, source: { url: http.url(path) } })).id);
      expect(v.status, path).toBe('failed');
      expect(v.error?.code, path).toBe('IMAGE_DOWNLOAD_FAILED');
      expect(v.error?.message, path).toMatch(why);
    }
    const refused = await ops.done((await reg.import({ name: 'd', source: { url: 'http://127.0.0.1:1/x' } })).id);
    expect(refused.error?.code).toBe('IMAGE_DOWNLOAD_FAILED');
    expect(strays(dir)).toEqual([]);
    expect(await reg.list()).toEqual([]);
  });

  it('a cancel mid-download ends as cancelled with no temp file and no record', async () => {
    http.route('/slow', partial(4 * MiB, Buffer.alloc(256 * 1024, 9), 'stall'));
    const { reg, ops, dir } = setup();
    const op = await reg.import({ name: 'slow', source: { url: http.url('/slow') } });
    // Wait until bytes land in the temp file, so the cancel interrupts a real copy.
    for (let i = 0; i < 100 && !strays(dir).some((f) => f.startsWith('.import-slow-')); i++) await new Promise((r) => setTimeout(r, 20));
    expect(strays(dir).some((f) => f.startsWith('.import-slow-'))).toBe(true);
    ops.cancel(op.id);
    expect((await ops.done(op.id)).status).toBe('cancelled');
    expect(strays(dir)).toEqual([]);
    expect(await reg.find('slow')).toBeUndefined();
  });

  it('an image qemu-img refuses (say, a backing file) fails the import and leaves nothing', async () => {
    http.route('/bad', serve(rawImage(64 * 1024, 4)));
    const { reg, ops, dir } = setup({
      inspect: async (p) => ({ ...(await magicInspect(p)), format: 'qcow2', backingChain: [{ path: '/elsewhere/base.raw', format: 'raw' }] }),
    });
    const v = await ops.done((await reg.import({ name: 'bad', source: { url: http.url('/bad') } })).id);
    expect(v.error?.code).toBe('IMAGE_INVALID');
    expect(v.error?.message).toMatch(/backing file/);
    expect(strays(dir)).toEqual([]);
  });
});

describe('import from a local path', () => {
  it('copies a file inside a storage root and refuses paths outside, directories and escaping symlinks', async () => {
    const body = rawImage(512 * 1024, 5);
    mkdirSync(join(root, 'uploads'), { recursive: true });
    writeFileSync(join(root, 'uploads', 'local.img'), body);
    writeFileSync(join(outside, 'secret.img'), body);
    symlinkSync(join(outside, 'secret.img'), join(root, 'uploads', 'escape.img'));
    const { reg, ops, dir } = setup();
    const v = await ops.done((await reg.import({ name: 'local', source: { path: 'uploads/local.img' }, sha256: sha(body) })).id);
    expect(v.status).toBe('succeeded');
    expect(v.result).toMatchObject({ format: 'raw', source: { path: join(root, 'uploads', 'local.img') }, path: join(dir, 'local.raw') });
    // A copy, not a link: the source can go away.
    rmSync(join(root, 'uploads', 'local.img'));
    expect(readFileSync(join(dir, 'local.raw')).equals(body)).toBe(true);
    expect(await code(reg.import({ name: 'o', source: { path: join(outside, 'secret.img') } }))).toBe('PATH_INVALID');
    expect(await code(reg.import({ name: 'o', source: { path: 'uploads/escape.img' } }))).toBe('PATH_INVALID');
    expect(await code(reg.import({ name: 'o', source: { path: '../outside/secret.img' } }))).toBe('PATH_INVALID');
    expect(await code(reg.import({ name: 'o', source: { path: 'uploads' } }))).toBe('IMAGE_SOURCE_INVALID');
    expect(await code(reg.import({ name: 'o', source: { path: 'uploads/missing.img' } }))).toBe('IMAGE_SOURCE_INVALID');
    expect(await reg.find('o')).toBeUndefined();
  });
});

describe('delete and start', () => {
  it('refuses to delete an image a VM uses, deletes one nobody uses, 404s an unknown one', async () => {
    http.route('/d.img', serve(rawImage(64 * 1024, 6)));
    const { reg, ops, dir, users } = setup();
    await ops.done((await reg.import({ name: 'd', source: { url: http.url('/d.img') } })).id);
    users.set('d', ['web1', 'web2']);
    const e = await reg.delete('d').then(() => undefined, (x: unknown) => x);
    expect(isAppError(e, 'IMAGE_IN_USE')).toBe(true);
    expect((e as Error).message).toContain('web1, web2');
    expect(existsSync(join(dir, 'd.raw'))).toBe(true);
    users.delete('d');
    await reg.delete('d');
    expect(existsSync(join(dir, 'd.raw'))).toBe(false);
    expect(await reg.find('d')).toBeUndefined();
    expect(await code(reg.delete('d'))).toBe('IMAGE_NOT_FOUND');
  });

  it('start() sweeps temp files and image files without a record, keeping recorded images and other files', async () => {
    http.route('/k.img', serve(rawImage(64 * 1024, 7)));
    const { reg, ops, dir } = setup();
    await ops.done((await reg.import({ name: 'keep', source: { url: http.url('/k.img') } })).id);
    writeFileSync(join(dir, '.import-x-0123456789ab'), 'half');
    writeFileSync(join(dir, 'orphan.qcow2'), 'no record');
    writeFileSync(join(dir, 'README'), 'not ours by name');
    await reg.start();
    expect(readdirSync(dir).sort()).toEqual(['README', 'keep.raw']);
  });
});

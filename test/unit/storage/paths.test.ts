// Path confinement on a real temp tree: plain paths, not-yet-existing files, and hostile symlinks (escaping
// directories and files, dangling links, loops, a link back inside) plus the syntax refusals.
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError } from '../../../daemon/lib/errors.js';
import { createPathGuard, pathSyntaxProblem, type PathGuard } from '../../../daemon/storage/paths.js';

let tmp: string;
let rootA: string;
let rootB: string;
let outside: string;
let guard: PathGuard;

async function refused(p: string): Promise<string> {
  const err = await guard.resolve(p).then(() => undefined, (e: unknown) => e);
  expect(isAppError(err, 'PATH_INVALID'), `expected ${JSON.stringify(p)} to be refused`).toBe(true);
  return (err as Error).message;
}

beforeAll(() => {
  tmp = realpathSync(mkdtempSync(join(tmpdir(), 'nv-paths-')));
  rootA = join(tmp, 'a');
  rootB = join(tmp, 'b');
  outside = join(tmp, 'outside');
  for (const d of [rootA, join(rootA, 'sub'), rootB, outside]) mkdirSync(d, { recursive: true });
  writeFileSync(join(rootA, 'disk.raw'), '');
  writeFileSync(join(outside, 'secret'), 'x');
  symlinkSync(outside, join(rootA, 'escape-dir'));
  symlinkSync(join(outside, 'secret'), join(rootA, 'escape-file'));
  symlinkSync(join(outside, 'nope'), join(rootA, 'dangling'));
  symlinkSync(join(rootA, 'loop'), join(rootA, 'loop'));
  symlinkSync('../a/sub', join(rootB, 'to-a-sub'));
  symlinkSync('../../outside', join(rootA, 'sub', 'relative-escape'));
  // A root configured through a symlink is still a root.
  symlinkSync(rootB, join(tmp, 'b-link'));
  guard = createPathGuard({ roots: [rootA, join(tmp, 'b-link')] });
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('path guard', () => {
  it('resolves paths inside the roots, existing or not', async () => {
    expect(await guard.resolve('disk.raw')).toBe(join(rootA, 'disk.raw'));
    expect(await guard.resolve(join(rootA, 'sub/new.qcow2'))).toBe(join(rootA, 'sub/new.qcow2'));
    expect(await guard.resolve(join(rootA, 'new-dir/deeper/x.qcow2'))).toBe(join(rootA, 'new-dir/deeper/x.qcow2'));
    expect(await guard.resolve(join(tmp, 'b-link', 'v.qcow2'))).toBe(join(rootB, 'v.qcow2'));
    expect(await guard.resolve(join(rootB, 'v.qcow2'))).toBe(join(rootB, 'v.qcow2'));
    // A link from one root into another stays confined.
    expect(await guard.resolve(join(rootB, 'to-a-sub', 'y'))).toBe(join(rootA, 'sub', 'y'));
    expect(await guard.resolve('./sub//z')).toBe(join(rootA, 'sub', 'z'));
  });

  it('refuses absolute paths elsewhere, and the roots themselves', async () => {
    expect(await refused('/etc/passwd')).toContain('outside the storage roots');
    expect(await refused(join(outside, 'secret'))).toContain('outside');
    await refused(rootA);
    await refused(`${rootA}-sibling/x`);
  });

  it('refuses symlinks that escape, dangling and looping links', async () => {
    expect(await refused('escape-dir/secret')).toContain('symlink');
    await refused('escape-dir/new-file');
    await refused('escape-file');
    await refused('sub/relative-escape/secret');
    expect(await refused('dangling')).toContain('dangling');
    await refused('loop');
    await refused('loop/x');
  });

  it.each([
    ['..', "'..'"],
    ['sub/../../outside/secret', "'..'"],
    ['a..b/../x', "'..'"],
    ['x\u0000y', 'NUL'],
    ['x\ny', 'newlines'],
    ['x\ry', 'newlines'],
    ['x\u001by', 'control'],
    ['', 'non-empty'],
  ])('refuses %j by syntax (%s)', async (p, why) => {
    expect(pathSyntaxProblem(p)).toContain(why);
    await refused(p);
  });

  it('allows names that merely contain dots', async () => {
    expect(pathSyntaxProblem('a..b/c...d/.hidden')).toBeUndefined();
    expect(await guard.resolve('a..b/.x')).toBe(join(rootA, 'a..b/.x'));
  });

  it('property: whatever it returns is inside a real root', async () => {
    const seg = fc.constantFrom('sub', 'escape-dir', 'escape-file', 'dangling', 'loop', 'x', '.', '..', 'to-a-sub', 'relative-escape', 'secret');
    await fc.assert(
      fc.asyncProperty(fc.array(seg, { minLength: 1, maxLength: 5 }), fc.boolean(), async (segs, viaB) => {
        const p = (viaB ? `${rootB}/` : '') + segs.join('/');
        const got = await guard.resolve(p).catch(() => undefined);
        if (got !== undefined) expect(got.startsWith(`${rootA}/`) || got.startsWith(`${rootB}/`)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

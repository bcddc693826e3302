// Makes daemon modules loadable by a plain `node` child process (crash tests kill it with SIGKILL):
// transpiles the entry files and their relative imports into a dir under node_modules, so bare imports
// (classic-level, pino) still resolve, and links the native addon where native.ts looks for it.
import { existsSync } from 'node:fs';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';

/**
 * Transpiles `entries` (paths relative to the repo root, e.g. 'daemon/net/nic.ts') and everything they
 * import relatively into `outDir` (which must sit under the repo's node_modules); returns outDir.
 * Types are not checked here: tsc does that for the tree.
 */
export async function transpileForChild(entries: readonly string[], outDir: string): Promise<string> {
  const root = process.cwd();
  const todo = entries.map((e) => join(root, e));
  const seen = new Set<string>();
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const src = await readFile(file, 'utf8');
    for (const m of src.matchAll(/from '(\.{1,2}\/[^']+)\.js'/g)) todo.push(join(dirname(file), `${m[1]}.ts`));
    const out = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 }, fileName: file });
    const dest = join(outDir, relative(root, file)).replace(/\.ts$/, '.js');
    await mkdir(dirname(dest), { recursive: true });
    await writeFile(dest, out.outputText);
  }
  await writeFile(join(outDir, 'package.json'), '{"type":"module"}');
  // native.ts loads ../../native/build/Release/... relative to itself.
  const addonDir = join(root, 'native/build');
  if (existsSync(addonDir) && !existsSync(join(outDir, 'native/build'))) {
    await mkdir(join(outDir, 'native'), { recursive: true });
    await symlink(addonDir, join(outDir, 'native/build'));
  }
  return outDir;
}

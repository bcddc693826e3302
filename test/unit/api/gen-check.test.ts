// CI guard: daemon/api/generated/openapi.ts must be exactly what `npm run gen` makes from the spec today.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..', '..');

it('the committed generated types match a fresh openapi-typescript run', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'nodevirt-gen-'));
  try {
    const out = join(dir, 'openapi.ts');
    // The same command as `npm run gen`, only writing elsewhere.
    await run(join(root, 'node_modules', '.bin', 'openapi-typescript'), ['api-spec/openapi.yaml', '-o', out], { cwd: root });
    const fresh = await readFile(out, 'utf8');
    const committed = await readFile(join(root, 'daemon', 'api', 'generated', 'openapi.ts'), 'utf8');
    expect(fresh.length).toBeGreaterThan(1000);
    expect(committed, 'daemon/api/generated/openapi.ts is stale: run `npm run gen` and commit the result').toBe(fresh);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION, createStore } from '../../../daemon/store/store.js';

const dirs: string[] = [];
async function tmp() {
  const d = await mkdtemp(join(tmpdir(), 'nvstore-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('store', () => {
  it('keeps typed key spaces apart and survives reopen', async () => {
    const dir = await tmp();
    const s = createStore({ stateDir: dir });
    await s.open();
    const a = s.sublevel<{ n: number }>('a');
    const b = s.sublevel<string>('b');
    await a.put('k', { n: 1 });
    await b.put('k', 'other');
    await a.batch([{ type: 'put', key: 'j', value: { n: 2 } }, { type: 'del', key: 'k' }]);
    expect(await a.get('k')).toBeUndefined();
    expect(await a.list()).toEqual([['j', { n: 2 }]]);
    await s.close();
    await s.close(); // idempotent
    const s2 = createStore({ stateDir: dir });
    await s2.open();
    expect(await s2.sublevel<string>('b').get('k')).toBe('other');
    await s2.close();
  });

  it('says another daemon holds the state dir when the database is locked', async () => {
    const dir = await tmp();
    const first = createStore({ stateDir: dir });
    await first.open();
    await expect(createStore({ stateDir: dir }).open()).rejects.toThrow(/is locked: is another nodevirtd running/);
    await first.close();
  });

  it('refuses a database written by a newer schema', async () => {
    const dir = await tmp();
    const raw = new ClassicLevel<string, unknown>(join(dir, 'db'), { valueEncoding: 'json' });
    await raw.open();
    await raw.sublevel<string, number>('meta', { valueEncoding: 'json' }).put('schemaVersion', SCHEMA_VERSION + 1);
    await raw.close();
    await expect(createStore({ stateDir: dir }).open()).rejects.toThrow(/newer than this nodevirtd/);
  });
});

// Token service against the real level store in a temp dir: secrets shown once, only hashes stored,
// constant-time verification, lastUsedAt throttling, no resurrection of deleted tokens.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTokenService, type StoredToken, type TokenService } from '../../../daemon/auth/token-service.js';
import { isAppError } from '../../../daemon/lib/errors.js';
import { createStore, type KeySpace, type Store } from '../../../daemon/store/store.js';

let dir: string;
let store: Store;
let kv: KeySpace<StoredToken>;
let clock: Date;
let tokens: TokenService;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-tokens-'));
  store = createStore({ stateDir: dir });
  await store.open();
  kv = store.sublevel<StoredToken>('tokens');
  clock = new Date('2024-05-01T10:00:00.000Z');
  tokens = createTokenService({ tokens: kv, now: () => clock });
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('token service', () => {
  it('creates a prefixed 256-bit secret and stores only its SHA-256', async () => {
    const { token, secret } = await tokens.create({ name: 'ci', description: 'pipeline' });
    expect(secret).toMatch(/^nvt_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(secret.slice(4), 'base64url')).toHaveLength(32);
    expect(token).toEqual({ name: 'ci', description: 'pipeline', createdAt: '2024-05-01T10:00:00.000Z', lastUsedAt: null });
    const stored = await kv.get('ci');
    expect(stored?.sha256).toBe(createHash('sha256').update(secret).digest('hex'));
    expect(JSON.stringify(await kv.list())).not.toContain(secret.slice(4));
  });

  it('gives each token a different secret', async () => {
    const a = await tokens.create({ name: 'a' });
    const b = await tokens.create({ name: 'b' });
    expect(a.secret).not.toBe(b.secret);
  });

  it('lists tokens sorted by name without hashes', async () => {
    await tokens.create({ name: 'zeta' });
    await tokens.create({ name: 'alpha' });
    const list = await tokens.list();
    expect(list.map((t) => t.name)).toEqual(['alpha', 'zeta']);
    for (const t of list) expect(Object.keys(t).sort()).toEqual(['createdAt', 'lastUsedAt', 'name']);
  });

  it('refuses a duplicate name with CONFLICT, also when two creates race', async () => {
    await tokens.create({ name: 'dup' });
    await expect(tokens.create({ name: 'dup' })).rejects.toSatisfy((e: unknown) => isAppError(e, 'CONFLICT'));
    const results = await Promise.allSettled([tokens.create({ name: 'race' }), tokens.create({ name: 'race' }), tokens.create({ name: 'race' })]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(isAppError(r.reason, 'CONFLICT')).toBe(true);
  });

  it('refuses invalid names', async () => {
    for (const name of ['', 'UPPER', '-lead', 'trail-', 'a/b', 'x'.repeat(64)]) {
      await expect(tokens.create({ name }), name).rejects.toSatisfy((e: unknown) => isAppError(e, 'VALIDATION_FAILED'));
    }
    expect(await kv.list()).toEqual([]);
  });

  it('verifies its own secret and nothing else', async () => {
    const { secret } = await tokens.create({ name: 'ci' });
    const { secret: other } = await tokens.create({ name: 'other' });
    expect((await tokens.verify(secret))?.name).toBe('ci');
    expect((await tokens.verify(other))?.name).toBe('other');
    const flipped = secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A');
    for (const bad of [flipped, secret.slice(4), secret + 'x', 'nvt_', '', 'Bearer ' + secret, secret.toUpperCase()]) {
      expect(await tokens.verify(bad), bad).toBeUndefined();
    }
  });

  it('records lastUsedAt at most once per resolution window', async () => {
    const { secret } = await tokens.create({ name: 'ci' });
    expect((await tokens.verify(secret))?.lastUsedAt).toBe('2024-05-01T10:00:00.000Z');
    clock = new Date('2024-05-01T10:00:30.000Z');
    await tokens.verify(secret);
    expect((await kv.get('ci'))?.lastUsedAt).toBe('2024-05-01T10:00:00.000Z');
    clock = new Date('2024-05-01T10:01:01.000Z');
    await tokens.verify(secret);
    expect((await kv.get('ci'))?.lastUsedAt).toBe('2024-05-01T10:01:01.000Z');
    expect((await tokens.list())[0]?.lastUsedAt).toBe('2024-05-01T10:01:01.000Z');
  });

  it('deletes, answers NOT_FOUND for a missing token, and a racing verify does not resurrect it', async () => {
    await expect(tokens.delete('ghost')).rejects.toSatisfy((e: unknown) => isAppError(e, 'NOT_FOUND'));
    const { secret } = await tokens.create({ name: 'ci' });
    const [verified] = await Promise.all([tokens.verify(secret), tokens.delete('ci')]);
    // Whichever ran first, the token is gone afterwards and stays gone.
    expect(verified === undefined || verified.name === 'ci').toBe(true);
    expect(await kv.get('ci')).toBeUndefined();
    expect(await tokens.verify(secret)).toBeUndefined();
  });

  it('a re-created name gets a new secret; the old one stops working', async () => {
    const first = await tokens.create({ name: 'ci' });
    await tokens.delete('ci');
    const second = await tokens.create({ name: 'ci' });
    expect(await tokens.verify(first.secret)).toBeUndefined();
    expect((await tokens.verify(second.secret))?.name).toBe('ci');
  });
});

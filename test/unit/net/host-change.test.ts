// host-change.ts without the kernel: requests are refused before anything is read or applied, and
// unknown ids answer with their stable codes (the kernel paths are in test/system/host-change.test.ts).
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError } from '../../../daemon/lib/errors.js';
import { createHostChanges, type HostChangeRequest, type HostChanges } from '../../../daemon/net/host-change.js';
import { createStore, type Store } from '../../../daemon/store/store.js';

let dir: string;
let store: Store;
let hc: HostChanges;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nv-hc-unit-'));
  store = createStore({ stateDir: dir });
  await store.open();
  hc = createHostChanges({ store, stateDir: dir, agentScript: '/nonexistent/revert-agent.sh' });
});
afterAll(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const base: HostChangeRequest = { netns: 'nvr-none', links: ['up0'], apply: [{ op: 'set', name: 'up0', up: true }] };

describe('applyWithRollback refuses bad requests before touching anything', () => {
  it.each<[string, Partial<HostChangeRequest>, RegExp]>([
    ['netns with a slash', { netns: '../x' }, /bad netns/],
    ['no links', { links: [] }, /at least one link/],
    ['a link name with a newline', { links: ['up0\nlink del dev eth0'] }, /bad link name/],
    ['a link name over 15 bytes', { links: ['a234567890123456'] }, /bad link name/],
    ['a timeout under 1 s', { timeoutMs: 999 }, /timeoutMs/],
    ['a fractional timeout', { timeoutMs: 1500.5 }, /timeoutMs/],
    ['a non-URL probe', { probes: { urls: ['not a url'] } }, /bad probe URL/],
    ['a file: probe', { probes: { urls: ['file:///etc/passwd'] } }, /http\(s\)/],
  ])('%s', async (_what, patch, msg) => {
    const e = await hc.applyWithRollback({ ...base, ...patch }).catch((x: unknown) => x);
    expect(isAppError(e, 'HOST_CHANGE_INVALID')).toBe(true);
    expect((e as Error).message).toMatch(msg);
    expect(await hc.list()).toEqual([]);
    expect(await readdir(dir)).not.toContain('host-changes');
  });
});

describe('ids', () => {
  it('confirm and revert of an unknown or malformed id are HOST_CHANGE_NOT_FOUND', async () => {
    for (const id of ['nope', '../../etc', '']) {
      expect(isAppError(await hc.confirm(id).catch((x: unknown) => x), 'HOST_CHANGE_NOT_FOUND')).toBe(true);
      expect(isAppError(await hc.revert(id).catch((x: unknown) => x), 'HOST_CHANGE_NOT_FOUND')).toBe(true);
    }
    expect(await hc.get('nope')).toBeUndefined();
    expect(await hc.reconcile()).toEqual([]);
  });
});

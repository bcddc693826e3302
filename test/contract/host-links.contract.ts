// The behaviour every Links adapter must show, run against the fake (unit) and the real ip/addon adapter in
// a fresh network namespace (system): taps, bridges, veths, MTU/master/up, non-atomic batches, errors.
import { describe, expect, it } from 'vitest';
import type { LinkOp, Links } from '../../daemon/host/links.js';
import { isAppError } from '../../daemon/lib/errors.js';
import { bridgeName, isOurs, tapName, vethNames } from '../../daemon/net/names.js';

async function hostError(p: Promise<unknown>): Promise<Record<string, unknown>> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  if (!isAppError(e, 'HOST_ERROR')) throw new Error(`expected HOST_ERROR, got ${String(e)}`);
  return e.extra ?? {};
}

/** `ctx()` gives the adapter under test; ids must be unique per run so parallel runs do not meet. */
export function linksContract(label: string, ctx: () => { links: Links; run: string }): void {
  describe(`Links contract (${label})`, () => {
    const n = (what: string) => {
      const { run } = ctx();
      return { tap: tapName(run, what), bridge: bridgeName(`${run}/${what}`), veth: vethNames(`${run}/${what}`) };
    };

    it('creates a persistent tap, down, that shows in list(isOurs) and get', async () => {
      const { links } = ctx();
      const { tap } = n('t1');
      await links.createTap(tap, { owner: 0 });
      const got = await links.get(tap);
      expect(got).toMatchObject({ name: tap, kind: 'tap', up: false, master: undefined });
      expect(got!.mtu).toBe(1500);
      expect((await links.list(isOurs)).map((l) => l.name)).toContain(tap);
      expect((await links.list()).length).toBeGreaterThanOrEqual((await links.list(isOurs)).length);
      const extra = await hostError(links.createTap(tap));
      expect(extra.errno).toBe('EEXIST');
      expect(await links.deleteTap(tap)).toBe(true);
      expect(await links.get(tap)).toBeUndefined();
      expect(await links.deleteTap(tap)).toBe(false);
    });

    it('plumbs a tap into a bridge with MTU and up in one batch, and releases it', async () => {
      const { links } = ctx();
      const { tap, bridge } = n('t2');
      await links.createTap(tap, { owner: 0 });
      await links.apply([
        { op: 'create-bridge', name: bridge, mtu: 1400 },
        { op: 'set', name: bridge, up: true },
        { op: 'set', name: tap, mtu: 1400, master: bridge, up: true },
      ]);
      expect(await links.get(bridge)).toMatchObject({ kind: 'bridge', mtu: 1400, up: true });
      expect(await links.get(tap)).toMatchObject({ mtu: 1400, master: bridge, up: true });
      await links.apply([{ op: 'set', name: tap, master: null, up: false }]);
      expect(await links.get(tap)).toMatchObject({ master: undefined, up: false });
      await links.apply([{ op: 'set', name: tap, master: bridge }]);
      // Deleting the bridge frees its ports; the tap itself stays.
      await links.apply([{ op: 'delete', name: bridge }]);
      expect(await links.get(bridge)).toBeUndefined();
      expect(await links.get(tap)).toMatchObject({ master: undefined });
      await links.deleteTap(tap);
    });

    it('stops a batch at the first failure, keeping what ran before and naming the failed op', async () => {
      const { links } = ctx();
      const { bridge, tap } = n('t3');
      const ops: LinkOp[] = [
        { op: 'create-bridge', name: bridge },
        { op: 'set', name: tap, up: true },
        { op: 'set', name: bridge, up: true },
      ];
      const extra = await hostError(links.apply(ops));
      expect(extra.failedIndex).toBe(1);
      expect(await links.get(bridge)).toMatchObject({ up: false });
      await links.apply([{ op: 'delete', name: bridge }]);
    });

    it('refuses a master that is not a bridge, and deleteTap on a bridge', async () => {
      const { links } = ctx();
      const { tap, bridge } = n('t4');
      const other = n('t4b').tap;
      await links.createTap(tap, { owner: 0 });
      await links.createTap(other, { owner: 0 });
      await hostError(links.apply([{ op: 'set', name: tap, master: other }]));
      expect((await links.get(tap))!.master).toBeUndefined();
      await links.apply([{ op: 'create-bridge', name: bridge }]);
      await hostError(links.deleteTap(bridge));
      expect(await links.get(bridge)).toBeDefined();
      await links.apply([{ op: 'delete', name: bridge }]);
      await links.deleteTap(tap);
      await links.deleteTap(other);
    });

    it('makes veth pairs and deletes both ends with one', async () => {
      const { links } = ctx();
      const { veth } = n('t5');
      await links.apply([{ op: 'create-veth', name: veth.host, peer: veth.peer, mtu: 9000 }]);
      expect(await links.get(veth.host)).toMatchObject({ kind: 'veth', mtu: 9000 });
      expect(await links.get(veth.peer)).toMatchObject({ kind: 'veth', mtu: 9000 });
      await hostError(links.apply([{ op: 'create-veth', name: veth.host, peer: `${veth.peer.slice(0, -1)}a` }]));
      await links.apply([{ op: 'delete', name: veth.peer }]);
      expect(await links.get(veth.host)).toBeUndefined();
      await hostError(links.apply([{ op: 'delete', name: veth.host }]));
    });

    it('sets a link address', async () => {
      const { links } = ctx();
      const { tap } = n('t6');
      await links.createTap(tap, { owner: 0 });
      await links.apply([{ op: 'set', name: tap, address: 'fe:0e:00:00:12:34' }]);
      expect((await links.get(tap))!.mac).toBe('fe:0e:00:00:12:34');
      await links.deleteTap(tap);
    });
  });
}

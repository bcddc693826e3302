// The behaviour every Nftables adapter must show with the batches net/nft-rules.ts writes, run against the
// fake (unit) and the real nft in a fresh network namespace (system): idempotence, isolation, atomicity.
import { describe, expect, it } from 'vitest';
import type { Nftables } from '../../daemon/host/nftables.js';
import { isAppError } from '../../daemon/lib/errors.js';
import { tapName } from '../../daemon/net/names.js';
import { parseGuardTable, renderGuardAdd, renderGuardRemove, renderTeardown, type NftFamily, type NicGuard } from '../../daemon/net/nft-rules.js';

export function nftablesContract(label: string, ctx: () => { nft: Nftables; run: string }): void {
  describe(`Nftables contract (${label})`, () => {
    const state = async (family: NftFamily) => {
      const json = await ctx().nft.listTable(family, 'nodevirt');
      return json === undefined ? undefined : { ...parseGuardTable(family, json), baseRules: countBaseRules(json) };
    };
    const countBaseRules = (json: string) =>
      (JSON.parse(json) as { nftables: Array<{ rule?: { chain: string } }> }).nftables.filter((i) => i.rule?.chain === 'guard').length;
    const g = (what: string, extra: Partial<NicGuard> = {}): NicGuard => ({
      ifname: tapName(ctx().run, what),
      mode: 'bridge',
      mac: '0e:00:00:00:00:01',
      ipv4: '10.0.0.2',
      ...extra,
    });

    it('has no table before anything is applied, and teardown of nothing succeeds', async () => {
      const { nft } = ctx();
      await nft.apply(renderTeardown());
      expect(await nft.listTable('bridge', 'nodevirt')).toBeUndefined();
    });

    it('installs guards idempotently and removes one NIC without touching another', async () => {
      const { nft } = ctx();
      const a = g('a');
      const b = g('b', { mac: '0e:00:00:00:00:02', ipv4: '10.0.0.3' });
      await nft.apply(renderGuardAdd([a, b]));
      await nft.apply(renderGuardAdd([a]));
      const s = (await state('bridge'))!;
      expect(s.chains.get(a.ifname)).toBe(10);
      expect(s.chains.get(b.ifname)).toBe(10);
      expect([...s.ports].sort()).toEqual([a.ifname, b.ifname].sort());
      expect(s.baseRules).toBe(1);

      await nft.apply(renderGuardRemove([a.ifname]));
      await nft.apply(renderGuardRemove([a.ifname]));
      const after = (await state('bridge'))!;
      expect(after.chains.has(a.ifname)).toBe(false);
      expect([...after.ports]).toEqual([b.ifname]);
      expect(after.chains.get(b.ifname)).toBe(10);
      await nft.apply(renderTeardown());
    });

    it('moves a NIC between modes without leaving its old chain', async () => {
      const { nft } = ctx();
      const a = g('m');
      await nft.apply(renderGuardAdd([a]));
      await nft.apply(renderGuardAdd([{ ...a, mode: 'inet' }]));
      expect((await state('bridge'))!.chains.has(a.ifname)).toBe(false);
      expect((await state('inet'))!.chains.get(a.ifname)).toBe(8);
      expect((await state('arp'))!.chains.get(a.ifname)).toBe(2);
      expect((await state('arp'))!.ports.has(a.ifname)).toBe(true);
      // Opting out of everything removes the chains.
      await nft.apply(renderGuardAdd([{ ...a, mode: 'inet', antiSpoof: false, serverGuard: false }]));
      expect((await state('inet'))!.chains.has(a.ifname)).toBe(false);
      expect((await state('arp'))!.ports.size).toBe(0);
      await nft.apply(renderTeardown());
      for (const f of ['bridge', 'inet', 'arp'] as const) expect(await nft.listTable(f, 'nodevirt')).toBeUndefined();
    });

    it('applies a batch all or nothing', async () => {
      const { nft } = ctx();
      const a = g('x');
      await nft.apply(renderGuardAdd([a]));
      const script = `add rule bridge nodevirt ${a.ifname} udp sport 1234 drop\ndelete chain bridge nodevirt ${tapName(ctx().run, 'missing')}\n`;
      const err = await nft.apply(script).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isAppError(err, 'HOST_ERROR')).toBe(true);
      expect((await state('bridge'))!.chains.get(a.ifname)).toBe(10);
      await nft.apply(renderTeardown());
    });

    it('refuses to delete a chain the ports map still jumps to, but deletes one with rules', async () => {
      const { nft } = ctx();
      const a = g('busy');
      await nft.apply(renderGuardAdd([a]));
      const err = await nft.apply(`delete chain bridge nodevirt ${a.ifname}\n`).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isAppError(err, 'HOST_ERROR')).toBe(true);
      expect((await state('bridge'))!.chains.get(a.ifname)).toBe(10);
      // The kernel drops a chain's rules with it; only references block the delete.
      await nft.apply(`delete element bridge nodevirt ports { "${a.ifname}" }\ndelete chain bridge nodevirt ${a.ifname}\n`);
      expect((await state('bridge'))!.chains.has(a.ifname)).toBe(false);
      await nft.apply(renderTeardown());
    });
  });
}

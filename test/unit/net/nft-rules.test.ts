// The guard ruleset text: what each NIC gets per mode and flag, batch shape (idempotent, touches only its
// own chain and map element), and parsing `nft -j list table` output.
import { describe, expect, it } from 'vitest';
import { tapName } from '../../../daemon/net/names.js';
import { describeNicGuard, guardFamilies, parseGuardTable, renderGuardAdd, renderGuardRemove, renderTableDelete, renderTeardown } from '../../../daemon/net/nft-rules.js';

const T1 = tapName('vm1', 'nic0');
const T2 = tapName('vm2', 'nic0');

describe('describeNicGuard', () => {
  it('bridge mode with IPAM: MAC, VLAN, ARP, IPv4 (DHCP discover allowed), DHCP and RA guard in one chain', () => {
    const [c, ...rest] = describeNicGuard({ ifname: T1, mode: 'bridge', mac: '0E:00:00:00:00:01', ipv4: '10.0.0.2' });
    expect(rest).toEqual([]);
    expect(c).toEqual({
      family: 'bridge',
      chain: T1,
      rules: [
        'ether saddr != 0e:00:00:00:00:01 counter drop',
        'ether type { 8021q, 8021ad } counter drop',
        'arp saddr ether != 0e:00:00:00:00:01 counter drop',
        'arp saddr ip != { 0.0.0.0, 10.0.0.2 } counter drop',
        'udp dport 67 counter drop',
        'ip saddr 0.0.0.0 udp sport 68 udp dport 67 return',
        'ip saddr != 10.0.0.2 counter drop',
        'udp sport 67 counter drop',
        'udp sport 547 counter drop',
        'icmpv6 type nd-router-advert counter drop',
      ],
    });
  });

  it('without IPAM only the MAC is enforced', () => {
    const rules = describeNicGuard({ ifname: T1, mode: 'bridge', mac: '0e:00:00:00:00:01' })[0]!.rules.join('\n');
    expect(rules).toContain('ether saddr != 0e:00:00:00:00:01');
    expect(rules).toContain('arp saddr ether != 0e:00:00:00:00:01');
    expect(rules).not.toMatch(/ip saddr|arp saddr ip/);
  });

  it('inet mode splits ARP into the arp table', () => {
    const chains = describeNicGuard({ ifname: T1, mode: 'inet', mac: '0e:00:00:00:00:01', ipv4: '10.0.0.2' });
    expect(chains.map((c) => c.family)).toEqual(['inet', 'arp']);
    expect(chains[0]!.rules.some((r) => r.startsWith('arp'))).toBe(false);
    expect(chains[1]!.rules).toEqual(['arp saddr ether != 0e:00:00:00:00:01 counter drop', 'arp saddr ip != { 0.0.0.0, 10.0.0.2 } counter drop']);
  });

  it('opt-outs: anti-spoofing off keeps the server guard; both off means no chain', () => {
    const guardOnly = describeNicGuard({ ifname: T1, mode: 'inet', mac: '0e:00:00:00:00:01', ipv4: '10.0.0.2', antiSpoof: false });
    expect(guardOnly).toEqual([{ family: 'inet', chain: T1, rules: ['udp dport 67 counter drop', 'udp sport 67 counter drop', 'udp sport 547 counter drop', 'icmpv6 type nd-router-advert counter drop'] }]);
    expect(describeNicGuard({ ifname: T1, mode: 'bridge', mac: '0e:00:00:00:00:01', antiSpoof: false, serverGuard: false })).toEqual([]);
    const spoofOnly = describeNicGuard({ ifname: T1, mode: 'bridge', mac: '0e:00:00:00:00:01', serverGuard: false })[0]!.rules;
    expect(spoofOnly.some((r) => r.includes('sport 67'))).toBe(false);
    // Without IPAM the LAN's DHCP serves the VM: its requests must pass.
    expect(describeNicGuard({ ifname: T1, mode: 'bridge', mac: '0e:00:00:00:00:01' })[0]!.rules.some((r) => r.includes('dport 67'))).toBe(false);
  });

  it('refuses names that are not ours and malformed addresses (bugs, not user errors)', () => {
    expect(() => describeNicGuard({ ifname: 'eth0', mode: 'bridge', mac: '0e:00:00:00:00:01' })).toThrow(/not a nodevirt/);
    expect(() => describeNicGuard({ ifname: T1, mode: 'bridge', mac: 'nope' })).toThrow(/bad MAC/);
    expect(() => describeNicGuard({ ifname: T1, mode: 'bridge', mac: '0e:00:00:00:00:01', ipv4: '10.0.0.256' })).toThrow(/bad IPv4/);
  });
});

describe('render', () => {
  it('an add batch ensures the table once, replaces its own chain and adds one map element', () => {
    const text = renderGuardAdd([
      { ifname: T1, mode: 'bridge', mac: '0e:00:00:00:00:01', ipv4: '10.0.0.2' },
      { ifname: T2, mode: 'bridge', mac: '0e:00:00:00:00:02', ipv4: '10.0.0.3' },
    ]);
    const lines = text.trimEnd().split('\n');
    expect(lines.filter((l) => l === 'add table bridge nodevirt')).toHaveLength(1);
    expect(lines).toContain('add chain bridge nodevirt guard { type filter hook prerouting priority -300; policy accept; }');
    expect(lines).toContain('add rule bridge nodevirt guard iifname vmap @ports');
    expect(lines.indexOf(`flush chain bridge nodevirt ${T1}`)).toBe(lines.indexOf(`add chain bridge nodevirt ${T1}`) + 1);
    expect(lines).toContain(`add element bridge nodevirt ports { "${T1}" : jump ${T1} }`);
    expect(lines).toContain(`add rule bridge nodevirt ${T2} ip saddr != 10.0.0.3 counter drop`);
    // Nothing in the batch flushes or deletes anything but our own chains, elements and the base chain.
    for (const l of lines.filter((x) => /^(flush|delete)/.test(x))) expect(l).toMatch(new RegExp(`nodevirt (guard|${T1}|${T2}|ports \\{ "(${T1}|${T2})" \\})$`));
    // The bridge-mode NIC loses any inet/arp chain it had, without hooking those families.
    expect(lines).toContain(`delete chain inet nodevirt ${T1}`);
    expect(lines).toContain(`delete chain arp nodevirt ${T1}`);
    expect(lines.some((l) => /^add chain (inet|arp) nodevirt guard/.test(l))).toBe(false);
  });

  it('an all-opted-out NIC renders only removals', () => {
    const text = renderGuardAdd([{ ifname: T1, mode: 'bridge', mac: '0e:00:00:00:00:01', antiSpoof: false, serverGuard: false }]);
    expect(text).not.toMatch(/add rule/);
    expect(text).toContain(`delete chain bridge nodevirt ${T1}`);
    expect(renderGuardAdd([])).toBe('');
  });

  it('a remove batch adds before deleting so it cannot fail on absence, in every family', () => {
    const lines = renderGuardRemove([T1]).trimEnd().split('\n');
    for (const f of ['bridge', 'inet', 'arp']) {
      const add = lines.indexOf(`add element ${f} nodevirt ports { "${T1}" : jump ${T1} }`);
      const del = lines.indexOf(`delete element ${f} nodevirt ports { "${T1}" }`);
      expect(add).toBeGreaterThan(lines.indexOf(`add chain ${f} nodevirt ${T1}`));
      expect(del).toBeGreaterThan(add);
      expect(lines.indexOf(`delete chain ${f} nodevirt ${T1}`)).toBeGreaterThan(del);
    }
    expect(renderGuardRemove([])).toBe('');
    expect(renderTeardown()).toContain('delete table arp nodevirt');
  });

  it('a fresh add and a remove limited to families touch no other table', () => {
    const fresh = renderGuardAdd([{ ifname: T1, mode: 'bridge', mac: '0e:00:00:00:00:01' }], { fresh: true });
    expect(fresh).not.toMatch(/ (inet|arp) nodevirt/);
    const routed = renderGuardAdd([{ ifname: T1, mode: 'inet', mac: '0e:00:00:00:00:01' }], { fresh: true });
    expect(routed).not.toMatch(/ bridge nodevirt/);
    expect(renderGuardRemove([T1], ['bridge'])).not.toMatch(/ (inet|arp) nodevirt/);
    expect(renderGuardRemove([T1], [])).toBe('');
    expect(renderTableDelete(['inet'])).toBe('add table inet nodevirt\ndelete table inet nodevirt\n');
    expect(guardFamilies({ mode: 'bridge' })).toEqual(['bridge']);
    expect(guardFamilies({ mode: 'inet', antiSpoof: false })).toEqual(['inet', 'arp']);
    expect(guardFamilies({ mode: 'inet', antiSpoof: false, serverGuard: false })).toEqual([]);
  });
});

describe('parseGuardTable', () => {
  it('reads our chains, their rule counts and map ports; ignores the base chain', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { table: { family: 'bridge', name: 'nodevirt', handle: 1 } },
        { map: { family: 'bridge', name: 'ports', table: 'nodevirt', type: 'ifname', map: 'verdict', elem: [[T1, { jump: { target: T1 } }]] } },
        { chain: { family: 'bridge', table: 'nodevirt', name: 'guard', handle: 2 } },
        { chain: { family: 'bridge', table: 'nodevirt', name: T1, handle: 3 } },
        { chain: { family: 'bridge', table: 'nodevirt', name: T2, handle: 4 } },
        { rule: { family: 'bridge', table: 'nodevirt', chain: 'guard', handle: 5, expr: [] } },
        { rule: { family: 'bridge', table: 'nodevirt', chain: T1, handle: 6, expr: [] } },
        { rule: { family: 'bridge', table: 'nodevirt', chain: T1, handle: 7, expr: [] } },
      ],
    });
    const s = parseGuardTable('bridge', json);
    expect([...s.chains]).toEqual([[T1, 2], [T2, 0]]);
    expect([...s.ports]).toEqual([T1]);
    expect(parseGuardTable('arp', '{"nftables":[]}').chains.size).toBe(0);
  });
});

// Benchmark: plumb and unplumb N NICs (tap + MTU + bridge port + up + guard rules + DHCP server) through
// nic.ts (in bulk, sequentially and concurrently), side by side with a shell loop of the equivalent ip/nft commands, in one run. Run it through
// test/bench/nic-plumb.sh, which gives it a fresh network and mount namespace (nothing touches the host).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createLinks } from '../../daemon/host/links.js';
import { openPacketSocket, packetClosesDrained } from '../../daemon/host/native.js';
import { createNftables } from '../../daemon/host/nftables.js';
import { createDhcpService } from '../../daemon/net/dhcp/dhcp-service.js';
import { bridgeName, isOurs, tapName } from '../../daemon/net/names.js';
import { renderGuardAdd, renderGuardRemove } from '../../daemon/net/nft-rules.js';
import { createNicPlumber, type DhcpPort, type NicRecord, type NicSpec } from '../../daemon/net/nic.js';
import { createStore } from '../../daemon/store/store.js';

const N = Number(process.env.NICS ?? 500);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 8);
if (!process.env.NODEVIRT_BENCH_NETNS) {
  console.error('run me through test/bench/nic-plumb.sh (needs a private network namespace)');
  process.exit(2);
}

const BR = bridgeName('bench');
const spec = (i: number, round: string): NicSpec => ({
  vmId: `bench-${round}-${i}`,
  nicId: 'nic0',
  mac: `0e:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
  // Host part i+2 of 10.60.0.0/16: .0.1 is the gateway.
  ipv4: `10.60.${((i + 2) >> 8) & 255}.${(i + 2) & 255}`,
  mtu: 1400,
  bridge: BR,
});

function ourLinks(): number {
  const out = execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' });
  return (JSON.parse(out) as Array<{ ifname: string }>).filter((l) => isOurs(l.ifname) && l.ifname !== BR).length;
}

async function main(): Promise<void> {
  const links = createLinks();
  const nft = createNftables();
  await links.apply([{ op: 'create-bridge', name: BR, mtu: 1400 }, { op: 'set', name: BR, up: true }]);
  const dir = mkdtempSync(join(tmpdir(), 'nodevirt-bench-'));
  const store = createStore({ stateDir: dir });
  await store.open();

  const dhcpService = createDhcpService({ openPacketSocket, pollMs: 60_000 });
  dhcpService.start();
  const dhcp: DhcpPort = {
    attach(nic) {
      dhcpService.attach({ ifname: nic.tap, mac: nic.mac, ip: nic.ipv4!, prefixLength: 16, serverIp: '10.60.0.1', router: '10.60.0.1', mtu: nic.mtu });
      // The tap exists now: open its socket at once instead of at the next poll.
      dhcpService.linkChanged(nic.tap);
    },
    detach(tap) {
      dhcpService.detach(tap);
    },
  };

  const rows: Array<[string, number, number]> = [];
  const time = async (label: string, fn: () => Promise<void>) => {
    const t0 = performance.now();
    await fn();
    const ms = performance.now() - t0;
    rows.push([label, ms, ms / N]);
  };

  for (const [round, withDhcp] of [['dhcp', true], ['nodhcp', false]] as const) {
    const plumber = createNicPlumber({ links, nft, records: store.sublevel<NicRecord>(`nics-${round}`), ...(withDhcp ? { dhcp } : {}) });
    const what = withDhcp ? 'tap+mtu+master+up+rules+DHCP' : 'tap+mtu+master+up+rules';
    // The bulk path the VM layer uses for many NICs: one ip -batch, one nft -f, one link group delete.
    const bulk = Array.from({ length: N }, (_, i) => spec(i, `${round}b`));
    await time(`nodevirt plumbMany, one batch of ${N} (${what})`, async () => {
      await plumber.plumbMany(bulk);
    });
    if (withDhcp && dhcpService.status().filter((s) => s.open).length !== N) throw new Error('not every DHCP server opened its socket (bulk)');
    if (ourLinks() !== N) throw new Error(`bulk: expected ${N} taps, found ${ourLinks()}`);
    await time(`nodevirt unplumbMany, one batch of ${N} (${what})`, async () => {
      await plumber.unplumbMany(bulk.map((s) => `${s.vmId}/${s.nicId}`));
    });
    // The DHCP sockets' kernel release runs on the addon's closer threads after unplumbMany returned; shown
    // on its own line so the background cost is visible, not hidden.
    if (withDhcp) await time(`  ...then until the ${N} DHCP sockets are released in the kernel (background)`, () => packetClosesDrained());
    if (ourLinks() !== 0) throw new Error('taps left after unplumbMany');
    await time(`nodevirt plumb, sequential (${what})`, async () => {
      for (let i = 0; i < N; i++) await plumber.plumb(spec(i, round));
    });
    if (withDhcp && dhcpService.status().filter((s) => s.open).length !== N) throw new Error('not every DHCP server opened its socket');
    if (ourLinks() !== N) throw new Error(`expected ${N} taps, found ${ourLinks()}`);
    await time(`nodevirt unplumb, sequential (${what})`, async () => {
      for (let i = 0; i < N; i++) await plumber.unplumb(`bench-${round}-${i}/nic0`);
    });
    if (ourLinks() !== 0) throw new Error('taps left after unplumb');

    const conc = async (fn: (i: number) => Promise<unknown>) => {
      let next = 0;
      await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
        while (next < N) await fn(next++);
      }));
    };
    await time(`nodevirt plumb, ${CONCURRENCY} at a time (${what})`, () => conc((i) => plumber.plumb(spec(i, `${round}c`))));
    await time(`nodevirt unplumb, ${CONCURRENCY} at a time (${what})`, () => conc((i) => plumber.unplumb(`bench-${round}c-${i}/nic0`)));
    if (ourLinks() !== 0) throw new Error('taps left after concurrent unplumb');
  }
  dhcpService.stop();

  // The same kernel work as a shell loop: one ip/nft process per step, like a hand-written script.
  const shDir = mkdtempSync(join(tmpdir(), 'nodevirt-bench-sh-'));
  const taps = Array.from({ length: N }, (_, i) => tapName(`sh-${i}`, 'nic0'));
  taps.forEach((t, i) => {
    const s = spec(i, 'sh');
    writeFileSync(join(shDir, `${t}.add.nft`), renderGuardAdd([{ ifname: t, mode: 'bridge', mac: s.mac, ipv4: s.ipv4! }]));
    writeFileSync(join(shDir, `${t}.del.nft`), renderGuardRemove([t]));
  });
  const loop = (body: string) => `set -e; for t in ${taps.join(' ')}; do ${body}; done`;
  const sh = (label: string, script: string) => {
    const t0 = performance.now();
    const r = spawnSync('bash', ['-c', script], { cwd: shDir, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${label}: ${r.stderr}`);
    const ms = performance.now() - t0;
    rows.push([label, ms, ms / N]);
  };
  sh('shell loop add (ip tuntap add; ip link set mtu master up; nft -f)', loop(`ip tuntap add mode tap name $t; ip link set dev $t mtu 1400 master ${BR} up; nft -f $t.add.nft`));
  if (ourLinks() !== N) throw new Error('shell loop did not create every tap');
  sh('shell loop remove (nft -f; ip link del)', loop('nft -f $t.del.nft; ip link del dev $t'));
  if (ourLinks() !== 0) throw new Error('shell loop left taps');
  // What batching could buy: every NIC's link steps in one ip -batch, every guard in one nft -f, and the
  // taps removed with one `ip link del group` (one kernel unregister batch instead of one per tap).
  writeFileSync(join(shDir, 'all.ip'), taps.map((t) => `tuntap add mode tap name ${t}\nlink set dev ${t} mtu 1400 master ${BR} group 4242 up\n`).join(''));
  writeFileSync(join(shDir, 'all.add.nft'), renderGuardAdd(taps.map((t, i) => ({ ifname: t, mode: 'bridge' as const, mac: spec(i, 'sh').mac, ipv4: spec(i, 'sh').ipv4! }))));
  writeFileSync(join(shDir, 'all.del.nft'), renderGuardRemove(taps));
  sh('batched add (one ip -batch, one nft -f for all NICs)', 'set -e; ip -batch all.ip; nft -f all.add.nft');
  if (ourLinks() !== N) throw new Error('batched add did not create every tap');
  sh('batched remove (one nft -f; ip link del group)', 'set -e; nft -f all.del.nft; ip link del group 4242');
  if (ourLinks() !== 0) throw new Error('batched remove left taps');
  rmSync(shDir, { recursive: true, force: true });

  // The kernel's own cost of a tap, through the addon (no process at all).
  const { createTap, deleteTap } = await import('../../daemon/host/native.js');
  const nat = taps.map((t) => t.replace(/^nvt/, 'nvv'));
  let t0 = performance.now();
  for (const t of nat) createTap(t, { owner: 0 });
  rows.push(['native createTap only', performance.now() - t0, (performance.now() - t0) / N]);
  t0 = performance.now();
  for (const t of nat) deleteTap(t);
  rows.push(['native deleteTap only', performance.now() - t0, (performance.now() - t0) / N]);

  await store.close();
  rmSync(dir, { recursive: true, force: true });

  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`\nNIC plumbing, ${N} NICs on one bridge (node ${process.version}, ${process.env.NODEVIRT_BENCH_NETNS})`);
  console.log(`${'step'.padEnd(w)}  ${'total ms'.padStart(9)}  ${'ms/NIC'.padStart(7)}`);
  for (const [label, total, per] of rows) console.log(`${label.padEnd(w)}  ${total.toFixed(0).padStart(9)}  ${per.toFixed(2).padStart(7)}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});

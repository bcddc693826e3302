// End to end through the daemon process: DELETE of a running VM leaves nothing behind (domain, tap, nft
// rules, files, leases, MAC and IP allocations: a new VM takes the same MAC and fixed IP and gets that lease),
// and DELETE ?keepDisks=true removes everything but the VM's volume.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_CMDLINE, GUEST_OUT } from '../guest/paths.js';
import { startDaemon, type DaemonProcess } from './helpers/daemon-process.js';
import {
  deleteNetwork,
  deleteVm,
  getVm,
  listLeases,
  putNetwork,
  putVm,
  randomSubnet,
  runId,
  serialPath,
  startVm,
  waitForLease,
  waitForLibvirt,
  type VmView,
} from './helpers/vm-api.js';

const BOOT_MS = 120_000;
const why =
  process.getuid?.() !== 0 ? 'needs root' : existsSync(join(GUEST_OUT, 'vmlinuz')) ? undefined : `no test guest in ${GUEST_OUT} (test/guest/build.sh)`;

const sh = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const domains = () => sh('virsh', '-c', 'qemu:///system', 'list', '--all', '--name').split('\n').map((l) => l.trim());
const links = () => sh('ip', '-o', 'link', 'show');
const ruleset = () => sh('nft', 'list', 'ruleset');

describe.skipIf(why !== undefined)(`VM delete through the daemon leaves nothing${why ? ` (skipped: ${why})` : ''}`, () => {
  const id = runId();
  const net = `e2edel-${id}`;
  const first = `e2edel-${id}-a`;
  const second = `e2edel-${id}-b`;
  const subnet = randomSubnet();
  const ip = `${subnet.prefix}.50`;
  const mac = `02:${id.match(/../g)!.join(':')}:5e:01`;
  let daemon: DaemonProcess | undefined;

  const spec = (name: string) => ({
    memory: 128,
    interfaces: [{ network: net, ip, mac }],
    disks: [{ name: 'data', volume: { sizeBytes: 16 * 2 ** 20 } }],
    cloudInit: { metaData: `instance-id: ${name}\nlocal-hostname: ${name}\n` },
    kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz'), cmdline: `${GUEST_CMDLINE} nodevirt.stay=1` },
  });
  const vmDir = (name: string) => join(daemon!.stateDir, 'storage', 'vms', name);

  /** Starts the VM and waits until our DHCP server has ACKed its fixed IP to its fixed MAC. */
  async function runUntilAcked(name: string): Promise<VmView> {
    const put = await putVm(daemon!, name, spec(name));
    expect(put.status.nics[0]).toMatchObject({ ip, mac });
    await startVm(daemon!, name);
    await waitForLease(daemon!, mac, { ip, timeoutMs: BOOT_MS });
    const vm = (await getVm(daemon!, name))!;
    expect(vm.status.nics[0]).toMatchObject({ ip, mac, dhcpAcked: true });
    return vm;
  }

  beforeAll(async () => {
    daemon = await startDaemon();
    await waitForLibvirt(daemon);
    await putNetwork(daemon, net, { type: 'nat', nat: { subnet: subnet.cidr } });
  }, 60_000);

  afterAll(async () => {
    if (daemon) {
      for (const vm of [first, second]) await deleteVm(daemon, vm).catch((e) => console.warn(`cleanup: ${e}`));
      await deleteNetwork(daemon, net).catch((e) => console.warn(`cleanup: ${e}`));
      // Also takes the volume kept by the keepDisks case.
      await daemon.remove();
    }
  }, 120_000);

  it('after DELETE of a running VM: no domain, tap, rule, file, lease, MAC or IP; the same MAC and IP serve a new VM', async () => {
    const d = daemon!;
    const vm = await runUntilAcked(first);
    const { domain } = vm.status;
    const tap = vm.status.nics[0]!.tap!;
    // What must go: checked present first, so the absence below means something.
    expect(domains()).toContain(domain);
    expect(links()).toContain(`${tap}:`);
    expect(ruleset()).toContain(tap);
    expect(readdirSync(vmDir(first)).sort()).toEqual(['data.qcow2', 'seed.iso']);
    expect(existsSync(serialPath(domain))).toBe(true);
    expect(await listLeases(d, { interface: tap })).toHaveLength(1);

    await deleteVm(d, first);

    expect(await getVm(d, first)).toBeUndefined();
    expect(domains()).not.toContain(domain);
    expect(existsSync(`/sys/class/net/${tap}`)).toBe(false);
    expect(links()).not.toContain(tap);
    const rules = ruleset();
    expect(rules).not.toContain(tap);
    expect(rules).not.toContain(mac);
    expect(existsSync(vmDir(first)) ? readdirSync(vmDir(first)) : []).toEqual([]);
    expect(existsSync(serialPath(domain))).toBe(false);
    expect(await listLeases(d, { interface: tap })).toEqual([]);
    expect(await listLeases(d, { mac })).toEqual([]);

    // MAC and IP were released: a new VM asks for both and gets them, and the guest gets the lease.
    const again = await runUntilAcked(second);
    expect(again.status.nics[0]!.tap).not.toBeNull();
  }, 300_000);

  it('DELETE ?keepDisks=true keeps the volume and removes the rest', async () => {
    const d = daemon!;
    const vm = (await getVm(d, second))!;
    expect(vm.status.phase).toBe('Running');
    const tap = vm.status.nics[0]!.tap!;
    const volume = join(vmDir(second), 'data.qcow2');
    expect(existsSync(volume)).toBe(true);

    await deleteVm(d, second, { keepDisks: true });

    expect(await getVm(d, second)).toBeUndefined();
    expect(domains()).not.toContain(vm.status.domain);
    expect(existsSync(`/sys/class/net/${tap}`)).toBe(false);
    expect(ruleset()).not.toContain(tap);
    expect(await listLeases(d, { mac })).toEqual([]);
    expect(readdirSync(vmDir(second))).toEqual(['data.qcow2']);
    // Still a usable qcow2 of the size asked for, not a truncated leftover.
    const info = JSON.parse(sh('qemu-img', 'info', '--output=json', '-U', volume)) as { format: string; 'virtual-size': number };
    expect(info).toMatchObject({ format: 'qcow2', 'virtual-size': 16 * 2 ** 20 });
  }, 120_000);
});

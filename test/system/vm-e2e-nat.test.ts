// End to end through the daemon process: a NAT network whose uplink is a veth into an "outside" namespace;
// the test guest gets its IP from our DHCP, fetches from a server outside (seen masqueraded as the uplink's
// address), and a port forward on the uplink reaches the guest's HTTP responder from outside.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_CMDLINE, GUEST_OUT } from '../guest/paths.js';
import { startDaemon, type DaemonProcess } from './helpers/daemon-process.js';
import { createTestNetns, netnsUnavailable, type TestNetns } from './helpers/netns.js';
import { deleteNetwork, deleteVm, openSerial, putNetwork, putVm, randomSubnet, runId, startVm, waitForLease, waitForLibvirt, type SerialConsole } from './helpers/vm-api.js';

// Two shared cores under TCG, other engineers booting guests too: wide on purpose.
const BOOT_MS = 120_000;
const why = netnsUnavailable() ?? (existsSync(join(GUEST_OUT, 'vmlinuz')) ? undefined : `no test guest in ${GUEST_OUT} (test/guest/build.sh)`);

describe.skipIf(why !== undefined)(`VM on a NAT network through the daemon${why ? ` (skipped: ${why})` : ''}`, () => {
  const id = runId();
  const vm = `e2enat-${id}`;
  const net = `e2enat-${id}`;
  const uplink = `nvu${id}`; // root side of the veth, <= 15 chars
  const outside = randomSubnet();
  let natSubnet = randomSubnet();
  while (natSubnet.prefix === outside.prefix) natSubnet = randomSubnet();
  const uplinkIp = `${outside.prefix}.1`;
  const serverIp = `${outside.prefix}.2`;
  const serverPort = 18000 + (parseInt(id.slice(0, 3), 16) % 1000);
  const hostPort = 28000 + (parseInt(id.slice(3), 16) % 1000);
  let daemon: DaemonProcess | undefined;
  let ns: TestNetns | undefined;
  let server: ChildProcess | undefined;
  let serial: SerialConsole | undefined;
  let guestIp = '';

  beforeAll(async () => {
    ns = createTestNetns('e2enat');
    execFileSync('ip', ['link', 'add', uplink, 'type', 'veth', 'peer', 'name', 'out0', 'netns', ns.name]);
    execFileSync('ip', ['addr', 'add', `${uplinkIp}/24`, 'dev', uplink]);
    execFileSync('ip', ['link', 'set', uplink, 'up']);
    ns.exec('ip', ['addr', 'add', `${serverIp}/24`, 'dev', 'out0']);
    ns.exec('ip', ['link', 'set', 'out0', 'up']);
    // Routing between the bridge and the uplink needs forwarding in the root namespace. libvirt usually has it
    // on already and the NAT network turns it on too; set it here so the test depends on neither.
    execFileSync('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    // "Outside" knows no route to the NAT subnet: only masqueraded traffic can get an answer. The server
    // answers with the peer address it saw, which proves the masquerade.
    server = spawn(
      'ip',
      ['netns', 'exec', ns.name, process.execPath, '-e', `require('net').createServer((s)=>s.end('outside-saw '+s.remoteAddress+'\\n')).listen(${serverPort},'${serverIp}',()=>console.log('up'))`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((ok) => server!.stdout!.once('data', () => ok()));
    daemon = await startDaemon();
    await waitForLibvirt(daemon);
  }, 60_000);

  afterAll(async () => {
    serial?.close();
    if (daemon) {
      await deleteVm(daemon, vm).catch((e) => console.warn(`cleanup: ${e}`));
      await deleteNetwork(daemon, net).catch((e) => console.warn(`cleanup: ${e}`));
      await daemon.remove();
    }
    server?.kill('SIGKILL');
    // Deleting the namespace takes the veth pair with it, our uplink included.
    ns?.remove();
    if (existsSync(`/sys/class/net/${uplink}`)) execFileSync('ip', ['link', 'del', uplink]);
  }, 120_000);

  it('the guest gets its IP from our DHCP and reaches a server outside through masquerade', async () => {
    const d = daemon!;
    await putNetwork(d, net, {
      type: 'nat',
      nat: { subnet: natSubnet.cidr, uplink, forwards: [{ protocol: 'tcp', hostPort, vm, nic: 'net0', vmPort: 8080 }] },
    });
    const put = await putVm(d, vm, {
      memory: 128,
      interfaces: [{ network: net }],
      kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz'), cmdline: `${GUEST_CMDLINE} nodevirt.stay=1` },
    });
    const { ip, mac } = put.status.nics[0]!;
    expect(ip).toMatch(new RegExp(`^${natSubnet.prefix.replace(/\./g, '\\.')}\\.\\d+$`));

    const started = await startVm(d, vm);
    serial = await openSerial(started.status.domain);
    const dhcp = await serial.waitFor(/NODEVIRT-DHCP iface=eth0/, BOOT_MS);
    expect(dhcp).toMatch(new RegExp(`mac=${mac} status=ok ip=${ip!.replace(/\./g, '\\.')} `));
    expect(dhcp).toContain(`router=${natSubnet.prefix}.1 `);
    expect(await serial.waitFor(/NODEVIRT-PING/, BOOT_MS)).toContain(`target=${natSubnet.prefix}.1 status=ok`);
    await serial.waitFor(/NODEVIRT-GUEST-READY/, BOOT_MS);
    const lease = await waitForLease(d, mac, { ip: ip!, timeoutMs: 10_000 });
    expect(lease.acks).toBeGreaterThanOrEqual(1);

    // Out: the guest connects to the outside server, which sees the uplink's address, not the guest's. nc, not
    // wget: the guest's static busybox wget segfaults (exit 139) even on a literal address.
    const fetched = await serial.run(`busybox nc -w 5 ${serverIp} ${serverPort} </dev/null`, 30_000);
    expect(fetched, serial.text().slice(-2000)).toEqual({ out: [`outside-saw ${uplinkIp}`], exit: 0 });
    const table = execFileSync('nft', ['list', 'ruleset'], { encoding: 'utf8' });
    expect(table).toMatch(new RegExp(`oifname "${uplink}" counter packets [1-9]\\d* bytes \\d+ masquerade`));

    console.info(`nat e2e: ${vm} ${ip} on ${natSubnet.cidr}; outside ${serverIp}:${serverPort} saw ${uplinkIp}; ip_forward=${readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim()}`);
    guestIp = ip!;
  }, 240_000);

  it("a port forward on the uplink reaches the guest's responder from outside", async () => {
    expect(guestIp, 'the first test did not boot the guest').toMatch(/^10\./);
    // The forward names <vm>/<nic>; its DNAT exists only if the network found the VM's NIC address.
    expect(execFileSync('nft', ['list', 'ruleset'], { encoding: 'utf8' })).toContain(`dport ${hostPort} counter`);
    // From outside to the uplink's address: the forwarded port lands on the guest's HTTP responder.
    let body: string;
    try {
      // A node client, not busybox wget: it says why it failed (refused, reset, timeout).
      body = ns!.exec(process.execPath, ['-e', `const s=require('net').connect(${hostPort},'${uplinkIp}',()=>s.write('GET / HTTP/1.0\\r\\n\\r\\n'));let d='';s.on('data',c=>d+=c);s.on('end',()=>{process.stdout.write(d.split('\\r\\n\\r\\n').slice(1).join(''))});s.on('error',e=>{console.error(e.code);process.exit(2)});setTimeout(()=>{console.error('TIMEOUT');process.exit(3)},5000).unref()`]);
    } catch (e) {
      const rules = execFileSync('nft', ['-a', 'list', 'ruleset'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(String(hostPort)) || l.includes(uplink) || l.includes(guestIp));
      throw new Error(`${e} ${(e as { stderr?: string }).stderr ?? ''}\nour rules now:\n${rules.join('\n')}`);
    }
    expect(body).toMatch(new RegExp(`^hostname=\\S+ ip=${guestIp.replace(/\./g, '\\.')}\\n$`));
    expect(execFileSync('nft', ['list', 'ruleset'], { encoding: 'utf8' })).toMatch(new RegExp(`dport ${hostPort} counter packets [1-9]`));
  }, 240_000);
});

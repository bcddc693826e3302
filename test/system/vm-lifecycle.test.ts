// The VM lifecycle end to end through the compiled daemon process and its API, with the test guest on a
// bridge network with IPAM: (4) a running guest survives a daemon SIGTERM and a SIGKILL + restart (same QEMU
// pid, status intact, our DHCP answers its renew) and a libvirtd restart (same QEMU, actions work again), (5) kill -9 of QEMU: a RerunOnFailure VM runs again
// within seconds on a new QEMU and gets its IP again; a Manual VM stays stopped, shown Failed; a virsh
// destroy behind the daemon's back is noticed; each shows up on GET /v1/events.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_CMDLINE, GUEST_OUT } from '../guest/paths.js';
import { startDaemon, type DaemonProcess } from './helpers/daemon-process.js';
import { readSerialUntil } from './helpers/serial.js';

const BUS = '/run/dbus/system_bus_socket';
const RUN_DIR = '/run/nodevirt';
const BOOT_TIMEOUT_MS = 120_000;
const missing = process.getuid?.() !== 0 ? 'needs root' : !existsSync(BUS) ? `no system bus at ${BUS}` : undefined;

interface VmWire {
  status: {
    phase: string;
    running: boolean | null;
    conditions: Array<{ type: string; status: string; reason: string }>;
    nics: Array<{ name: string; mac: string; ip: string | null; tap: string | null; dhcpAcked: boolean }>;
  };
}
interface LeaseWire {
  interface: string;
  mac: string;
  ip: string;
  lastAckAt: string | null;
  acks: number;
}

const qemuPid = (domain: string): number | undefined => {
  try {
    const pid = Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`) ? pid : undefined;
  } catch {
    return undefined;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Follows GET /v1/events (Server-Sent Events) on the daemon's socket and keeps every event's JSON. */
function followEvents(sock: string, types: string): { events: Array<{ type: string; subject: string; data?: { reason?: string } }>; close: () => void } {
  const events: Array<{ type: string; subject: string; data?: { reason?: string } }> = [];
  let buf = '';
  const req = request({ socketPath: sock, path: `/v1/events?types=${encodeURIComponent(types)}`, headers: { accept: 'text/event-stream' } }, (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buf += chunk;
      let end: number;
      while ((end = buf.indexOf('\n\n')) !== -1) {
        const frame = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = frame.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
        if (data) events.push(JSON.parse(data));
      }
    });
  });
  req.on('error', () => undefined);
  req.end();
  return { events, close: () => req.destroy() };
}

describe.skipIf(missing !== undefined)(`VM lifecycle through the daemon process${missing ? ` (skipped: ${missing})` : ''}`, () => {
  const id = randomBytes(3).toString('hex');
  const network = `nvlc${id}`;
  const subnet = `10.${200 + (parseInt(id.slice(0, 2), 16) % 50)}.${parseInt(id.slice(2, 4), 16)}.0/24`;
  const names = { keep: `lc4-${id}`, rerun: `lc5r-${id}`, manual: `lc5m-${id}` };
  const domainOf = (vm: string) => `nodevirt-${vm}`;
  let d: DaemonProcess;
  const sockets: Socket[] = [];

  const api = async <T>(method: string, path: string, body?: unknown, okStatus = [200, 201, 204]): Promise<T> => {
    const r = await d.api(method, path, body, 180_000);
    if (!okStatus.includes(r.status)) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as T;
  };
  const vm = (name: string) => api<VmWire>('GET', `/v1/vms/${name}`);
  const until = async <T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, ms: number): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (ok(v)) return v;
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}: ${JSON.stringify(v)}`);
      await sleep(250);
    }
  };
  const spec = (name: string, runStrategy: string) => ({
    name,
    memory: 256,
    runStrategy,
    stopGracePeriodSeconds: 5,
    interfaces: [{ network }],
    kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz'), cmdline: `${GUEST_CMDLINE} nodevirt.stay=1` },
  });
  /** Reads the guest's console (QEMU's serial socket) until the marker; keeps the socket open for writes. */
  const serial = (vmName: string, marker: RegExp) => {
    const r = readSerialUntil(join(RUN_DIR, `${domainOf(vmName)}.serial`), marker, BOOT_TIMEOUT_MS);
    sockets.push(r.socket);
    return r;
  };

  beforeAll(async () => {
    execFileSync('bash', [resolve('test/guest/build.sh')], { stdio: 'pipe' });
    d = await startDaemon();
    const net = (await api<{ network: { status: { bridge: string } } }>('PUT', `/v1/networks/${network}`, { type: 'bridge', ipam: { subnet } })).network;
    // The host plays the LAN's router (the gateway is .1), so the guest's unicast renew has a next hop.
    execFileSync('ip', ['addr', 'add', `${subnet.replace(/0\/24$/, '1')}/24`, 'dev', net.status.bridge]);
  }, 180_000);

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    if (d) {
      if (d.pid() === undefined) await d.start().catch(() => undefined);
      for (const n of Object.values(names)) await d.api('DELETE', `/v1/vms/${n}`, undefined, 120_000).catch(() => undefined);
      await d.api('DELETE', `/v1/networks/${network}`).catch(() => undefined);
      await d.remove();
    }
    // Whatever a failed assertion left behind.
    for (const n of Object.values(names)) {
      execFileSync('sh', ['-c', `virsh -q destroy ${domainOf(n)} >/dev/null 2>&1; virsh -q undefine ${domainOf(n)} >/dev/null 2>&1; true`]);
    }
  }, 300_000);

  it('(4) a running guest survives SIGTERM and SIGKILL of the daemon and a libvirtd restart: same QEMU, status intact, our DHCP answers its renew', async () => {
    const name = names.keep;
    await api('PUT', `/v1/vms/${name}`, spec(name, 'Always'));
    // Always: the reconciler starts it at creation.
    const up = await until('Running', () => vm(name), (v) => v.status.phase === 'Running', 60_000);
    const boot = serial(name, /NODEVIRT-GUEST-READY/);
    await boot.done;
    // QEMU's serial socket serves one client at a time: free it for the renew step.
    boot.socket.destroy();
    const acked = await until('dhcpAcked', () => vm(name), (v) => v.status.nics[0]!.dhcpAcked, 30_000);
    const nic = acked.status.nics[0]!;
    expect(nic.tap).toBe(up.status.nics[0]!.tap);
    const pid = qemuPid(domainOf(name));
    expect(pid).toBeDefined();

    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      const code = await d.stop(signal);
      if (signal === 'SIGTERM') expect(code).toBe(0);
      expect(qemuPid(domainOf(name)), `QEMU after the daemon's ${signal}`).toBe(pid);
      await d.start();
      // Give the reconciler its first pass over the adopted VM.
      await sleep(2000);
      const after = await vm(name);
      expect(after.status.phase).toBe('Running');
      expect(after.status.nics[0]).toEqual(nic);
      expect(after.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'True' }));
      expect(qemuPid(domainOf(name)), `QEMU after the daemon came back from ${signal}`).toBe(pid);
    }

    // libvirtd restarts under the daemon: QEMU keeps running (libvirtd re-attaches to it on start), the daemon
    // reconnects and resyncs without restarting the VM, and actions reach the same domain again.
    const libvirtdPid = Number(readFileSync('/run/libvirtd.pid', 'utf8').trim());
    try {
      process.kill(libvirtdPid, 'SIGTERM');
      await until('libvirtd to exit', async () => existsSync(`/proc/${libvirtdPid}`), (alive) => !alive, 15_000);
    } finally {
      execFileSync('libvirtd', ['-d']);
    }
    await until('the daemon back on libvirt', () => api<{ libvirt: { connected: boolean } }>('GET', '/v1/node'), (n) => n.libvirt.connected, 30_000);
    // Past the reconnect resync.
    await sleep(3000);
    expect(qemuPid(domainOf(name)), 'QEMU after the libvirtd restart').toBe(pid);
    expect((await vm(name)).status.phase).toBe('Running');
    expect((await api<VmWire>('POST', `/v1/vms/${name}/pause`)).status.phase).toBe('Paused');
    expect((await api<VmWire>('POST', `/v1/vms/${name}/resume`)).status.phase).toBe('Running');
    expect(qemuPid(domainOf(name))).toBe(pid);

    // The guest renews now (busybox udhcpc renews on SIGUSR1) through the console's command hook.
    const lease = async () => (await api<{ items: LeaseWire[] }>('GET', '/v1/leases')).items.find((l) => l.interface === nic.tap && l.mac === nic.mac)!;
    const before = await lease();
    expect(before.ip).toBe(nic.ip);
    const renew = serial(name, new RegExp(`NODEVIRT-DHCP iface=eth0 [^\\n]*status=ok[^\\n]*event=renew`));
    await sleep(500);
    renew.socket.write('!killall -USR1 udhcpc\n');
    const text = await renew.done;
    expect(text).toMatch(new RegExp(`status=ok ip=${nic.ip!.replace(/\./g, '\\.')} `));
    const after = await until('the renew ACK in the lease', lease, (l) => l.acks > before.acks, 15_000);
    expect(Date.parse(after.lastAckAt!)).toBeGreaterThan(Date.parse(before.lastAckAt!));
    console.info(`lifecycle (4): QEMU ${pid} kept across SIGTERM and SIGKILL; renew ACK ${before.lastAckAt} -> ${after.lastAckAt} (acks ${before.acks} -> ${after.acks})`);

    await api('DELETE', `/v1/vms/${name}`);
    expect(qemuPid(domainOf(name))).toBeUndefined();
  }, 400_000);

  it('(5) kill -9 of QEMU: a RerunOnFailure VM runs again within seconds on a new QEMU with its IP; a Manual VM stays stopped', async () => {
    await api('PUT', `/v1/vms/${names.rerun}`, spec(names.rerun, 'RerunOnFailure'));
    await api('PUT', `/v1/vms/${names.manual}`, spec(names.manual, 'Manual'));
    // start runs as an operation; ?wait answers once it finished.
    await api('POST', `/v1/vms/${names.manual}/start?wait=120`);
    const rerun = await until('RerunOnFailure VM Running', () => vm(names.rerun), (v) => v.status.phase === 'Running', 60_000);
    const ip = rerun.status.nics[0]!.ip!;
    const pidR = qemuPid(domainOf(names.rerun))!;
    const pidM = qemuPid(domainOf(names.manual))!;
    expect(pidR).toBeGreaterThan(0);
    expect(pidM).toBeGreaterThan(0);

    const feed = followEvents(d.sock, 'vm.');
    await sleep(300);
    const t0 = performance.now();
    process.kill(pidR, 'SIGKILL');
    process.kill(pidM, 'SIGKILL');
    const back = await until(
      'a new QEMU for the RerunOnFailure VM',
      async () => ({ pid: qemuPid(domainOf(names.rerun)), vm: await vm(names.rerun) }),
      (x) => x.pid !== undefined && x.pid !== pidR && x.vm.status.phase === 'Running',
      20_000,
    );
    const ms = Math.round(performance.now() - t0);
    expect(back.vm.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'True', reason: 'RestartAfterCrashed' }));
    expect(back.vm.status.nics[0]!.ip).toBe(ip);

    // The new QEMU boots the guest again and our DHCP gives it the same IP on the re-plumbed tap.
    const boot = serial(names.rerun, /NODEVIRT-GUEST-READY/);
    const text = await boot.done;
    expect(text).toMatch(new RegExp(`NODEVIRT-DHCP iface=eth0 [^\\n]*status=ok ip=${ip.replace(/\./g, '\\.')} `));

    const manual = await vm(names.manual);
    expect(manual.status.phase).toBe('Failed');
    expect(manual.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'False', reason: 'Crashed' }));
    expect(manual.status.nics[0]!.tap).toBeNull();
    expect(qemuPid(domainOf(names.manual))).toBeUndefined();
    console.info(`lifecycle (5): RerunOnFailure VM on a new QEMU ${ms} ms after kill -9 (pid ${pidR} -> ${back.pid}); Manual VM ${manual.status.phase}`);

    // virsh destroy behind the daemon's back: noticed, and for RerunOnFailure a stop, not a failure.
    execFileSync('virsh', ['-q', 'destroy', domainOf(names.rerun)], { stdio: 'pipe' });
    const destroyed = await until('the destroy noticed', () => vm(names.rerun), (v) => v.status.phase === 'Stopped' && v.status.nics[0]!.tap === null, 15_000);
    expect(destroyed.status.running).toBe(false);
    expect(destroyed.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'False', reason: 'DestroyedOutsideDaemon' }));
    await sleep(3000);
    expect(qemuPid(domainOf(names.rerun))).toBeUndefined();

    const seen = feed.events.map((e) => `${e.type} ${e.subject} ${e.data?.reason ?? ''}`);
    feed.close();
    expect(seen).toContain(`vm.crashed vms/${names.manual} Crashed`);
    expect(seen).toContain(`vm.crashed vms/${names.rerun} Crashed`);
    expect(seen).toContain(`vm.restarted vms/${names.rerun} RestartAfterCrashed`);
    expect(seen).toContain(`vm.stopped vms/${names.rerun} DestroyedOutsideDaemon`);
  }, 400_000);
});

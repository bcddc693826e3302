// VM start benchmark (npm run bench:vm, as root; minutes; not part of the test suite): nodevirt's PUT + start
// through the daemon process against `virsh create` of the same guest on a libvirt NAT network with dnsmasq,
// then BENCH_CONCURRENT VMs created and started at once. Prints one table; env knobs below (BENCH_*).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GUEST_CMDLINE, GUEST_OUT } from '../guest/paths.js';
import { startDaemon, type DaemonProcess } from '../system/helpers/daemon-process.js';
import { deleteNetwork, deleteVm, getVm, listLeases, openSerial, putNetwork, putVm, randomSubnet, startVm, waitForLease, waitForLibvirt, type SerialConsole } from '../system/helpers/vm-api.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const CONCURRENT = Number(process.env.BENCH_CONCURRENT ?? 50);
const MEMORY_MIB = Number(process.env.BENCH_MEMORY_MIB ?? 128);
const BOOT_TIMEOUT_MS = Number(process.env.BENCH_BOOT_TIMEOUT_MS ?? 180_000);
const CONCURRENT_TIMEOUT_MS = Number(process.env.BENCH_CONCURRENT_TIMEOUT_MS ?? 900_000);
const URI = 'qemu:///system';

const run = promisify(execFile);
const virsh = (...args: string[]) => run('virsh', ['-c', URI, ...args], { encoding: 'utf8' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const id = randomBytes(2).toString('hex');
const log = (m: string) => process.stderr.write(`[bench:vm ${new Date().toISOString().slice(11, 19)}] ${m}\n`);

/** Nearest-rank percentile; NaN for no samples. */
function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

function lines(child: ChildProcess, stream: 'stdout' | 'stderr', onLine: (l: string) => void): void {
  let buf = '';
  child[stream]!.on('data', (c: Buffer) => {
    buf += c.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

/**
 * DHCP as the wire shows it, for both systems alike: tcpdump on every interface (taps, our bridge, libvirt's
 * bridge), the earliest sighting of each (client MAC, message type) with the kernel's capture timestamp.
 */
function watchDhcp(): { ready: Promise<void>; first(mac: string, type: string): number | undefined; stop(): void } {
  const child = spawn('tcpdump', ['-i', 'any', '-n', '-tt', '-l', '-v', 'udp and (port 67 or port 68)'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const seen = new Map<string, number>();
  let block: { ts: number; text: string } | undefined;
  const flush = () => {
    if (!block) return;
    const mac = /Client-Ethernet-Address ([0-9a-f:]{17})/.exec(block.text)?.[1];
    const type = /DHCP-Message \(53\), length 1: (\w+)/.exec(block.text)?.[1];
    if (mac && type) {
      const k = `${mac}/${type}`;
      if (!seen.has(k) || seen.get(k)! > block.ts) seen.set(k, block.ts);
    }
  };
  lines(child, 'stdout', (l) => {
    const m = /^(\d+\.\d+) /.exec(l);
    if (m) {
      flush();
      block = { ts: Number(m[1]) * 1000, text: l };
    } else if (block) block.text += `\n${l}`;
    // A block ends when the next starts; the options arrive in the same write, so flush eagerly too.
    if (block && /DHCP-Message/.test(l)) flush();
  });
  const ready = new Promise<void>((ok, fail) => {
    lines(child, 'stderr', (l) => /listening on/.test(l) && ok());
    child.on('exit', (c) => fail(new Error(`tcpdump exited (${c})`)));
  });
  return { ready, first: (mac, type) => seen.get(`${mac.toLowerCase()}/${type}`), stop: () => child.kill() };
}

/** libvirt's lifecycle events with libvirt's own timestamps, for both systems alike. */
function watchLifecycle(): { ready: Promise<void>; started(domain: string): number | undefined; stop(): void } {
  const child = spawn('virsh', ['-c', URI, 'event', '--loop', '--timestamp', '--event', 'lifecycle'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const started = new Map<string, number>();
  lines(child, 'stdout', (l) => {
    // 2026-11-23 21:50:00.123+0000: event 'lifecycle' for domain 'x': Started Booted
    const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d+)\+0000: event 'lifecycle' for domain '?([^']+?)'?: Started/.exec(l);
    if (m && !started.has(m[3]!)) started.set(m[3]!, Date.parse(`${m[1]}T${m[2]}Z`));
  });
  // virsh prints nothing until the first event: give it a moment to register with libvirtd.
  return { ready: sleep(1000).then(() => undefined), started: (d) => started.get(d), stop: () => child.kill() };
}

async function until<T>(what: string, ms: number, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

interface Sample {
  started?: number;
  ack?: number;
  discoverToAck?: number;
  apiReturned?: number;
  startedToAck?: number;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (libvirt, tcpdump, the daemon\'s taps)');
  // GUEST_CMDLINE carries no_timer_check (see test/guest/paths.ts); BENCH_CMDLINE_EXTRA appends more.
  const cmdline = `${GUEST_CMDLINE} nodevirt.stay=1${process.env.BENCH_CMDLINE_EXTRA ? ` ${process.env.BENCH_CMDLINE_EXTRA}` : ''}`;
  const kernelBoot = { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz'), cmdline };
  const ours = randomSubnet();
  let theirs = randomSubnet();
  while (theirs.prefix === ours.prefix) theirs = randomSubnet();
  const net = `bench-${id}`;
  const lvNet = `nvbench-${id}`;
  const lvBridge = `vbb${id}`;
  const work = await mkdtemp('/var/tmp/nvbench-');
  const dhcp = watchDhcp();
  const life = watchLifecycle();
  let daemon: DaemonProcess | undefined;
  const virshDomains: string[] = [];
  const ourVms: string[] = [];
  try {
    await Promise.all([dhcp.ready, life.ready]);
    // Info, not the helper's debug: a benchmark should not pay for log lines.
    daemon = await startDaemon({ env: { NODEVIRT_LOG_LEVEL: 'info' } });
    const d = daemon;
    await waitForLibvirt(d);
    await putNetwork(d, net, { type: 'nat', nat: { subnet: ours.cidr } });
    const vmSpec = { memory: MEMORY_MIB, interfaces: [{ network: net }], kernelBoot };

    // The same domain for virsh: nodevirt's own XML (dry run), its NIC swapped for a libvirt network port.
    const dry = await d.api('PUT', `/v1/vms/bench-${id}-tpl?dryRun=true`, { name: `bench-${id}-tpl`, ...vmSpec });
    const template = (dry.body as { domainXml?: string }).domainXml;
    if (!template) throw new Error(`dry run gave no domain XML: ${JSON.stringify(dry.body)}`);
    const tplDomain = (dry.body as { vm: { status: { domain: string } } }).vm.status.domain;
    // The domain name also names its serial (and VNC) sockets under /run/nodevirt, which QEMU can reach.
    const virshXml = (name: string, mac: string) =>
      template
        .split(tplDomain)
        .join(name)
        .replace(/\s*<uuid>[^<]*<\/uuid>/, '')
        .replace(/\s*<metadata>[\s\S]*?<\/metadata>/, '')
        .replace(/<interface type='ethernet'>[\s\S]*?<\/interface>/, `<interface type='network'><source network='${lvNet}'/><mac address='${mac}'/><model type='virtio'/></interface>`);
    const virshMacs = Array.from({ length: RUNS }, (_, i) => `52:54:00:b${id[0]}:${id.slice(1, 3)}:${(i + 16).toString(16).padStart(2, '0')}`);
    const hosts = virshMacs.map((m, i) => `<host mac='${m}' ip='${theirs.prefix}.${10 + i}'/>`).join('');
    const netXml = `<network><name>${lvNet}</name><bridge name='${lvBridge}' stp='off'/><forward mode='nat'/><ip address='${theirs.prefix}.1' netmask='255.255.255.0'><dhcp><range start='${theirs.prefix}.100' end='${theirs.prefix}.200'/>${hosts}</dhcp></ip></network>`;
    await writeFile(join(work, 'net.xml'), netXml);
    await virsh('net-create', join(work, 'net.xml'));

    const ourSamples: Sample[] = [];
    const virshSamples: Sample[] = [];
    log(`${RUNS} runs each, interleaved; guest ${MEMORY_MIB} MiB, 1 vCPU, TCG; nodevirt on ${ours.cidr}, libvirt+dnsmasq on ${theirs.cidr}`);
    for (let i = 0; i < RUNS; i++) {
      // nodevirt: PUT + start through the API.
      {
        const name = `bench-${id}-n${i}`;
        ourVms.push(name);
        const t0 = Date.now();
        const vm = await putVm(d, name, vmSpec);
        const startedVm = await startVm(d, name);
        const apiReturned = Date.now() - t0;
        const mac = vm.status.nics[0]!.mac;
        const lease = await waitForLease(d, mac, { timeoutMs: BOOT_TIMEOUT_MS });
        const ack = Date.parse(lease.firstAckAt!);
        const started = await until('Started event', 10_000, () => life.started(startedVm.status.domain)).catch(() => undefined);
        const disc = await until('DISCOVER seen', 5_000, () => dhcp.first(mac, 'Discover')).catch(() => undefined);
        ourSamples.push({ apiReturned, ack: ack - t0, started: started && started - t0, startedToAck: started && ack - started, discoverToAck: disc && ack - disc });
        await deleteVm(d, name);
      }
      // virsh create of the same guest; dnsmasq answers on libvirt's bridge.
      {
        const name = `nvbench-${id}-v${i}`;
        const mac = virshMacs[i]!;
        const file = join(work, `${name}.xml`);
        await writeFile(file, virshXml(name, mac));
        const t0 = Date.now();
        virshDomains.push(name);
        await virsh('create', file);
        const apiReturned = Date.now() - t0;
        const ack = await until(`dnsmasq ACK for ${mac}`, BOOT_TIMEOUT_MS, () => dhcp.first(mac, 'ACK'));
        const started = await until('Started event', 10_000, () => life.started(name)).catch(() => undefined);
        const disc = dhcp.first(mac, 'Discover');
        virshSamples.push({ apiReturned, ack: ack - t0, started: started && started - t0, startedToAck: started && ack - started, discoverToAck: disc && ack - disc });
        await virsh('destroy', name);
      }
      log(`run ${i + 1}/${RUNS}: call -> ACK nodevirt ${Math.round(ourSamples[i]!.ack!)} ms, virsh ${Math.round(virshSamples[i]!.ack!)} ms`);
    }

    // The table.
    const f = (x: number) => (Number.isNaN(x) ? 'n/a' : `${Math.round(x)} ms`);
    const col = (s: Sample[], k: keyof Sample) => s.map((x) => x[k]).filter((x): x is number => typeof x === 'number');
    const row = (label: string, k: keyof Sample) => {
      const a = col(ourSamples, k);
      const b = col(virshSamples, k);
      const ratio = pct(a, 50) / pct(b, 50);
      return `| ${label} | ${f(pct(a, 50))} | ${f(pct(a, 95))} | ${f(pct(b, 50))} | ${f(pct(b, 95))} | ${Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : 'n/a'} | ${a.length}/${b.length} |`;
    };
    const ratioOf = (k: keyof Sample) => pct(col(ourSamples, k), 50) / pct(col(virshSamples, k), 50);
    const goal = (ok: boolean) => (ok ? 'met' : 'NOT met');
    const out = [
      '',
      `VM start, ${RUNS} runs each (interleaved), test guest ${MEMORY_MIB} MiB / 1 vCPU / TCG, ${new Date().toISOString()}`,
      '',
      '| measurement | nodevirt p50 | nodevirt p95 | virsh+dnsmasq p50 | virsh+dnsmasq p95 | ratio p50 | samples |',
      '|---|---|---|---|---|---|---|',
      row('call returned (PUT+start / virsh create)', 'apiReturned'),
      row('call -> libvirt Started event', 'started'),
      row('call -> DHCP ACK', 'ack'),
      row('libvirt Started -> DHCP ACK (guest boot)', 'startedToAck'),
      row('guest first DISCOVER -> ACK', 'discoverToAck'),
      '',
      `goals: call -> Started ${goal(ratioOf('started') <= 1.2)} (${ratioOf('started').toFixed(2)}x <= 1.2x), call -> ACK ${goal(ratioOf('ack') <= 1.2)} (${ratioOf('ack').toFixed(2)}x <= 1.2x), DISCOVER -> ACK p95 within 1 s ${goal(pct(col(ourSamples, 'discoverToAck'), 95) <= 1000)}`,
      'nodevirt ACK: the lease\'s firstAckAt (daemon clock); virsh ACK: dnsmasq\'s DHCPACK on the wire (tcpdump -i any);',
      'DISCOVER: tcpdump; Started: `virsh event --timestamp` (libvirt\'s clock). All clocks are this host\'s.',
      '',
    ];
    // Printed now: the concurrent phase takes minutes and must not cost these numbers if it fails. With
    // BENCH_RUNS=0 (only the concurrent phase) there is nothing to compare, and no verdict is printed.
    if (RUNS > 0) process.stdout.write(out.join('\n') + '\n');

    // Concurrency: all at once, then until every guest holds its lease.
    const pid = d.pid()!;
    const rssBefore = rssKiB(pid);
    const names = Array.from({ length: CONCURRENT }, (_, k) => `bench-${id}-c${k}`);
    ourVms.push(...names);
    log(`${CONCURRENT} VMs at once`);
    const consoles = new Map<string, SerialConsole | undefined>();
    const c0 = Date.now();
    const outcomes = await Promise.allSettled(
      names.map(async (n) => {
        const vm = await putVm(d, n, vmSpec);
        const started = await startVm(d, n, 600_000);
        const returned = Date.now() - c0;
        // Kept open to tell, for a guest that never asks for an address, what it printed instead.
        consoles.set(n, await openSerial(started.status.domain).catch(() => undefined));
        return { mac: vm.status.nics[0]!.mac, returned };
      }),
    );
    const apiAll = Date.now() - c0;
    const errors = outcomes.flatMap((o, k) => (o.status === 'rejected' ? [`${names[k]}: ${String(o.reason).slice(0, 300)}`] : []));
    const macs = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value.mac] : []));
    const returned = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value.returned] : []));
    let acked = new Map<string, number>();
    const deadline = Date.now() + CONCURRENT_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const leases = await listLeases(d);
      acked = new Map(leases.filter((l) => l.firstAckAt && macs.includes(l.mac)).map((l) => [l.mac, Date.parse(l.firstAckAt!) - c0]));
      if (acked.size === macs.length) break;
      await sleep(500);
    }
    let running = 0;
    let withIp = 0;
    for (const n of names) {
      const vm = await getVm(d, n);
      if (vm?.status.phase === 'Running') running++;
      if (vm?.status.nics[0]?.ip && vm.status.nics[0].dhcpAcked) withIp++;
    }
    const rssAfter = rssKiB(pid);
    const ackTimes = [...acked.values()];
    const concDiscAck = [...acked].flatMap(([mac, at]) => {
      const disc = dhcp.first(mac, 'Discover');
      return disc === undefined ? [] : [at + c0 - disc];
    });
    for (const c of consoles.values()) c?.close();
    const del0 = Date.now();
    const delOutcomes = await Promise.allSettled(names.map((n) => deleteVm(d, n)));
    const delAll = Date.now() - del0;
    const delErrors = delOutcomes.filter((o) => o.status === 'rejected').length;
    const rssAfterDelete = rssKiB(pid);
    const hung = names.filter((n, k) => outcomes[k]!.status === 'fulfilled' && !acked.has((outcomes[k] as PromiseFulfilledResult<{ mac: string }>).value.mac));
    const conc = [
      `${CONCURRENT} VMs created and started concurrently through the API (${new Date().toISOString()}):`,
      `- API calls (PUT+start) all returned after ${f(apiAll)} (p50 ${f(pct(returned, 50))}); errors: ${errors.length}${errors.length ? ` (${errors.slice(0, 3).join('; ')})` : ''}`,
      `- leases acked: ${acked.size}/${CONCURRENT}; the last ${f(Math.max(...ackTimes))} after the first call (p50 ${f(pct(ackTimes, 50))}, p95 ${f(pct(ackTimes, 95))})`,
      `- first DISCOVER -> ACK per guest: p50 ${f(pct(concDiscAck, 50))}, p95 ${f(pct(concDiscAck, 95))}, max ${f(Math.max(...concDiscAck))} (${concDiscAck.length} guests seen on the wire)`,
      `- GET /v1/vms after: ${running}/${CONCURRENT} Running, ${withIp}/${CONCURRENT} with IP and dhcpAcked`,
      `- daemon RSS: ${(rssBefore / 1024).toFixed(1)} MiB before, ${(rssAfter / 1024).toFixed(1)} MiB with ${CONCURRENT} running, ${(rssAfterDelete / 1024).toFixed(1)} MiB after deleting them (${f(delAll)}, ${delErrors} errors)`,
      ...hung.map((n) => `- ${n} never got an ACK; its console ended with: ${JSON.stringify(consoles.get(n)?.text().slice(-400) ?? '(no console)')}`),
    ];
    process.stdout.write(conc.join('\n') + '\n');

  } finally {
    for (const n of virshDomains) await virsh('destroy', n).catch(() => undefined);
    if (daemon) {
      for (const n of ourVms) await deleteVm(daemon, n).catch(() => undefined);
      await deleteVm(daemon, `bench-${id}-tpl`).catch(() => undefined);
      await deleteNetwork(daemon, net).catch((e) => log(`cleanup: ${e}`));
      await daemon.remove();
    }
    await virsh('net-destroy', lvNet).catch(() => undefined);
    dhcp.stop();
    life.stop();
    await rm(work, { recursive: true, force: true });
  }
}

// Exit explicitly: a child or socket left behind by a failed cleanup must not keep the bench alive.
main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench:vm failed: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  },
);

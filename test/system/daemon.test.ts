// The real daemon, started the way systemd starts it: its own config, a NOTIFY_SOCKET, the real libvirt
// over D-Bus. Checks READY/WATCHDOG/STOPPING, GET /v1/node against the spec, the CLI, and a graceful stop.
import { spawn, type ChildProcess, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiRequest } from '../../daemon/cli/api-client.js';
import { loadApiSpec, type ApiSpec } from '../../daemon/api/openapi.js';
import { testDomainName, testDomainXml } from '../contract/test-domain.js';

const MAIN = join(process.cwd(), 'dist/daemon/main.js');

/** A unix datagram receiver (Node has none): python3 prints each datagram as one line. */
function notifyReceiver(path: string): { proc: ChildProcess; lines: string[]; waitFor(re: RegExp, ms: number): Promise<string> } {
  const proc = spawn('python3', ['-u', '-c', `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("LISTENING", flush=True)
while True:
    d = s.recv(4096)
    print(d.decode().replace("\\n", "|"), flush=True)
`, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let buf = '';
  proc.stdout!.on('data', (c: Buffer) => {
    buf += c.toString();
    let i;
    while ((i = buf.indexOf('\n')) !== -1) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  return {
    proc,
    lines,
    async waitFor(re, ms) {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        const hit = lines.find((l) => re.test(l));
        if (hit) return hit;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`no notify message matching ${re} within ${ms} ms; got: ${JSON.stringify(lines)}`);
    },
  };
}

function withoutWatchdogPid(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { WATCHDOG_PID: _pid, ...rest } = env;
  return rest;
}

describe('nodevirtd as a process', () => {
  let dir: string;
  let daemon: ChildProcess;
  let logs = '';
  let notify: ReturnType<typeof notifyReceiver>;
  let spec: ApiSpec;
  let sock: string;
  let exit: Promise<number | null>;
  let relayPort: number;

  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "bash systemd/setup.sh --for-tests" (it compiles the daemon)`);
    spec = await loadApiSpec();
    dir = await mkdtemp(join(tmpdir(), 'nvd-'));
    sock = join(dir, 'api.sock');
    relayPort = 20000 + Math.floor(Math.random() * 20000);
    await writeFile(
      join(dir, 'config.yaml'),
      `stateDir: ${dir}/state\napi:\n  unixSocket: { path: ${sock}, group: root }\nlogLevel: debug\ndhcp:\n  relay: { address: 127.0.0.1, port: ${relayPort} }\n`,
    );
    notify = notifyReceiver(join(dir, 'notify.sock'));
    await notify.waitFor(/^LISTENING$/, 5000);
    daemon = spawn(process.execPath, [MAIN, '--config', join(dir, 'config.yaml')], {
      env: { ...withoutWatchdogPid(process.env), NOTIFY_SOCKET: join(dir, 'notify.sock'), WATCHDOG_USEC: '2000000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    exit = new Promise((r) => daemon.on('exit', (code) => r(code)));
    daemon.stdout!.on('data', (c: Buffer) => (logs += c.toString()));
    daemon.stderr!.on('data', (c: Buffer) => (logs += c.toString()));
    await notify.waitFor(/READY=1/, 20_000).catch((e) => {
      throw new Error(`${(e as Error).message}\ndaemon output:\n${logs}`);
    });
  });

  afterAll(async () => {
    if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
    notify?.proc.kill();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('announces READY only once the API answers, with a status line', async () => {
    const ready = await notify.waitFor(/READY=1/, 1);
    expect(ready).toMatch(/STATUS=API on /);
    const res = await apiRequest({ socketPath: sock }, 'GET', '/v1/healthz');
    expect(res.status).toBe(200);
  });

  it('GET /v1/node is spec-valid and reports this host, QEMU/TCG here', async () => {
    const res = await apiRequest({ socketPath: sock }, 'GET', '/v1/node');
    expect(res.status).toBe(200);
    const op = spec.operations.find((o) => o.operationId === 'nodeGet')!;
    expect(op.validateResponse(200, String(res.headers['content-type']).split(';')[0]!.trim(), res.body)).toEqual([]);
    const node = res.body as { hostname: string; virtType: string; virtTypeReason: string; libvirt: { connected: boolean; version: string }; qemu: { version: string; emulator: string }; checks: Array<{ name: string; status: string }> };
    expect(node.hostname).toBe(execFileSync('hostname').toString().trim());
    expect(node.libvirt.connected).toBe(true);
    expect(node.libvirt.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(node.qemu.version).toMatch(/^\d+\.\d+/);
    expect(node.qemu.emulator).toMatch(/qemu-system-x86_64$/);
    const cpuHasVirt = /\b(vmx|svm)\b/.test(execFileSync('cat', ['/proc/cpuinfo']).toString());
    if (!cpuHasVirt) {
      expect(node.virtType).toBe('qemu');
      expect(node.virtTypeReason).toMatch(/TCG/);
    }
    expect(node.checks.find((c) => c.name === 'bridge')?.status).toBe('pass');
    expect(res.headers['x-request-id']).toBeTruthy();
    expect(logs).toContain(String(res.headers['x-request-id']));
  });

  it('serves GET /v1/leases from the lease repository, and opened the configured DHCP relay listener', async () => {
    const res = await apiRequest({ socketPath: sock }, 'GET', '/v1/leases');
    expect(res.status).toBe(200);
    const op = spec.operations.find((o) => o.operationId === 'leasesList')!;
    expect(op.validateResponse(200, String(res.headers['content-type']).split(';')[0]!.trim(), res.body)).toEqual([]);
    expect(res.body).toEqual({ items: [] });
    const udp = execFileSync('ss', ['-Hunlp', 'sport', '=', `:${relayPort}`]).toString();
    expect(udp).toContain(`127.0.0.1:${relayPort}`);
    expect(udp).toContain(`pid=${daemon.pid}`);
  });

  it('manages a host network through the API: PUT creates the bridge, a same PUT is a no-op, DELETE removes it', async () => {
    const name = `t${process.pid % 100000}`;
    const op = (id: string) => spec.operations.find((o) => o.operationId === id)!;
    const valid = (id: string, r: { status: number; headers: Record<string, unknown>; body: unknown }) =>
      expect(op(id).validateResponse(r.status, String(r.headers['content-type'] ?? '').split(';')[0]!.trim(), r.body)).toEqual([]);
    const body = { type: 'bridge', mtu: 1400, bridge: { managed: true, uplinks: [], stp: false }, ipam: { subnet: '10.251.7.0/24', gateway: '10.251.7.1', dns: [], search: [], reserved: [] } };
    const dry = await apiRequest({ socketPath: sock }, 'PUT', `/v1/networks/${name}?dryRun=true`, body);
    expect(dry.status, JSON.stringify(dry.body)).toBeLessThan(300);
    valid('networkPut', dry);
    const put = await apiRequest({ socketPath: sock }, 'PUT', `/v1/networks/${name}`, body);
    expect(put.status, JSON.stringify(put.body)).toBeLessThan(300);
    valid('networkPut', put);
    try {
      const got = await apiRequest({ socketPath: sock }, 'GET', `/v1/networks/${name}`);
      expect(got.status).toBe(200);
      valid('networkGet', got);
      const view = got.body as { generation: number; status: { ready: boolean; bridge?: string } };
      expect(view.status.ready).toBe(true);
      const bridge = view.status.bridge!;
      const link = JSON.parse(execFileSync('ip', ['-d', '-j', 'link', 'show', bridge]).toString())[0] as { mtu: number; linkinfo: { info_kind: string } };
      expect(link.linkinfo.info_kind).toBe('bridge');
      expect(link.mtu).toBe(1400);
      const again = await apiRequest({ socketPath: sock }, 'PUT', `/v1/networks/${name}`, body);
      expect(again.body).toMatchObject({ changed: false, network: { generation: view.generation } });
      const del = await apiRequest({ socketPath: sock }, 'DELETE', `/v1/networks/${name}`);
      expect(del.status).toBeLessThan(300);
      expect(() => execFileSync('ip', ['link', 'show', bridge], { stdio: 'pipe' })).toThrow();
    } finally {
      await apiRequest({ socketPath: sock }, 'DELETE', `/v1/networks/${name}`).catch(() => undefined);
    }
  });

  it('pings the watchdog at half the interval systemd asked for', async () => {
    await notify.waitFor(/WATCHDOG=1/, 5000);
  });

  it('the CLI creates a token through the API and lists it without its secret', () => {
    const run = (...a: string[]) => execFileSync(process.execPath, [MAIN, '--config', join(dir, 'config.yaml'), ...a]).toString();
    const created = run('token', 'create', 'ci-test', '--description', 'from the daemon test');
    expect(created).toMatch(/^nvt_[A-Za-z0-9_-]{20,}$/m);
    const secret = /^(nvt_\S+)$/m.exec(created)![1]!;
    const listed = run('token', 'list');
    expect(listed).toMatch(/^ci-test\tcreated /m);
    expect(listed).not.toContain(secret);
    expect(() => run('token', 'create', 'ci-test')).toThrow(/CONFLICT/);
  });

  it('SIGTERM: STOPPING=1, a clean exit 0, the socket is gone, and a running VM keeps running', async () => {
    const vm = testDomainName('survive');
    const xmlPath = join(dir, 'vm.xml');
    await writeFile(xmlPath, testDomainXml({ name: vm }));
    execFileSync('virsh', ['-c', 'qemu:///system', 'create', xmlPath]);
    try {
      daemon.kill('SIGTERM');
      expect(await exit).toBe(0);
      await notify.waitFor(/STOPPING=1/, 1000);
      expect(existsSync(sock)).toBe(false);
      expect(execFileSync('virsh', ['-c', 'qemu:///system', 'domstate', vm]).toString().trim()).toBe('running');
    } finally {
      execFileSync('virsh', ['-c', 'qemu:///system', 'destroy', vm], { stdio: 'ignore' });
    }
  });
});

describe('nodevirtd configuration errors', () => {
  it('exits 78 with the offending key named', async () => {
    const d = await mkdtemp(join(tmpdir(), 'nvd-bad-'));
    await writeFile(join(d, 'c.yaml'), 'api:\n  tcp: { port: 99999 }\nbogus: 1\n');
    const r = spawn(process.execPath, [MAIN, '--config', join(d, 'c.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    r.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise((res) => r.on('exit', res));
    expect(code).toBe(78);
    expect(err).toContain('/api/tcp/port');
    expect(err).toContain('unknown key "bogus"');
    await rm(d, { recursive: true, force: true });
  });
});

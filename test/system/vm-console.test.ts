// Issue #5 end-to-end test 6 through the compiled daemon: the console WebSocket shows the test guest's boot
// output to two readers, input typed by the one writer reaches the guest (it echoes a marker), a second writer
// is refused, and the VNC WebSocket carries an RFB handshake up to the ServerInit with the framebuffer size.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { ApiResponse } from '../../daemon/cli/api-client.js';
import { GUEST_CMDLINE, GUEST_OUT } from '../guest/paths.js';
import { startDaemon, DAEMON_MAIN, type DaemonProcess } from './helpers/daemon-process.js';

const BUS = '/run/dbus/system_bus_socket';
// Two shared cores under TCG: boot to READY takes ~10 s alone, much more when other suites run.
const BOOT_TIMEOUT_MS = 150_000;

const missing =
  process.getuid?.() !== 0 ? 'needs root' : !existsSync(BUS) ? `no system bus at ${BUS}` : !existsSync(DAEMON_MAIN) ? `${DAEMON_MAIN} not compiled` : undefined;

interface Client {
  ws: WebSocket;
  text(): string;
  bytes(): Buffer;
  closed: Promise<{ code: number; reason: string }>;
}

type Opened = { client: Client } | { status: number; code: string | undefined };

/** A WebSocket over the daemon's unix socket; its messages are collected from the start. */
function connect(sock: string, path: string, protocols: string[] = []): Promise<Opened> {
  return new Promise((ok, fail) => {
    const ws = new WebSocket(`ws+unix://${sock}:${path}`, protocols);
    const chunks: Buffer[] = [];
    ws.on('message', (d: Buffer) => chunks.push(d));
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() })));
    const client: Client = { ws, closed, bytes: () => Buffer.concat(chunks), text: () => Buffer.concat(chunks).toString('latin1').replace(/\r/g, '') };
    ws.once('open', () => ok({ client }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => ok({ status: res.statusCode ?? 0, code: (JSON.parse(body) as { code?: string }).code }));
    });
    ws.once('error', fail);
  });
}

const opened = (o: Opened): Client => {
  if (!('client' in o)) throw new Error(`upgrade refused: ${o.status} ${o.code}`);
  return o.client;
};

async function until(cond: () => boolean, what: string, ms: number, show: () => string = () => ''): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}\n${show().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An action's final answer whether it is synchronous (200) or an operation (202 + Location, or ?wait). */
async function settle(d: DaemonProcess, what: string, r: ApiResponse): Promise<void> {
  if (r.status >= 400) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
  const body = r.body as { id?: string; status?: string; kind?: string } | undefined;
  const loc = r.headers.location;
  let location = r.status === 202 ? (Array.isArray(loc) ? loc[0] : loc) : undefined;
  if (!location && body?.kind !== undefined && body.id !== undefined) location = `/v1/operations/${body.id}`;
  if (!location) return;
  for (const end = Date.now() + 180_000; Date.now() < end; await new Promise((res) => setTimeout(res, 200))) {
    const g = await d.api('GET', location);
    const op = g.body as { status: string; error?: unknown };
    if (op.status === 'running') continue;
    if (op.status !== 'succeeded') throw new Error(`${what}: operation ${op.status} ${JSON.stringify(op.error)}`);
    return;
  }
  throw new Error(`${what}: operation ${location} did not finish`);
}

/** Reads an RFB stream out of the messages a client collected. */
function rfbReader(c: Client) {
  let pos = 0;
  return async (n: number, what: string): Promise<Buffer> => {
    await until(() => c.bytes().length >= pos + n, what, 20_000, () => c.bytes().toString('hex'));
    const out = c.bytes().subarray(pos, pos + n);
    pos += n;
    return out;
  };
}

describe.skipIf(missing !== undefined)(`console and VNC over WebSocket with a real guest${missing ? ` (skipped: ${missing})` : ''}`, () => {
  const id = randomBytes(3).toString('hex');
  const vm = `con${id}`;
  let d: DaemonProcess;
  const clients: Client[] = [];

  beforeAll(async () => {
    execFileSync('bash', [resolve('test/guest/build.sh')], { stdio: 'pipe' });
    d = await startDaemon();
  });

  afterAll(async () => {
    for (const c of clients) c.ws.terminate();
    if (d) {
      await d.api('DELETE', `/v1/vms/${vm}`, undefined, 120_000).catch(() => undefined);
      await d.remove();
    }
    // Whatever a failure left behind in libvirt.
    for (const args of [['destroy', `nodevirt-${vm}`], ['undefine', `nodevirt-${vm}`, '--nvram']]) {
      try {
        execFileSync('virsh', ['-c', 'qemu:///system', ...args], { stdio: 'ignore' });
      } catch {
        // not there: nothing to clean
      }
    }
  });

  it('console: boot output to two readers, one writer whose input the guest echoes, a second writer refused; VNC: RFB handshake to ServerInit', async () => {
    const put = await d.api('PUT', `/v1/vms/${vm}`, {
      name: vm,
      memory: 256,
      kernelBoot: { kernel: join(GUEST_OUT, 'vmlinuz'), initrd: join(GUEST_OUT, 'initramfs.gz'), cmdline: `${GUEST_CMDLINE} nodevirt.stay=1` },
    });
    expect(put.status, JSON.stringify(put.body)).toBe(201);

    // Refusals come as HTTP problems before any upgrade.
    expect(await connect(d.sock, `/v1/vms/${vm}/console`)).toEqual({ status: 409, code: 'VM_NOT_RUNNING' });
    expect(await connect(d.sock, `/v1/vms/nx${id}/console`)).toEqual({ status: 404, code: 'VM_NOT_FOUND' });

    const t0 = performance.now();
    await settle(d, 'start', await d.api('POST', `/v1/vms/${vm}/start`, undefined, 180_000));
    const writer = opened(await connect(d.sock, `/v1/vms/${vm}/console?mode=rw`));
    const reader = opened(await connect(d.sock, `/v1/vms/${vm}/console`));
    clients.push(writer, reader);

    await until(() => writer.text().includes('NODEVIRT-GUEST-READY') && reader.text().includes('NODEVIRT-GUEST-READY'), 'READY on both consoles', BOOT_TIMEOUT_MS, () => writer.text());
    console.info(`console: start -> READY seen over the WebSocket in ${Math.round(performance.now() - t0)} ms`);
    const fromBoot = (t: string) => t.slice(t.indexOf('NODEVIRT-GUEST-BOOT'));
    expect(writer.text()).toContain('NODEVIRT-GUEST-BOOT kernel=');
    // Both readers saw the same bytes from the first marker on.
    expect(fromBoot(reader.text()).slice(0, 200)).toBe(fromBoot(writer.text()).slice(0, 200));

    expect(await connect(d.sock, `/v1/vms/${vm}/console?mode=rw`)).toEqual({ status: 409, code: 'CONSOLE_BUSY' });

    const marker = `typed-${id}`;
    writer.ws.send(`${marker}\n`);
    await until(() => reader.text().includes(`NODEVIRT-ECHO ${marker}`) && writer.text().includes(`NODEVIRT-ECHO ${marker}`), 'the echo on both consoles', 30_000, () => reader.text());
    // The guest ran the line as a command: proof the bytes reached its shell, not only its tty.
    writer.ws.send('!echo sum-$((6*7))\n');
    await until(() => writer.text().includes('NODEVIRT-OUT sum-42'), 'the command output', 30_000, () => writer.text());
    // A reader's keystrokes never reach the guest.
    reader.ws.send(`reader-${id}\n`);

    // A late reader gets the recent output from the ring buffer.
    const late = opened(await connect(d.sock, `/v1/vms/${vm}/console`));
    clients.push(late);
    await until(() => late.text().includes(`NODEVIRT-ECHO ${marker}`), 'the ring-buffer replay', 10_000, () => late.text());
    writer.ws.send(`after-${id}\n`);
    await until(() => late.text().includes(`NODEVIRT-ECHO after-${id}`), 'live output after the replay', 30_000, () => late.text());
    expect(writer.text()).not.toContain(`reader-${id}`);

    // The CLI attaches read-only (the writer role is taken), shows the recent output and detaches on Ctrl-].
    const cli = spawn(process.execPath, [DAEMON_MAIN, '--config', join(d.dir, 'config.yaml'), 'console', vm, '--ro'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let cliOut = '';
    cli.stdout.on('data', (b: Buffer) => (cliOut += b.toString('latin1')));
    cli.stderr.on('data', (b: Buffer) => (cliOut += b.toString('latin1')));
    const cliExit = new Promise<number | null>((r) => cli.on('exit', (code) => r(code)));
    await until(() => cliOut.includes(`NODEVIRT-ECHO after-${id}`), 'the CLI to show the console', 15_000, () => cliOut);
    expect(cliOut).toContain(`connected to the console of ${vm} (read-only)`);
    cli.stdin.write('\x1d');
    expect(await cliExit).toBe(0);

    // VNC: RFB 3.8 with security None, then ClientInit -> ServerInit carries the framebuffer size.
    const v = opened(await connect(d.sock, `/v1/vms/${vm}/vnc`, ['binary']));
    clients.push(v);
    expect(v.ws.protocol).toBe('binary');
    const read = rfbReader(v);
    const version = (await read(12, 'the RFB version')).toString('latin1');
    expect(version).toMatch(/^RFB 003\.00\d\n$/);
    v.ws.send(Buffer.from('RFB 003.008\n'));
    const nTypes = (await read(1, 'the security type count'))[0]!;
    expect(nTypes).toBeGreaterThan(0);
    const types = [...(await read(nTypes, 'the security types'))];
    expect(types).toContain(1);
    v.ws.send(Buffer.from([1]));
    expect((await read(4, 'the security result')).readUInt32BE(0)).toBe(0);
    v.ws.send(Buffer.from([1])); // ClientInit, shared
    const init = await read(24, 'the ServerInit');
    const width = init.readUInt16BE(0);
    const height = init.readUInt16BE(2);
    const name = (await read(init.readUInt32BE(20), 'the desktop name')).toString('utf8');
    console.info(`vnc: ${version.trim()}, security types [${types.join(',')}], framebuffer ${width}x${height}, name "${name}"`);
    expect(width).toBeGreaterThan(0);
    expect(height).toBeGreaterThan(0);

    // The guest stopping ends every socket with 4001.
    await settle(d, 'stop', await d.api('POST', `/v1/vms/${vm}/stop?force=true`, undefined, 180_000));
    for (const c of [writer, reader, late, v]) {
      const closed = await Promise.race([c.closed, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000))]);
      expect(closed, 'a close within 20 s of the stop').toEqual({ code: 4001, reason: 'the VM stopped' });
    }
    expect(await connect(d.sock, `/v1/vms/${vm}/console`)).toEqual({ status: 409, code: 'VM_NOT_RUNNING' });

    const del = await d.api('DELETE', `/v1/vms/${vm}`, undefined, 120_000);
    expect([200, 202, 204]).toContain(del.status);
    await settle(d, 'delete', del);
  });
});

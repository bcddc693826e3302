// `nodevirtd console VM` against a WebSocket server on a unix socket made here: keystrokes go up, output comes
// down, Ctrl-] detaches, a refusal prints the problem, the VM stopping ends the session.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { runConsole } from '../../../daemon/cli/console-client.js';

let dir: string;
let sock: string;
let http: Server;
let wss: WebSocketServer;
let server: { ws?: WebSocket; url?: string; got: string };

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nv-cli-console-'));
  sock = join(dir, 'api.sock');
  server = { got: '' };
  wss = new WebSocketServer({ noServer: true });
  http = createServer();
  http.on('upgrade', (req, socket, head) => {
    if (req.url?.startsWith('/v1/vms/busy/')) {
      const body = JSON.stringify({ type: 'urn:nodevirt:problem:console-busy', title: 't', status: 409, code: 'CONSOLE_BUSY', detail: 'the console of VM busy already has a writer' });
      socket.end(`HTTP/1.1 409 Conflict\r\ncontent-type: application/problem+json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      server.ws = ws;
      server.url = req.url;
      ws.on('message', (d: Buffer) => (server.got += d.toString()));
      ws.send(Buffer.from('login: '));
    });
  });
  await new Promise<void>((r) => http.listen(sock, r));
});

afterEach(async () => {
  for (const c of wss.clients) c.terminate();
  await new Promise((r) => http.close(r));
  await rm(dir, { recursive: true, force: true });
});

function io() {
  const input = new PassThrough();
  const output = new PassThrough();
  let out = '';
  output.on('data', (d: Buffer) => (out += d.toString()));
  const errs: string[] = [];
  return { input, output, errs, out: () => out, err: (l: string) => errs.push(l) };
}

const until = async (cond: () => boolean, what: string) => {
  const end = Date.now() + 3000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('nodevirtd console', () => {
  it('sends keystrokes, prints the output, and detaches on Ctrl-] with exit 0', async () => {
    const t = io();
    const done = runConsole({ target: { socketPath: sock }, vm: 'vm1', write: true, ...t });
    await until(() => t.out() === 'login: ', 'the output');
    expect(server.url).toBe('/v1/vms/vm1/console?mode=rw');
    t.input.write('root\r');
    await until(() => server.got === 'root\r', 'the keystrokes upstream');
    t.input.write(Buffer.from([0x6c, 0x73, 0x1d, 0x78]));
    expect(await done).toBe(0);
    expect(server.got).toBe('root\rls');
    expect(t.errs[0]).toMatch(/connected to the console of vm1 \(read-write\); Ctrl-\] detaches/);
  });

  it('read-only sends nothing', async () => {
    const t = io();
    const done = runConsole({ target: { socketPath: sock }, vm: 'vm1', write: false, ...t });
    await until(() => t.out() === 'login: ', 'the output');
    expect(server.url).toBe('/v1/vms/vm1/console');
    t.input.write('typed\r\x1d');
    expect(await done).toBe(0);
    expect(server.got).toBe('');
  });

  it('prints the problem and exits 1 when the upgrade is refused', async () => {
    const t = io();
    expect(await runConsole({ target: { socketPath: sock }, vm: 'busy', write: true, ...t })).toBe(1);
    expect(t.errs.join('\n')).toContain('refused: 409 CONSOLE_BUSY: the console of VM busy already has a writer');
  });

  it('ends with exit 0 and says so when the VM stops', async () => {
    const t = io();
    const done = runConsole({ target: { socketPath: sock }, vm: 'vm1', write: true, ...t });
    await until(() => server.ws !== undefined, 'the connection');
    server.ws!.close(4001, 'the VM stopped');
    expect(await done).toBe(0);
    expect(t.errs.join('\n')).toContain('console closed: 4001 the VM stopped');
  });

  it('exits 1 when the daemon is not there', async () => {
    const t = io();
    expect(await runConsole({ target: { socketPath: join(dir, 'none.sock') }, vm: 'vm1', write: true, ...t })).toBe(1);
    expect(t.errs.join('\n')).toContain('ENOENT');
  });
});

// `nodevirtd <command>`: small admin commands that talk to the running daemon's API (never to the store).
import { apiRequest, type ApiTarget } from './api-client.js';
import { runConsole } from './console-client.js';

export const USAGE = `usage:
  nodevirtd [--config PATH]                 run the daemon (foreground)
  nodevirtd token create NAME [--description TEXT]
                                            create an API token for TCP clients; the secret is printed once
  nodevirtd token list                      list tokens (names and dates, never secrets)
  nodevirtd token delete NAME               revoke a token
  nodevirtd node                            print GET /v1/node
  nodevirtd console VM [--ro]               attach the terminal to a VM's serial console (Ctrl-] detaches);
                                            --ro watches without taking the single writer role
  nodevirtd --version | --help

options for commands:
  --socket PATH   the daemon's unix socket (default from the config, /run/nodevirt/nodevirt.sock)
`;

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

function takeOption(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i === -1) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  args.splice(i, 2);
  return v;
}

function describeFailure(status: number, body: unknown): string {
  if (body && typeof body === 'object' && 'code' in body) {
    const p = body as { code: string; title?: string; detail?: string };
    return `${status} ${p.code}: ${p.detail ?? p.title ?? ''}`.trim();
  }
  return `HTTP ${status}: ${typeof body === 'string' ? body : JSON.stringify(body)}`;
}

/** Runs one admin command; returns the process exit code. */
export async function runCli(argv: string[], target: ApiTarget, io: CliIo): Promise<number> {
  const args = [...argv];
  let t: ApiTarget = target;
  try {
    const socket = takeOption(args, '--socket');
    if (socket) t = { ...target, socketPath: socket };
    const [cmd, sub, ...rest] = args;
    const call = async (method: string, path: string, body?: unknown, ok = [200, 201, 204]) => {
      const res = await apiRequest(t, method, path, body);
      if (!ok.includes(res.status)) {
        io.err(`nodevirtd: ${method} ${path} failed: ${describeFailure(res.status, res.body)}`);
        return null;
      }
      return res;
    };
    if (cmd === 'token' && sub === 'create' && rest.length >= 1) {
      const description = takeOption(rest, '--description');
      if (rest.length !== 1) throw new Error('token create takes exactly one NAME');
      const res = await call('POST', '/v1/tokens', { name: rest[0], ...(description ? { description } : {}) });
      if (!res) return 1;
      const b = res.body as { token: { name: string }; secret: string };
      io.out(`token "${b.token.name}" created. Give it to the client as "Authorization: Bearer <secret>"; it is not shown again:`);
      io.out(b.secret);
      return 0;
    }
    if (cmd === 'token' && sub === 'list' && rest.length === 0) {
      const res = await call('GET', '/v1/tokens');
      if (!res) return 1;
      const items = (res.body as { items: Array<{ name: string; createdAt: string; lastUsedAt: string | null }> }).items;
      for (const tk of items) io.out(`${tk.name}\tcreated ${tk.createdAt}\tlast used ${tk.lastUsedAt ?? 'never'}`);
      return 0;
    }
    if (cmd === 'token' && sub === 'delete' && rest.length === 1) {
      const res = await call('DELETE', `/v1/tokens/${encodeURIComponent(rest[0]!)}`);
      if (!res) return 1;
      io.out(`token "${rest[0]}" deleted`);
      return 0;
    }
    if (cmd === 'node' && sub === undefined) {
      const res = await call('GET', '/v1/node');
      if (!res) return 1;
      io.out(JSON.stringify(res.body, null, 2));
      return 0;
    }
    if (cmd === 'console' && sub !== undefined && rest.every((a) => a === '--ro')) {
      return await runConsole({ target: t, vm: sub, write: !rest.includes('--ro'), input: process.stdin, output: process.stdout, err: io.err });
    }
    io.err(`nodevirtd: unknown command "${args.join(' ')}"\n${USAGE}`);
    return 2;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
      io.err(`nodevirtd: the daemon is not running (cannot connect to ${t.socketPath ?? t.url}): start it with "npm start"`);
    } else if (err.code === 'EACCES') {
      io.err(`nodevirtd: permission denied on ${t.socketPath}: run as root or as a member of the socket's group`);
    } else {
      io.err(`nodevirtd: ${err.message}`);
    }
    return 1;
  }
}

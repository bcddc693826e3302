// `nodevirtd console VM`: attaches the terminal to a VM's serial console WebSocket (raw mode when it is a
// TTY); Ctrl-] detaches, like virsh console.
import WebSocket from 'ws';
import type { ApiTarget } from './api-client.js';

export interface ConsoleCliOptions {
  target: ApiTarget;
  vm: string;
  /** Take the writer role (default for the CLI); false attaches read-only. */
  write: boolean;
  input: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?(raw: boolean): unknown };
  output: NodeJS.WritableStream;
  err(line: string): void;
  /** The byte that detaches; default 0x1d (Ctrl-]). */
  escapeByte?: number;
}

function consoleUrl(target: ApiTarget, vm: string, write: boolean): string {
  const path = `/v1/vms/${encodeURIComponent(vm)}/console${write ? '?mode=rw' : ''}`;
  if (target.url) {
    const u = new URL(path, target.url);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.toString();
  }
  return `ws+unix://${target.socketPath ?? '/run/nodevirt/nodevirt.sock'}:${path}`;
}

/** Runs until the user detaches (0), the VM stops (0) or the connection is refused or lost (1). */
export function runConsole(opts: ConsoleCliOptions): Promise<number> {
  const escape = opts.escapeByte ?? 0x1d;
  return new Promise((resolve) => {
    const headers: Record<string, string> = opts.target.token ? { authorization: `Bearer ${opts.target.token}` } : {};
    const ws = new WebSocket(consoleUrl(opts.target, opts.vm, opts.write), { headers });
    let detached = false;
    let raw = false;
    const onInput = (chunk: Buffer | string) => {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      const at = b.indexOf(escape);
      const data = at === -1 ? b : b.subarray(0, at);
      if (opts.write && data.length) ws.send(data);
      if (at !== -1) {
        detached = true;
        ws.close(1000, 'detached');
      }
    };
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      opts.input.off('data', onInput);
      if (raw) opts.input.setRawMode?.(false);
      opts.input.pause();
      resolve(code);
    };
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        let why = body;
        try {
          const p = JSON.parse(body) as { code?: string; detail?: string };
          why = `${p.code ?? ''}: ${p.detail ?? ''}`;
        } catch {
          // not a problem document: show it as it came
        }
        opts.err(`nodevirtd: console of ${opts.vm} refused: ${res.statusCode} ${why}`);
        finish(1);
      });
    });
    ws.on('error', (e) => {
      opts.err(`nodevirtd: console of ${opts.vm}: ${e.message}`);
      finish(1);
    });
    ws.on('open', () => {
      opts.err(`connected to the console of ${opts.vm} (${opts.write ? 'read-write' : 'read-only'}); Ctrl-] detaches`);
      if (opts.input.isTTY && opts.input.setRawMode) {
        opts.input.setRawMode(true);
        raw = true;
      }
      opts.input.on('data', onInput);
      opts.input.resume();
    });
    ws.on('message', (d: Buffer) => opts.output.write(d));
    ws.on('close', (code, reason) => {
      if (detached) return finish(0);
      opts.err(`\r\nnodevirtd: console closed: ${code} ${reason.toString()}`);
      finish(code === 4001 || code === 1000 ? 0 : 1);
    });
  });
}

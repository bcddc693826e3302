// Runs one host command (ip, nft) with optional stdin and turns a failure into AppError HOST_ERROR that
// carries the command line and its stderr; `netns` runs it inside a named network namespace.
import { spawn } from 'node:child_process';
import { AppError } from '../lib/errors.js';

export interface CommandResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface RunOptions {
  input?: string;
  /** Run inside this named network namespace (`ip netns exec NAME ...`). */
  netns?: string;
  /** Exit codes that are answers, not failures (e.g. 1 for "no such table"). */
  okCodes?: readonly number[];
}

/** Spawns without a shell (arguments are never parsed), so names cannot inject anything. */
export function runCommand(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  const argv = opts.netns === undefined ? [cmd, ...args] : ['ip', 'netns', 'exec', opts.netns, cmd, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => reject(new AppError('HOST_ERROR', `${argv.join(' ')}: ${e.message}`, { cause: e, extra: { command: argv } })));
    child.on('close', (code, signal) => {
      const res = { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), code: code ?? -1 };
      if (code === 0 || (code !== null && opts.okCodes?.includes(code))) return resolve(res);
      const why = res.stderr.trim() || (signal ? `killed by ${signal}` : `exit code ${code}`);
      reject(new AppError('HOST_ERROR', `${argv.join(' ')} failed: ${why}`, { extra: { command: argv, stderr: res.stderr, code: res.code } }));
    });
    // A command that exits before reading stdin makes the write fail with EPIPE; its exit code tells why.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

// The compiled daemon (dist/daemon/main.js) as a child process with its own state dir and API socket, for
// end-to-end tests that go through the API and restart or kill the daemon. Setup (--for-tests) compiles dist/.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { apiRequest, type ApiResponse } from '../../../daemon/cli/api-client.js';

export const DAEMON_MAIN = join(process.cwd(), 'dist/daemon/main.js');

export interface DaemonProcess {
  /** Working dir: config.yaml, state/, api.sock. Removed by remove(). */
  dir: string;
  sock: string;
  stateDir: string;
  pid(): number | undefined;
  /** Everything the daemon wrote to stdout/stderr since the first start (pino JSON lines). */
  logs(): string;
  api(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<ApiResponse>;
  /** Sends the signal and waits for the exit; SIGKILL is the crash case. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Starts the daemon again on the same state dir and config; resolves when the API answers. */
  start(): Promise<void>;
  /** Stops (SIGKILL if still running) and deletes the working dir. */
  remove(): Promise<void>;
}

export interface DaemonOptions {
  /** Extra YAML appended to the generated config (stateDir, api.unixSocket and logLevel are set). */
  extraConfig?: string;
  env?: NodeJS.ProcessEnv;
  /** How long to wait for the API after a start. Default 30 s (reconcile of leftovers can take a while). */
  readyTimeoutMs?: number;
}

export async function startDaemon(opts: DaemonOptions = {}): Promise<DaemonProcess> {
  if (!existsSync(DAEMON_MAIN)) throw new Error(`${DAEMON_MAIN} is missing: run "bash systemd/setup.sh --for-tests" (it compiles the daemon)`);
  // Under /var/tmp, not /tmp: QEMU (libvirt-qemu) must traverse into stateDir/storage for seeds and volumes.
  const dir = await mkdtemp('/var/tmp/nvd-e2e-');
  // mkdtemp makes it 0700; QEMU runs as libvirt-qemu and must traverse it to reach seeds and volumes.
  await chmod(dir, 0o711);
  const sock = join(dir, 'api.sock');
  const stateDir = join(dir, 'state');
  await writeFile(
    join(dir, 'config.yaml'),
    `stateDir: ${stateDir}\napi:\n  unixSocket: { path: ${sock}, group: root }\nlogLevel: debug\n${opts.extraConfig ?? ''}`,
  );
  let child: ChildProcess | undefined;
  let exited: Promise<number | null> = Promise.resolve(null);
  let out = '';
  const readyMs = opts.readyTimeoutMs ?? 30_000;

  const api = (method: string, path: string, body?: unknown, timeoutMs?: number) => apiRequest({ socketPath: sock }, method, path, body, timeoutMs);

  const start = async (): Promise<void> => {
    if (child && child.exitCode === null && child.signalCode === null) throw new Error('daemon already running');
    const { WATCHDOG_PID: _w, NOTIFY_SOCKET: _n, WATCHDOG_USEC: _u, ...env } = process.env;
    const c = spawn(process.execPath, [DAEMON_MAIN, '--config', join(dir, 'config.yaml')], { env: { ...env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    exited = new Promise((ok) => c.on('exit', (code, sig) => ok(code ?? (sig ? 128 : null))));
    c.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    c.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    const end = Date.now() + readyMs;
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`nodevirtd exited (${c.exitCode ?? c.signalCode}) before answering; output:\n${out.slice(-4000)}`);
      const ok = await api('GET', '/v1/healthz', undefined, 2000).then((r) => r.status === 200, () => false);
      if (ok) return;
      if (Date.now() > end) throw new Error(`nodevirtd did not answer within ${readyMs} ms; output:\n${out.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return exited;
    child.kill(signal);
    return exited;
  };

  try {
    await start();
  } catch (e) {
    // The caller never gets remove(): clean up here, or every failed start leaves a state dir behind.
    if (child && child.exitCode === null && child.signalCode === null) await stop('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    dir,
    sock,
    stateDir,
    pid: () => child?.pid,
    logs: () => out,
    api,
    stop,
    start,
    async remove() {
      if (child && child.exitCode === null && child.signalCode === null) await stop('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

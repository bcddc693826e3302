// systemd notify protocol for nodevirtd: READY/STOPPING/STATUS/WATCHDOG over host/native.ts sdNotify,
// and the watchdog interval as sd_watchdog_enabled() computes it. Outside systemd everything is a no-op.
import { errorMessage } from '../lib/errors.js';
import { sdNotify } from './native.js';

export interface NotifierDeps {
  env?: NodeJS.ProcessEnv;
  pid?: number;
  /** Sends one notify datagram; false when not under a service manager. */
  send?: (state: string, env: NodeJS.ProcessEnv) => boolean;
  /** A failed send; defaults to a process warning (each distinct message once in a row). */
  onError?: (err: unknown) => void;
}

export interface Notifier {
  /** READY=1, with an optional STATUS line. True when a service manager was told. */
  ready(status?: string): boolean;
  /** STOPPING=1, with an optional STATUS line. */
  stopping(status?: string): boolean;
  status(text: string): boolean;
  /** WATCHDOG=1: call every watchdogIntervalMs() / 2. */
  watchdog(): boolean;
  /** The watchdog timeout in ms, or undefined when the manager does not watch this process. */
  watchdogIntervalMs(): number | undefined;
}

/** A STATUS value is one line of the datagram; a newline would start a forged assignment. */
function statusLine(text: string): string {
  return `STATUS=${text.replace(/[\r\n]+/g, ' ')}`;
}

/**
 * sd_watchdog_enabled() semantics: WATCHDOG_USEC must be a positive integer; when WATCHDOG_PID is set
 * it must name this process (the variables leaked to a child otherwise). Invalid values disable it.
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined || !/^\d+$/.test(usec)) return undefined;
  const n = Number(usec);
  if (n <= 0 || !Number.isSafeInteger(n)) return undefined;
  const forPid = env.WATCHDOG_PID;
  if (forPid !== undefined) {
    if (!/^\d+$/.test(forPid) || Number(forPid) !== pid) return undefined;
  }
  return n / 1000;
}

export function createNotifier(deps: NotifierDeps = {}): Notifier {
  const env = deps.env ?? process.env;
  const pid = deps.pid ?? process.pid;
  const send = deps.send ?? sdNotify;
  let lastWarning: string | undefined;
  const onError =
    deps.onError ??
    ((err: unknown) => {
      // The watchdog pings every few seconds: one warning per distinct failure, not one per ping.
      const msg = `sd_notify failed: ${errorMessage(err)}`;
      if (msg !== lastWarning) process.emitWarning(msg);
      lastWarning = msg;
    });
  const notify = (state: string): boolean => {
    try {
      const sent = send(state, env);
      lastWarning = undefined;
      return sent;
    } catch (e) {
      onError(e);
      return false;
    }
  };
  const withStatus = (head: string, status?: string) => (status === undefined ? head : `${head}\n${statusLine(status)}`);
  return {
    ready: (status) => notify(withStatus('READY=1', status)),
    stopping: (status) => notify(withStatus('STOPPING=1', status)),
    status: (text) => notify(statusLine(text)),
    watchdog: () => notify('WATCHDOG=1'),
    watchdogIntervalMs: () => watchdogIntervalMs(env, pid),
  };
}

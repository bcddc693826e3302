// Unit tests of the systemd notify helper: message shapes, sd_watchdog_enabled semantics, failure
// handling. The datagram itself is covered by test/system/native.test.ts.
import { describe, expect, it, vi } from 'vitest';
import { createNotifier, watchdogIntervalMs } from '../../../daemon/host/notify.js';
import { sdNotify } from '../../../daemon/host/native.js';

function recorder(result = true) {
  const sent: string[] = [];
  return { sent, send: (state: string) => (sent.push(state), result) };
}

describe('notifier messages', () => {
  it('sends READY, STOPPING, STATUS and WATCHDOG assignments', () => {
    const r = recorder();
    const n = createNotifier({ env: {}, send: r.send });
    expect(n.ready()).toBe(true);
    expect(n.ready('API on /run/nodevirt.sock')).toBe(true);
    expect(n.stopping()).toBe(true);
    expect(n.status('3 VMs')).toBe(true);
    expect(n.watchdog()).toBe(true);
    expect(r.sent).toEqual(['READY=1', 'READY=1\nSTATUS=API on /run/nodevirt.sock', 'STOPPING=1', 'STATUS=3 VMs', 'WATCHDOG=1']);
  });

  it('keeps a status on one line so it cannot inject another assignment', () => {
    const r = recorder();
    createNotifier({ env: {}, send: r.send }).status('bad\nREADY=1\r\nx');
    expect(r.sent).toEqual(['STATUS=bad READY=1 x']);
  });

  it('passes its environment to the sender and reports "not under systemd" as false', () => {
    const seen: NodeJS.ProcessEnv[] = [];
    const env = { NOTIFY_SOCKET: '@x' };
    const n = createNotifier({ env, send: (_s, e) => (seen.push(e), false) });
    expect(n.ready()).toBe(false);
    expect(seen).toEqual([env]);
  });

  it('turns a failed send into false plus onError, never a throw', () => {
    const errors: unknown[] = [];
    const boom = Object.assign(new Error('sendto NOTIFY_SOCKET: Connection refused (ECONNREFUSED)'), { code: 'ECONNREFUSED' });
    const n = createNotifier({ env: {}, send: () => { throw boom; }, onError: (e) => errors.push(e) });
    expect(n.watchdog()).toBe(false);
    expect(errors).toEqual([boom]);
  });

  it('warns once per distinct failure by default, not once per watchdog ping', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      let fail = true;
      const n = createNotifier({ env: {}, send: () => { if (fail) throw new Error('ECONNREFUSED'); return true; } });
      n.watchdog();
      n.watchdog();
      n.watchdog();
      fail = false;
      expect(n.watchdog()).toBe(true);
      fail = true;
      n.watchdog();
      expect(warn.mock.calls).toEqual([['sd_notify failed: ECONNREFUSED'], ['sd_notify failed: ECONNREFUSED']]);
    } finally {
      warn.mockRestore();
    }
  });
});

describe('watchdogIntervalMs (sd_watchdog_enabled)', () => {
  const pid = 4242;
  it('is undefined without WATCHDOG_USEC', () => {
    expect(watchdogIntervalMs({}, pid)).toBeUndefined();
  });
  it('converts microseconds to milliseconds', () => {
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, pid)).toBe(30_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '1500' }, pid)).toBe(1.5);
  });
  it('applies only to the process named by WATCHDOG_PID', () => {
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '2000000', WATCHDOG_PID: '4242' }, pid)).toBe(2000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '2000000', WATCHDOG_PID: '1' }, pid)).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '2000000', WATCHDOG_PID: 'abc' }, pid)).toBeUndefined();
  });
  it('treats zero, negative, fractional and garbage values as disabled', () => {
    for (const v of ['0', '-5', '1.5', '', ' 10', 'ten', '99999999999999999999']) {
      expect(watchdogIntervalMs({ WATCHDOG_USEC: v }, pid), v).toBeUndefined();
    }
  });
  it('is what the notifier reports for its own env and pid', () => {
    const n = createNotifier({ env: { WATCHDOG_USEC: '4000000', WATCHDOG_PID: String(pid) }, pid, send: () => true });
    expect(n.watchdogIntervalMs()).toBe(4000);
  });
});

describe('sdNotify without a service manager', () => {
  it('returns false when NOTIFY_SOCKET is unset or empty, without needing the addon', () => {
    expect(sdNotify('READY=1', {})).toBe(false);
    expect(sdNotify('READY=1', { NOTIFY_SOCKET: '' })).toBe(false);
  });
});

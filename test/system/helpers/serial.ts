// Reads a guest's serial console from its unix socket until a marker shows up (the test guest's NODEVIRT-*
// lines), failing with everything read so far when it does not within the timeout.
import { createConnection, type Socket } from 'node:net';

export function readSerialUntil(path: string, marker: RegExp, timeoutMs: number): { done: Promise<string>; socket: Socket } {
  const socket = createConnection(path);
  let text = '';
  const done = new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no ${marker} on ${path} within ${timeoutMs} ms; console so far:\n${text}`)), timeoutMs);
    // A reader whose socket is gone must not keep the process (a benchmark, a test worker) alive.
    timer.unref();
    socket.on('close', () => clearTimeout(timer));
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (marker.test(text)) {
        clearTimeout(timer);
        ok(text.replace(/\r/g, ''));
      }
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      fail(e);
    });
  });
  return { done, socket };
}

/** readSerialUntil for a one-off read: the console text up to the marker, the socket closed either way. */
export async function readSerialOnce(path: string, marker: RegExp, timeoutMs: number): Promise<string> {
  const { done, socket } = readSerialUntil(path, marker, timeoutMs);
  try {
    return await done;
  } finally {
    socket.destroy();
  }
}

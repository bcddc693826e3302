// Waiting for a libvirt client (real or fake) to report itself connected, shared so both behave the same.
import { AppError } from '../lib/errors.js';
import type { ConnectionEvent } from './types.js';

interface ConnectionSource {
  on(event: 'connection', listener: (e: ConnectionEvent) => void): unknown;
  off(event: 'connection', listener: (e: ConnectionEvent) => void): unknown;
}

/** Resolves on the next `connected` event, or at once when already connected; LIBVIRT_UNAVAILABLE after timeoutMs. */
export function waitForConnected(source: ConnectionSource, alreadyConnected: boolean, timeoutMs: number): Promise<void> {
  if (alreadyConnected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onConn = (e: ConnectionEvent): void => {
      if (!e.connected) return;
      clearTimeout(timer);
      source.off('connection', onConn);
      resolve();
    };
    const timer = setTimeout(() => {
      source.off('connection', onConn);
      reject(new AppError('LIBVIRT_UNAVAILABLE', `libvirt not connected within ${timeoutMs} ms`));
    }, timeoutMs);
    source.on('connection', onConn);
  });
}

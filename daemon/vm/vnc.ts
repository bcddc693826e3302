// VNC proxy: each WebSocket client gets its own connection to the domain's VNC unix socket (QEMU's VNC
// server takes several clients), bytes passed both ways with backpressure, nothing buffered without bound.
import type { Socket } from 'node:net';
import { AppError, errorMessage } from '../lib/errors.js';
import { silentLogger, type Logger } from '../lib/logger.js';
import { CLOSE, connectUnix, locateGuest, stillRunning, type GuestLibvirt, type Ticket, type VmLocator } from './console.js';

export interface VncProxyDeps {
  vms: VmLocator;
  libvirt: GuestLibvirt;
  logger?: Logger;
  /** Upstream reading pauses while a client has more than this queued. Default 1 MiB. */
  highWaterBytes?: number;
  connectTimeoutMs?: number;
  /** How often a paused upstream checks whether its client caught up (ms). Default 20. */
  drainPollMs?: number;
  /** See ConsoleServiceDeps.settleMs. Default 3 s. */
  settleMs?: number;
}

export interface VncProxy {
  /** Checks the VM (404/409) and connects to its VNC socket, before the WebSocket upgrade. */
  open(vm: string): Promise<Ticket>;
  /** Proxied connections now open. */
  connections(): number;
  /** Ends every proxied connection (1001). */
  stop(): Promise<void>;
}

export function createVncProxy(deps: VncProxyDeps): VncProxy {
  const log = (deps.logger ?? silentLogger()).child({ component: 'vnc' });
  const high = deps.highWaterBytes ?? 1024 * 1024;
  const pollMs = deps.drainPollMs ?? 20;
  const live = new Set<{ end(code: number, reason: string): void }>();

  return {
    async open(vm) {
      const g = await locateGuest(deps.vms, deps.libvirt, vm);
      if (!g.vncPath) throw new AppError('VM_CONFLICT', `VM ${vm} has no VNC display on a unix socket`);
      const up: Socket = await connectUnix(g.vncPath, vm, deps.connectTimeoutMs ?? 5000);
      // Until attach, the RFB greeting waits in the socket.
      up.pause();
      let used = false;
      return {
        write: true,
        cancel() {
          if (used) return;
          used = true;
          up.destroy();
        },
        attach(peer) {
          if (used) throw new Error('VNC ticket used twice');
          used = true;
          let ended = false;
          let poll: NodeJS.Timeout | undefined;
          const conn = {
            end(code: number, reason: string) {
              if (ended) return;
              ended = true;
              live.delete(conn);
              if (poll) clearInterval(poll);
              up.destroy();
              try {
                peer.close(code, reason);
              } catch (e) {
                log.debug({ err: errorMessage(e) }, 'closing a VNC client failed');
              }
            },
          };
          live.add(conn);
          up.on('data', (d: Buffer) => {
            peer.send(d);
            if (peer.bufferedAmount > high && !poll) {
              // The client reads slowly: stop reading QEMU until it caught up (QEMU then skips frames).
              up.pause();
              poll = setInterval(() => {
                if (peer.bufferedAmount > high / 2) return;
                clearInterval(poll);
                poll = undefined;
                if (!ended) up.resume();
              }, pollMs);
            }
          });
          up.on('drain', () => peer.resume?.());
          let err: Error | undefined;
          up.on('error', (e) => (err = e));
          up.on('close', () => {
            if (ended) return;
            // QEMU ends the VNC connection when the VM stops; otherwise the server dropped us.
            void stillRunning(deps.libvirt, g.domain, deps.settleMs ?? 3000).then((running) => {
              log.info({ vm, running, err: err?.message }, 'VNC upstream closed');
              conn.end(running ? CLOSE.UPSTREAM_LOST : CLOSE.VM_STOPPED, running ? 'the VNC server closed the connection' : 'the VM stopped');
            });
          });
          up.resume();
          return {
            input(data) {
              if (ended) return;
              if (!up.write(data)) peer.pause?.();
            },
            detach() {
              if (ended) return;
              ended = true;
              live.delete(conn);
              if (poll) clearInterval(poll);
              up.destroy();
            },
          };
        },
      };
    },

    connections: () => live.size,

    async stop() {
      for (const c of [...live]) c.end(CLOSE.GOING_AWAY, 'nodevirtd is stopping');
    },
  };
}

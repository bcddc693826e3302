// GET /v1/vms/{name}/console and /vnc: WebSocket endpoints. The VM is checked (404/409) and the upstream
// connected before the 101, so every refusal is an ordinary problem response; then bytes flow both ways.
import type { RawData, WebSocket } from 'ws';
import { AppError } from '../../lib/errors.js';
import type { ConsoleService, Ticket } from '../../vm/console.js';
import type { VncProxy } from '../../vm/vnc.js';
import type { Handlers } from '../types.js';
import { acceptWebSocket, pendingUpgrade } from '../upgrade.js';
import type { Context } from 'koa';

export type ConsoleApi = Pick<ConsoleService, 'open'>;
export type VncApi = Pick<VncProxy, 'open'>;

const toBuffer = (d: RawData): Buffer => (Buffer.isBuffer(d) ? d : Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d));

async function serve(ctx: Context, open: () => Promise<Ticket>): Promise<{ status: 101; body: undefined }> {
  const upgrade = pendingUpgrade(ctx);
  const ticket = await open();
  let ws: WebSocket;
  try {
    ws = await acceptWebSocket(ctx, upgrade);
  } catch (e) {
    ticket.cancel();
    throw e;
  }
  const attachment = ticket.attach(ws);
  // Text frames (e.g. xterm.js) are taken as their UTF-8 bytes; binary frames as they are.
  ws.on('message', (data) => attachment.input(toBuffer(data)));
  ws.on('close', () => attachment.detach());
  ws.on('error', () => ws.terminate());
  return { status: 101, body: undefined };
}

export function consoleRoutes(deps: { console: ConsoleApi | undefined; vnc: VncApi | undefined }): Pick<Handlers, 'vmConsole' | 'vmVnc'> {
  const need = <T>(svc: T | undefined, what: string): T => {
    if (!svc) throw new AppError('INTERNAL', `the ${what} is not wired into this daemon`);
    return svc;
  };
  return {
    async vmConsole({ path, query }, ctx) {
      return serve(ctx, () => need(deps.console, 'console service').open(path.name, { write: query.mode === 'rw' }));
    },
    async vmVnc({ path }, ctx) {
      return serve(ctx, () => need(deps.vnc, 'VNC proxy').open(path.name));
    },
  };
}

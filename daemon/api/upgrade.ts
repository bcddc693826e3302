// WebSocket upgrades go through the same koa app as every request (request id, bearer-token auth on TCP,
// spec validation, problem+json errors): the upgrade's socket is wrapped in a response the app answers on,
// and the operation's handler either completes the handshake (acceptWebSocket) or its error is sent as HTTP.
import type { Duplex } from 'node:stream';
import { ServerResponse, type IncomingMessage } from 'node:http';
import type Koa from 'koa';
import type { Context } from 'koa';
import { WebSocketServer, type WebSocket } from 'ws';
import { AppError } from '../lib/errors.js';
import { requestListener, type Transport } from './app.js';

interface PendingUpgrade {
  socket: Duplex;
  head: Buffer;
  res: ServerResponse;
  listener: UpgradeListener;
}

const pending = new WeakMap<IncomingMessage, PendingUpgrade>();
// Per listener: what acceptWebSocket tells it about a new WebSocket.
const live = new WeakMap<UpgradeListener, { added(ws: WebSocket): void }>();

export interface UpgradeListener {
  /** For server.on('upgrade'). */
  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Live WebSockets accepted through this listener. */
  readonly sockets: ReadonlySet<WebSocket>;
  /** Closes every WebSocket (1001) and drops handshakes in flight: the listener is shutting down. */
  close(): void;
}

// Client messages are keystrokes or RFB client messages (clipboard at most); 1 MiB is generous.
const MAX_PAYLOAD = 1024 * 1024;
const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  maxPayload: MAX_PAYLOAD,
  // noVNC (websockify's protocol) asks for 'binary'; clients that ask for nothing get no subprotocol.
  handleProtocols: (protocols) => (protocols.has('binary') ? 'binary' : false),
});

/**
 * An 'upgrade' listener for one transport: runs the request through the app, marked with that transport.
 * Every `heartbeatMs` (default 30 s) each WebSocket is pinged; one that did not answer the previous ping is
 * cut off, so a vanished client (laptop closed, NAT timeout) does not hold the console's writer role forever.
 */
export function upgradeListener(app: Koa, transport: Transport, opts: { heartbeatMs?: number } = {}): UpgradeListener {
  const listener = requestListener(app, transport);
  const sockets = new Set<WebSocket>();
  const handshakes = new Set<Duplex>();
  const unanswered = new WeakSet<WebSocket>();
  let closed = false;
  let heartbeat: NodeJS.Timeout | undefined;
  const beat = () => {
    for (const ws of sockets) {
      if (unanswered.has(ws)) {
        ws.terminate();
        continue;
      }
      unanswered.add(ws);
      ws.ping();
    }
  };
  const self: UpgradeListener = {
    sockets,
    handle(req, socket, head) {
      if (closed) {
        socket.destroy();
        return;
      }
      handshakes.add(socket);
      socket.once('close', () => handshakes.delete(socket));
      socket.on('error', () => socket.destroy());
      // A refusal (401, 404, 409...) is written by koa as a normal response on the raw socket, then closed.
      const res = new ServerResponse(req);
      pending.set(req, { socket, head, res, listener: self });
      res.shouldKeepAlive = false;
      res.assignSocket(socket as never);
      res.once('finish', () => {
        res.detachSocket(socket as never);
        socket.end();
      });
      listener(req, res);
    },
    close() {
      closed = true;
      clearInterval(heartbeat);
      for (const ws of sockets) ws.close(1001, 'nodevirtd is stopping');
      for (const s of handshakes) s.destroy();
      // Clients that do not answer the close handshake are cut off.
      setTimeout(() => {
        for (const ws of sockets) ws.terminate();
      }, 2000).unref();
    },
  };
  live.set(self, {
    added(ws) {
      ws.on('pong', () => unanswered.delete(ws));
      heartbeat ??= setInterval(beat, opts.heartbeatMs ?? 30_000).unref();
    },
  });
  return self;
}

const WS_KEY = /^[+/0-9A-Za-z]{22}==$/;

/**
 * The upgrade behind this request, checked as ws would (so ws never answers on its own): 426
 * UPGRADE_REQUIRED for a plain GET or a malformed WebSocket handshake.
 */
export function pendingUpgrade(ctx: Context): PendingUpgrade {
  const up = pending.get(ctx.req);
  const h = ctx.req.headers;
  const problems: string[] = [];
  if (!up) problems.push('this is a plain HTTP request');
  if ((h.upgrade ?? '').toLowerCase() !== 'websocket') problems.push('Upgrade: websocket is missing');
  if (!WS_KEY.test(h['sec-websocket-key'] ?? '')) problems.push('Sec-WebSocket-Key is missing or malformed');
  if (h['sec-websocket-version'] !== '13' && h['sec-websocket-version'] !== '8') problems.push('Sec-WebSocket-Version must be 13');
  if (!up || problems.length) throw new AppError('UPGRADE_REQUIRED', `${ctx.path} is a WebSocket endpoint: ${problems.join('; ')}`);
  return up;
}

/** Completes the handshake (101) on the raw socket; koa writes nothing for this request afterwards. */
export function acceptWebSocket(ctx: Context, up: PendingUpgrade): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const { socket, head, res, listener } = up;
    const gone = () => reject(new AppError('CONFLICT', 'the client closed the connection during the WebSocket handshake'));
    if (socket.destroyed) return gone();
    socket.once('close', gone);
    // From here the socket speaks WebSocket: the HTTP response object must never write on it.
    res.detachSocket(socket as never);
    wss.handleUpgrade(ctx.req, socket, head, (ws) => {
      socket.off('close', gone);
      ctx.respond = false;
      (listener.sockets as Set<WebSocket>).add(ws);
      live.get(listener)?.added(ws);
      ws.once('close', () => (listener.sockets as Set<WebSocket>).delete(ws));
      resolve(ws);
    });
  });
}

// GET /v1/events: the event log as Server-Sent Events. Replays what a reconnecting client missed
// (Last-Event-ID), says `gap` when that cannot be known, heartbeats, and frees its subscription on disconnect.
import { Readable } from 'node:stream';
import { AppError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { EventLog, EventRecord } from '../../ops/event-log.js';
import type { Handlers } from '../types.js';

export interface EventRouteOptions {
  /** A comment line this often keeps proxies and idle timers from cutting a quiet stream. Default 15 s. */
  heartbeatMs?: number;
  /** A dropped (slow) client gets this long to read its final event before its connection is cut. Default 10 s. */
  dropGraceMs?: number;
  /** Gets one line per stream when it ends (the request line is written when the stream starts). */
  logger?: Logger;
}

/** Ordinary events are unnamed (EventSource `message`); the two control events are named so they stand out. */
export function sseFrame(e: EventRecord): string {
  const named = e.type === 'gap' || e.type === 'dropped' ? `event: ${e.type}\n` : '';
  // JSON.stringify never emits a raw newline, so one data line always holds the whole event.
  return `id: ${e.id}\n${named}data: ${JSON.stringify(e)}\n\n`;
}

export function eventRoutes(deps: { events: EventLog | undefined } & EventRouteOptions): Pick<Handlers, 'eventsGet'> {
  const heartbeatMs = deps.heartbeatMs ?? 15_000;
  const dropGraceMs = deps.dropGraceMs ?? 10_000;
  return {
    async eventsGet({ query }, ctx) {
      // Fails loudly until main.ts wires it, rather than a stream on which nothing ever happens.
      if (!deps.events) throw new AppError('INTERNAL', 'the event log is not wired into this daemon');
      const headers = { 'Cache-Control': 'no-cache, no-transform', 'X-Accel-Buffering': 'no' };
      // koa answers HEAD without a body; a subscription would only leak until the socket closed.
      if (ctx.method === 'HEAD') return { status: 200, body: '', type: 'text/event-stream', headers };

      const header = ctx.get('last-event-id');
      const lastEventId = header !== '' ? header : query.lastEventId;
      const types = query.types
        ?.split(',')
        .map((t) => t.trim())
        .filter((t) => t !== '');
      const sub = deps.events.subscribe({
        ...(lastEventId !== undefined ? { lastEventId } : {}),
        ...(types?.length ? { types } : {}),
      });

      const started = Date.now();
      let sent = 0;
      let endReason: 'client-gone' | 'dropped' | 'log-closed' = 'client-gone';
      let reading = false;
      let heartbeat: NodeJS.Timeout | undefined;
      let grace: NodeJS.Timeout | undefined;
      const socket = ctx.req.socket;
      const out = new Readable({
        // Pulled, not pushed: the next event is taken only when the socket has room, so a slow client's
        // backlog stays in its bounded subscription queue (and gets it dropped), never in memory here.
        read() {
          pump();
        },
        destroy(err, cb) {
          clearInterval(heartbeat);
          clearTimeout(grace);
          sub.close();
          const line = { requestId: ctx.state.requestId as unknown, events: sent, ms: Date.now() - started, reason: endReason };
          if (endReason === 'dropped') deps.logger?.warn(line, 'event stream dropped a client that read too slowly');
          else deps.logger?.info(line, 'event stream closed');
          cb(err);
        },
      });
      const pump = (): void => {
        if (reading || out.destroyed) return;
        reading = true;
        void sub.next().then((e) => {
          reading = false;
          if (out.destroyed) return;
          if (e === undefined) {
            clearInterval(heartbeat);
            endReason = sub.dropped ? 'dropped' : 'log-closed';
            if (sub.dropped) {
              grace = setTimeout(() => socket.destroy(), dropGraceMs);
              grace.unref();
            }
            out.push(null);
            return;
          }
          sent++;
          if (out.push(sseFrame(e))) pump();
        });
      };

      // Long-lived by design: no idle timeout on this socket, and frames leave at once.
      socket.setTimeout(0);
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 60_000);
      // The first chunk sends the headers now, so a client knows it is connected before any event.
      out.push(`retry: 3000\n: connected\n\n`);
      heartbeat = setInterval(() => {
        // Only onto an empty buffer: a client that reads nothing must not make keepalives pile up.
        if (!out.destroyed && out.readableLength === 0) out.push(': keepalive\n\n');
      }, heartbeatMs);
      heartbeat.unref();
      return { status: 200, body: out, type: 'text/event-stream', headers };
    },
  };
}

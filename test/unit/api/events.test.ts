// GET /v1/events through the real app over a real socket: live delivery, replay after Last-Event-ID, gaps,
// filters, heartbeats, slow clients dropped, subscriptions freed on disconnect and on shutdown.
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../daemon/lib/logger.js';
import { createEventLog, type EventLog, type EventRecord } from '../../../daemon/ops/event-log.js';
import { createStore, type Store } from '../../../daemon/store/store.js';
import { closeServer, send, serveApp } from './helpers.js';

interface Frame {
  id?: string;
  event?: string;
  data?: EventRecord;
  comment?: string;
  retry?: number;
}

interface Stream {
  status: number;
  headers: IncomingHttpHeaders;
  res: IncomingMessage;
  frames: Frame[];
  ended: Promise<void>;
  /** Waits until `n` event frames (comments and retry lines aside) arrived. */
  events(n: number, timeoutMs?: number): Promise<Frame[]>;
  close(): void;
}

function parse(block: string): Frame {
  const f: Frame = {};
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) f.comment = line.slice(1).trim();
    else if (line.startsWith('id: ')) f.id = line.slice(4);
    else if (line.startsWith('event: ')) f.event = line.slice(7);
    else if (line.startsWith('data: ')) f.data = JSON.parse(line.slice(6)) as EventRecord;
    else if (line.startsWith('retry: ')) f.retry = Number(line.slice(7));
  }
  return f;
}

function open(port: number, path = '/v1/events', headers: Record<string, string> = {}): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      const frames: Frame[] = [];
      let buf = '';
      const waiters: Array<() => void> = [];
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let at: number;
        while ((at = buf.indexOf('\n\n')) >= 0) {
          frames.push(parse(buf.slice(0, at)));
          buf = buf.slice(at + 2);
        }
        for (const w of waiters.splice(0)) w();
      });
      const ended = new Promise<void>((r) => {
        res.on('end', r);
        res.on('close', r);
      });
      const eventFrames = () => frames.filter((f) => f.data !== undefined);
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        res,
        frames,
        ended,
        async events(n, timeoutMs = 3000) {
          const deadline = Date.now() + timeoutMs;
          while (eventFrames().length < n) {
            if (Date.now() > deadline) throw new Error(`timed out with ${eventFrames().length} of ${n} events: ${JSON.stringify(frames)}`);
            await Promise.race([new Promise<void>((r) => waiters.push(r)), new Promise((r) => setTimeout(r, 50))]);
          }
          return eventFrames();
        },
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let dir: string;
let store: Store;
let server: Server;
let port: number;
let log: EventLog;
const streams: Stream[] = [];

async function connect(path?: string, headers?: Record<string, string>): Promise<Stream> {
  const s = await open(port, path, headers);
  streams.push(s);
  return s;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-events-api-'));
  store = createStore({ stateDir: dir });
  await store.open();
  log = createEventLog({ capacity: 20, bootId: 1763900000000 });
  ({ server, port } = await serveApp(store, { events: log, eventStream: { heartbeatMs: 100 } }));
});

afterEach(async () => {
  for (const s of streams.splice(0)) s.close();
  await until(() => log.subscriberCount() === 0, 'every subscription to be freed');
});

afterAll(async () => {
  await closeServer(server);
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const vm = (name: string, type = 'vm.started') => ({ type, subject: `vms/${name}`, data: { name } });

describe('GET /v1/events', () => {
  it('streams published events live as unnamed frames with their id, after an immediate retry hint', async () => {
    const s = await connect();
    expect(s.status).toBe(200);
    expect(s.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(s.headers['cache-control']).toBe('no-cache, no-transform');
    expect(s.headers['x-request-id']).toBeTruthy();
    await until(() => log.subscriberCount() === 1, 'the subscription');
    expect(s.frames[0]).toMatchObject({ retry: 3000 });
    const a = log.publish(vm('a'));
    const b = log.publish({ type: 'dhcp.ack', subject: 'interfaces/nvtap1', data: { interface: 'nvtap1', mac: '52:54:00:00:00:01', ip: '10.0.0.2' } });
    const got = await s.events(2);
    expect(got).toEqual([
      { id: a.id, data: a },
      { id: b.id, data: b },
    ]);
  });

  it('sends a keepalive comment on a quiet stream', async () => {
    const s = await connect();
    await until(() => s.frames.some((f) => f.comment === 'keepalive'), 'a heartbeat');
  });

  it('a reconnect with Last-Event-ID gets exactly the events it missed, then live ones', async () => {
    const s = await connect();
    await until(() => log.subscriberCount() === 1, 'the subscription');
    const seen = log.publish(vm('seen'));
    await s.events(1);
    s.close();
    await until(() => log.subscriberCount() === 0, 'the closed client to be unsubscribed');
    const missed = [log.publish(vm('m1')), log.publish(vm('m2', 'vm.stopped')), log.publish(vm('m3'))];

    const again = await connect('/v1/events', { 'Last-Event-ID': seen.id });
    expect((await again.events(3)).map((f) => f.id)).toEqual(missed.map((e) => e.id));
    const live = log.publish(vm('live'));
    expect((await again.events(4))[3]!.data).toEqual(live);

    // The query form does the same for clients that cannot set headers.
    const viaQuery = await connect(`/v1/events?lastEventId=${encodeURIComponent(seen.id)}`);
    expect((await viaQuery.events(4)).map((f) => f.data!.subject)).toEqual(['vms/m1', 'vms/m2', 'vms/m3', 'vms/live']);
  });

  it('an id older than the history gets a named gap event first, then live events only', async () => {
    const first = log.publish(vm('old'));
    for (let i = 0; i < 25; i++) log.publish(vm(`filler${i}`));
    const s = await connect('/v1/events', { 'Last-Event-ID': first.id });
    const [gap] = await s.events(1);
    expect(gap).toMatchObject({ event: 'gap', id: log.lastId(), data: { type: 'gap', subject: 'events', data: { reason: 'too-old', lastEventId: first.id } } });
    const live = log.publish(vm('after-gap'));
    const got = await s.events(2);
    expect(got[1]).toEqual({ id: live.id, data: live });
  });

  it('an id from an earlier daemon run gets a gap (other-run)', async () => {
    log.publish(vm('x'));
    const s = await connect('/v1/events?lastEventId=1700000000000-5');
    expect((await s.events(1))[0]).toMatchObject({ event: 'gap', data: { data: { reason: 'other-run' } } });
  });

  it('filters by comma-separated type prefixes', async () => {
    const s = await connect('/v1/events?types=dhcp.,operation.succeeded');
    await until(() => log.subscriberCount() === 1, 'the subscription');
    log.publish(vm('no'));
    const ack = log.publish({ type: 'dhcp.ack', subject: 'interfaces/t' });
    log.publish({ type: 'operation.started', subject: 'operations/1' });
    const done = log.publish({ type: 'operation.succeeded', subject: 'operations/1' });
    log.publish({ type: 'network.applied', subject: 'networks/n' });
    expect((await s.events(2)).map((f) => f.id)).toEqual([ack.id, done.id]);
    await new Promise((r) => setTimeout(r, 100));
    expect(s.frames.filter((f) => f.data).length).toBe(2);
  });

  it('frees the subscription when the client goes away, and HEAD subscribes to nothing', async () => {
    const clients = await Promise.all([connect(), connect(), connect()]);
    await until(() => log.subscriberCount() === 3, 'three subscriptions');
    for (const c of clients) c.close();
    await until(() => log.subscriberCount() === 0, 'no subscription');
    const head = await send({ port }, { method: 'HEAD', path: '/v1/events' });
    expect(head.status).toBe(200);
    expect(head.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(log.subscriberCount()).toBe(0);
  });

  it('drops a client that stops reading with a final `dropped` event; it resumes from that id without loss', async () => {
    const s = await connect();
    await until(() => log.subscriberCount() === 1, 'the subscription');
    const before = log.publish(vm('before'));
    await s.events(1);
    s.res.pause();
    // Big events fill the socket buffers; the subscription's bounded queue then overflows.
    const pad = 'x'.repeat(16 * 1024);
    const published: EventRecord[] = [];
    for (let i = 0; i < 2000 && log.subscriberCount() > 0; i++) {
      published.push(log.publish({ type: 'vm.log', subject: 'vms/chatty', data: { i, pad } }));
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(log.subscriberCount()).toBe(0);
    s.res.resume();
    await s.ended;
    const frames = s.frames.filter((f) => f.data);
    const last = frames.at(-1)!;
    expect(last.event).toBe('dropped');
    expect(last.data).toMatchObject({ type: 'dropped', data: { reason: 'slow-consumer' } });
    // Everything before the dropped frame arrived in order, and its id is the last one delivered.
    const delivered = frames.slice(0, -1).map((f) => f.id);
    expect(delivered[0]).toBe(before.id);
    expect(delivered.slice(1)).toEqual(published.slice(0, delivered.length - 1).map((e) => e.id));
    expect(last.id).toBe(delivered.at(-1));
  });

  it('ends every open stream when the log closes (daemon shutdown), logging why each stream ended', async () => {
    const own = createEventLog();
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const app = await serveApp(store, { events: own, logger: createLogger({ level: 'info', destination }) });
    try {
      const gone = await open(app.port);
      await until(() => own.subscriberCount() === 1, 'the first subscription');
      gone.close();
      await until(() => lines.some((l) => l.msg === 'event stream closed'), 'the first stream-end line');
      const s = await open(app.port);
      await until(() => own.subscriberCount() === 1, 'the subscription');
      own.publish(vm('last'));
      own.close();
      await s.ended;
      expect(s.frames.filter((f) => f.data).map((f) => f.data!.subject)).toEqual(['vms/last']);
      expect(own.subscriberCount()).toBe(0);
      await until(() => lines.filter((l) => l.msg === 'event stream closed').length === 2, 'two stream-end lines');
      expect(lines.filter((l) => l.msg === 'event stream closed').map((l) => [l.reason, l.events])).toEqual([
        ['client-gone', 0],
        ['log-closed', 1],
      ]);
    } finally {
      await closeServer(app.server);
    }
  });

  it('rejects a malformed filter with 400 and answers 500 when no event log is wired', async () => {
    const bad = await send({ port }, { path: '/v1/events?types=%3Cscript%3E' });
    expect(bad.status).toBe(400);
    const bare = await serveApp(store);
    try {
      expect((await send({ port: bare.port }, { path: '/v1/events' })).status).toBe(500);
    } finally {
      await closeServer(bare.server);
    }
  });
});

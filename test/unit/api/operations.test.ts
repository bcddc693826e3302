// /v1/operations through the real app (response validation on) over real operations, plus
// operationResponse: what an action that runs as an operation answers with and without ?wait.
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toProblem } from '../../../daemon/api/errors.js';
import { operationResponse } from '../../../daemon/api/operation-response.js';
import { AppError } from '../../../daemon/lib/errors.js';
import { silentLogger } from '../../../daemon/lib/logger.js';
import { createOperations } from '../../../daemon/ops/operations.js';
import type { OperationContext, Operations } from '../../../daemon/ops/types.js';
import { createStore, type Store } from '../../../daemon/store/store.js';
import { closeServer, send, serveApp, spec } from './helpers.js';

let dir: string;
let store: Store;
let server: Server;
let port: number;
let ops: Operations;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-ops-api-'));
  store = createStore({ stateDir: dir });
  await store.open();
  ops = createOperations();
  ({ server, port } = await serveApp(store, { ops }));
});

afterAll(async () => {
  await closeServer(server);
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Work that runs until the test lets it go (or cancels it). */
function held<T>() {
  let release!: (v: T) => void;
  let ctx!: OperationContext;
  const work = (c: OperationContext) => {
    ctx = c;
    return new Promise<T>((res, rej) => {
      release = res;
      c.signal.addEventListener('abort', () => rej(c.signal.reason));
    });
  };
  return { work, release: (v: T) => release(v), progress: (p: number, m?: string) => ctx.progress(p, m) };
}

describe('/v1/operations', () => {
  it('GET one shows progress, and the result once succeeded', async () => {
    const h = held<{ name: string; extra: undefined }>();
    const op = ops.run('vm.start', 'vms/web1', h.work);
    h.progress(30, 'booting');
    const res = await send({ port }, { path: `/v1/operations/${op.id}` });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ id: op.id, kind: 'vm.start', target: 'vms/web1', status: 'running', progress: { percent: 30, message: 'booting' } });
    h.release({ name: 'web1', extra: undefined });
    await ops.wait(op.id, 1000);
    const done = await send({ port }, { path: `/v1/operations/${op.id}` });
    expect(done.json).toMatchObject({ status: 'succeeded', progress: { percent: 100 }, result: { name: 'web1' } });
    expect((done.json as { result: object }).result).not.toHaveProperty('extra');
  });

  it('GET ?wait long-polls: answers when the operation ends, or after the wait with it still running', async () => {
    const h = held<number>();
    const op = ops.run('image.import', 'images/a', h.work);
    const t0 = Date.now();
    const still = await send({ port }, { path: `/v1/operations/${op.id}?wait=1` });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(still.status).toBe(200);
    expect((still.json as { status: string }).status).toBe('running');

    const pending = send({ port }, { path: `/v1/operations/${op.id}?wait=30` });
    setTimeout(() => h.release(42), 100);
    const t1 = Date.now();
    const ended = await pending;
    expect(Date.now() - t1).toBeLessThan(5000);
    expect(ended.json).toMatchObject({ status: 'succeeded', result: 42 });
  });

  it('a long-poll whose client went away stops waiting', async () => {
    const real = createOperations();
    let seen: AbortSignal | undefined;
    const spy: Operations = { ...real, wait: (id, ms, signal) => ((seen = signal), real.wait(id, ms, signal)) };
    const app = await serveApp(store, { ops: spy });
    try {
      const op = real.run('image.import', 'images/gone', () => new Promise(() => undefined));
      const req = httpRequest({ host: '127.0.0.1', port: app.port, path: `/v1/operations/${op.id}?wait=3600`, agent: false });
      req.on('error', () => undefined);
      req.end();
      await until(() => seen !== undefined);
      expect(seen!.aborted).toBe(false);
      req.destroy();
      await until(() => seen!.aborted);
    } finally {
      await closeServer(app.server);
    }
  });

  it('a failed operation is still 200 on GET, its error carrying code and status', async () => {
    const op = ops.run('vm.start', 'vms/gone', async () => {
      throw new AppError('VM_NOT_FOUND', 'no VM gone');
    });
    const res = await send({ port }, { path: `/v1/operations/${op.id}?wait=5` });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 'failed', error: { code: 'VM_NOT_FOUND', message: 'no VM gone', status: 404 } });
  });

  it('DELETE cancels: cancelRequested at once, cancelled with OPERATION_CANCELLED once the work stops', async () => {
    const h = held<void>();
    const op = ops.run('image.import', 'images/big', h.work);
    const res = await send({ port }, { method: 'DELETE', path: `/v1/operations/${op.id}?wait=5` });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 'cancelled', cancelRequested: true, error: { code: 'OPERATION_CANCELLED', status: 409 } });
    const again = await send({ port }, { method: 'DELETE', path: `/v1/operations/${op.id}` });
    expect(again.json).toEqual(res.json);
  });

  it('lists operations oldest first', async () => {
    const a = ops.run('k', 'list/a', () => new Promise(() => undefined));
    const b = ops.run('k', 'list/b', () => new Promise(() => undefined));
    const res = await send({ port }, { path: '/v1/operations' });
    expect(res.status).toBe(200);
    const ids = (res.json as { items: Array<{ id: string }> }).items.map((o) => o.id);
    expect(ids.indexOf(a.id)).toBeGreaterThanOrEqual(0);
    expect(ids.indexOf(b.id)).toBeGreaterThan(ids.indexOf(a.id));
  });

  it('unknown ids are 404 OPERATION_NOT_FOUND; malformed ids and waits are 400', async () => {
    const unknown = '0b7e4c52-6f3a-4d0e-9a57-3c1f2e8d9b10';
    for (const method of ['GET', 'DELETE']) {
      const res = await send({ port }, { method, path: `/v1/operations/${unknown}` });
      expect(res.status).toBe(404);
      expect((res.json as { code: string }).code).toBe('OPERATION_NOT_FOUND');
    }
    expect((await send({ port }, { path: '/v1/operations/not-an-id' })).status).toBe(400);
    expect((await send({ port }, { path: `/v1/operations/${unknown}?wait=3601` })).status).toBe(400);
    expect((await send({ port }, { path: `/v1/operations/${unknown}?wait=-1` })).status).toBe(400);
  });

  it('answers 500 rather than an empty list when operations are not wired', async () => {
    const bare = await serveApp(store);
    try {
      const res = await send({ port: bare.port }, { path: '/v1/operations' });
      expect(res.status).toBe(500);
    } finally {
      await closeServer(bare.server);
    }
  });
});

describe('operationResponse', () => {
  const problemOf = (err: unknown) => toProblem(err, { path: '/v1/x', requestId: 'r' }, silentLogger());

  it('without wait: 202, Location /v1/operations/{id}, the running Operation', async () => {
    const op = ops.run('vm.start', 'vms/r', () => new Promise(() => undefined));
    const r = await operationResponse(ops, op, undefined);
    expect(r).toEqual({ status: 202, headers: { Location: `/v1/operations/${op.id}` }, body: expect.objectContaining({ id: op.id, status: 'running' }) });
    const s = await spec();
    const accepted = s.operations.find((o) => o.operationId === 'operationGet')!;
    expect(accepted.validateResponse(200, 'application/json', r.body)).toEqual([]);
  });

  it('with a wait it ran out of: still 202', async () => {
    const op = ops.run('vm.start', 'vms/slow', () => new Promise(() => undefined));
    expect((await operationResponse(ops, op, 0)).status).toBe(202);
  });

  it('with a wait it finished within: 200 and the succeeded Operation with its result', async () => {
    const op = ops.run('vm.start', 'vms/fast', async () => ({ name: 'fast' }));
    const r = await operationResponse(ops, op, 5);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: 'succeeded', result: { name: 'fast' } });
  });

  it('with a wait it failed within: throws so the client gets the problem a synchronous call would give', async () => {
    const err = new AppError('VALIDATION_FAILED', 'memory too small', { issues: [{ pointer: '/body/memory', reason: 'too small' }] });
    const op = ops.run('vm.put', 'vms/bad', async () => {
      throw err;
    });
    const thrown = await operationResponse(ops, op, 5).catch((e: unknown) => e);
    expect(thrown).toBeInstanceOf(AppError);
    expect(problemOf(thrown)).toEqual(problemOf(err));

    const internal = ops.run('vm.put', 'vms/bug', async () => {
      throw new Error('disk at /srv/secret exploded');
    });
    const p = problemOf(await operationResponse(ops, internal, 5).catch((e: unknown) => e));
    expect(p.status).toBe(500);
    expect(p.body.code).toBe('INTERNAL');
    expect(JSON.stringify(p.body)).not.toContain('secret');
  });

  it('with a wait it was cancelled within: 409 OPERATION_CANCELLED', async () => {
    const h = held<void>();
    const op = ops.run('image.import', 'images/c', h.work);
    ops.cancel(op.id);
    const p = problemOf(await operationResponse(ops, op, 5).catch((e: unknown) => e));
    expect(p.status).toBe(409);
    expect(p.body.code).toBe('OPERATION_CANCELLED');
  });
});

// ops/operations.ts on its own: progress, waiting, cancel, expiry, error mapping and the events it publishes.
import { describe, expect, it } from 'vitest';
import { AppError } from '../../../daemon/lib/errors.js';
import { createOperations } from '../../../daemon/ops/operations.js';
import type { EventInput, OperationContext } from '../../../daemon/ops/types.js';

/** A work function the test finishes by hand. */
function controllable<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  let ctx!: OperationContext;
  const done = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return {
    work: (c: OperationContext) => {
      ctx = c;
      return done;
    },
    resolve: (v: T) => resolve(v),
    reject: (e: unknown) => reject(e),
    get ctx() {
      return ctx;
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('operations', () => {
  it('runs the work at once and reports running, then succeeded with the result and 100 %', async () => {
    const ops = createOperations();
    const w = controllable<{ name: string }>();
    const view = ops.run('vm.start', 'vms/web1', w.work);
    expect(view).toMatchObject({ kind: 'vm.start', target: 'vms/web1', status: 'running', progress: { percent: 0 } });
    expect(view.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(w.ctx.signal.aborted).toBe(false);
    w.resolve({ name: 'web1' });
    const ended = await ops.wait(view.id, 1000);
    expect(ended).toMatchObject({ status: 'succeeded', result: { name: 'web1' }, progress: { percent: 100 } });
    expect(ended.error).toBeUndefined();
    expect(ops.get(view.id).status).toBe('succeeded');
  });

  it('gives every operation its own random id', () => {
    const ops = createOperations();
    const ids = new Set(Array.from({ length: 200 }, () => ops.run('k', 't', () => new Promise(() => undefined)).id));
    expect(ids.size).toBe(200);
  });

  it('clamps progress to 0..100, never lets it go back and ignores it once ended', async () => {
    const ops = createOperations();
    const w = controllable<void>();
    const { id } = ops.run('image.import', 'images/x', w.work);
    w.ctx.progress(-5);
    expect(ops.get(id).progress).toEqual({ percent: 0 });
    w.ctx.progress(40, 'copying 40 of 100 MiB');
    expect(ops.get(id).progress).toEqual({ percent: 40, message: 'copying 40 of 100 MiB' });
    w.ctx.progress(20, 'back?');
    expect(ops.get(id).progress).toEqual({ percent: 40, message: 'back?' });
    w.ctx.progress(Number.NaN);
    expect(ops.get(id).progress.percent).toBe(40);
    w.ctx.progress(250);
    expect(ops.get(id).progress.percent).toBe(100);
    w.reject(new AppError('IMAGE_INVALID', 'not qcow2'));
    await ops.wait(id, 1000);
    w.ctx.progress(10, 'late');
    expect(ops.get(id).progress).toEqual({ percent: 100 });
  });

  it('hands out copies: changing a view changes nothing inside', () => {
    const ops = createOperations();
    const v = ops.run('k', 't', () => new Promise(() => undefined));
    v.status = 'failed';
    v.progress.percent = 99;
    expect(ops.get(v.id)).toMatchObject({ status: 'running', progress: { percent: 0 } });
  });

  it('wait resolves with the running view after the timeout, and at once for an ended operation', async () => {
    const ops = createOperations();
    const w = controllable<string>();
    const { id } = ops.run('k', 't', w.work);
    const started = Date.now();
    const v = await ops.wait(id, 80);
    expect(v.status).toBe('running');
    expect(Date.now() - started).toBeGreaterThanOrEqual(70);
    const pending = ops.wait(id, 60_000);
    w.resolve('r');
    const t0 = Date.now();
    expect((await pending).status).toBe('succeeded');
    expect(Date.now() - t0).toBeLessThan(1000);
    expect((await ops.wait(id, 60_000)).result).toBe('r');
  });

  it('maps an AppError to its code, message, issues and the HTTP status of the one mapping', async () => {
    const ops = createOperations();
    const { id } = ops.run('vm.start', 'vms/a', async () => {
      throw new AppError('VM_NOT_FOUND', 'no VM a');
    });
    expect((await ops.wait(id, 1000)).error).toEqual({ code: 'VM_NOT_FOUND', message: 'no VM a', status: 404 });

    const b = ops.run('vm.put', 'vms/b', async () => {
      throw new AppError('VALIDATION_FAILED', 'bad', { issues: [{ pointer: '/body/memory', reason: 'too small' }] });
    });
    expect((await ops.wait(b.id, 1000)).error).toEqual({ code: 'VALIDATION_FAILED', message: 'bad', status: 400, errors: [{ pointer: '/body/memory', reason: 'too small' }] });

    const c = ops.run('net', 'networks/c', async () => {
      throw new AppError('IP_IN_USE');
    });
    expect((await ops.wait(c.id, 1000)).error?.status).toBe(409);
  });

  it('maps any other throwable, even a synchronous throw, to INTERNAL 500 without leaking its message', async () => {
    const logged: unknown[] = [];
    const logger = { child: () => logger, error: (o: unknown) => logged.push(o), info: () => undefined, warn: () => undefined } as never;
    const ops = createOperations({ logger });
    const { id } = ops.run('k', 't', () => {
      throw new TypeError('cannot read x of undefined at /srv/secret.ts');
    });
    const v = await ops.wait(id, 1000);
    expect(v.status).toBe('failed');
    expect(v.error).toMatchObject({ code: 'INTERNAL', status: 500 });
    expect(JSON.stringify(v)).not.toContain('secret');
    expect(logged).toHaveLength(1);
  });

  it('cancel aborts the signal; work that then rejects ends cancelled with OPERATION_CANCELLED 409', async () => {
    const ops = createOperations();
    let reason: unknown;
    const { id } = ops.run('image.import', 'images/big', (ctx) =>
      new Promise((_res, rej) => {
        ctx.signal.addEventListener('abort', () => {
          reason = ctx.signal.reason;
          rej(ctx.signal.reason);
        });
      }),
    );
    const after = ops.cancel(id);
    expect(after.cancelRequested).toBe(true);
    const v = await ops.wait(id, 1000);
    expect(v.status).toBe('cancelled');
    expect(v.error).toEqual({ code: 'OPERATION_CANCELLED', message: 'image.import on images/big was cancelled', status: 409 });
    expect(reason).toBeInstanceOf(AppError);
  });

  it('work that completes despite a cancel stays succeeded; cancelling an ended operation changes nothing', async () => {
    const ops = createOperations();
    const w = controllable<number>();
    const { id } = ops.run('k', 't', w.work);
    ops.cancel(id);
    expect(w.ctx.signal.aborted).toBe(true);
    w.resolve(7);
    const v = await ops.wait(id, 1000);
    expect(v).toMatchObject({ status: 'succeeded', result: 7, cancelRequested: true });
    expect(ops.cancel(id)).toEqual(v);
  });

  it('throws OPERATION_NOT_FOUND for unknown ids on get, wait and cancel', async () => {
    const ops = createOperations();
    expect(() => ops.get('nope')).toThrow(expect.objectContaining({ code: 'OPERATION_NOT_FOUND' }));
    expect(() => ops.cancel('nope')).toThrow(expect.objectContaining({ code: 'OPERATION_NOT_FOUND' }));
    await expect(ops.wait('nope', 10)).rejects.toMatchObject({ code: 'OPERATION_NOT_FOUND' });
  });

  it('expires finished operations after retainMs but never running ones', async () => {
    let t = 1_000_000;
    const ops = createOperations({ now: () => t, retainMs: 60_000 });
    const done = ops.run('k', 'done', async () => 1);
    const running = ops.run('k', 'running', () => new Promise(() => undefined));
    await tick();
    t += 59_999;
    expect(ops.get(done.id).status).toBe('succeeded');
    t += 1;
    expect(() => ops.get(done.id)).toThrow(expect.objectContaining({ code: 'OPERATION_NOT_FOUND' }));
    t += 24 * 3600_000;
    expect(ops.get(running.id).status).toBe('running');
    expect(ops.list().map((o) => o.target)).toEqual(['running']);
  });

  it('keeps at most maxRetained finished operations, dropping the oldest first', async () => {
    const ops = createOperations({ maxRetained: 3 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(ops.run('k', `t${i}`, async () => i).id);
      await tick();
    }
    const running = ops.run('k', 'slow', () => new Promise(() => undefined));
    expect(ops.list().map((o) => o.target)).toEqual(['t2', 't3', 't4', 'slow']);
    expect(() => ops.get(ids[0]!)).toThrow(expect.objectContaining({ code: 'OPERATION_NOT_FOUND' }));
    expect(ops.get(running.id).status).toBe('running');
  });

  it('stamps createdAt and updatedAt from the injected clock', async () => {
    let t = Date.parse('2026-01-02T03:04:05.000Z');
    const ops = createOperations({ now: () => t });
    const w = controllable<void>();
    const { id, createdAt } = ops.run('k', 't', w.work);
    expect(createdAt).toBe('2026-01-02T03:04:05.000Z');
    t += 1500;
    w.ctx.progress(10);
    expect(ops.get(id).updatedAt).toBe('2026-01-02T03:04:06.500Z');
    expect(ops.get(id).createdAt).toBe(createdAt);
  });

  it('publishes operation.started and one end event per operation; a throwing sink breaks nothing', async () => {
    const events: EventInput[] = [];
    const ops = createOperations({ events: { publish: (e) => events.push(e) } });
    const ok = ops.run('vm.start', 'vms/a', async () => 'x');
    const bad = ops.run('vm.stop', 'vms/b', async () => {
      throw new AppError('VM_NOT_FOUND');
    });
    const cancelled = ops.run('image.import', 'images/c', (ctx) => new Promise((_r, rej) => ctx.signal.addEventListener('abort', () => rej(new Error('aborted')))));
    ops.cancel(cancelled.id);
    await Promise.all([ok, bad, cancelled].map((o) => ops.wait(o.id, 1000)));
    expect(events.map((e) => `${e.type} ${e.subject}`)).toEqual([
      `operation.started operations/${ok.id}`,
      `operation.started operations/${bad.id}`,
      `operation.started operations/${cancelled.id}`,
      `operation.succeeded operations/${ok.id}`,
      `operation.failed operations/${bad.id}`,
      `operation.cancelled operations/${cancelled.id}`,
    ]);
    expect(events[4]!.data).toMatchObject({ kind: 'vm.stop', target: 'vms/b', status: 'failed', code: 'VM_NOT_FOUND' });

    const angry = createOperations({ events: { publish: () => { throw new Error('sink down'); } } });
    const v = angry.run('k', 't', async () => 5);
    expect((await angry.wait(v.id, 1000)).status).toBe('succeeded');
  });
});

describe('operations: waiting ends early', () => {
  it('wait resolves at once with the running view when its signal aborts', async () => {
    const ops = createOperations();
    const { id } = ops.run('k', 't', () => new Promise(() => undefined));
    const ac = new AbortController();
    const pending = ops.wait(id, 60_000, ac.signal);
    const t0 = Date.now();
    ac.abort();
    expect((await pending).status).toBe('running');
    expect(Date.now() - t0).toBeLessThan(1000);
    expect((await ops.wait(id, 60_000, ac.signal)).status).toBe('running');
  });

  it('stop() answers every pending wait and every later one at once; work keeps running to its end', async () => {
    const ops = createOperations();
    let finish!: (v: string) => void;
    const { id } = ops.run('k', 't', () => new Promise<string>((r) => (finish = r)));
    const waits = [ops.wait(id, 60_000), ops.wait(id, 60_000)];
    const t0 = Date.now();
    ops.stop();
    expect((await Promise.all(waits)).map((v) => v.status)).toEqual(['running', 'running']);
    expect((await ops.wait(id, 60_000)).status).toBe('running');
    expect(Date.now() - t0).toBeLessThan(1000);
    finish('done');
    await tick();
    expect(ops.get(id)).toMatchObject({ status: 'succeeded', result: 'done' });
  });
});

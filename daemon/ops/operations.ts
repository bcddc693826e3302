// In-memory async operations (the Operations contract in types.ts): slow work runs in the background with
// progress and a cancel signal; finished operations stay readable for a bounded time and count, then expire.
import { randomUUID } from 'node:crypto';
// The status an error maps to must match what a synchronous call would have answered, so it comes from the
// one error -> HTTP mapping rather than a second table here.
import { httpStatusFor } from '../api/errors.js';
import { AppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { EventSink, OperationContext, OperationStatus, OperationView, Operations } from './types.js';

export interface OperationsOptions {
  now?: () => number;
  /** How long a finished operation stays readable (default 15 minutes). */
  retainMs?: number;
  /** At most this many finished operations are kept; the oldest go first (default 1000). */
  maxRetained?: number;
  events?: EventSink;
  logger?: Logger;
}

type OperationError = NonNullable<OperationView['error']>;

interface OperationRecord {
  view: OperationView;
  controller: AbortController;
  cancelRequested: boolean;
  finishedAt: number | undefined;
  waiters: Set<() => void>;
}

/** Operations plus what the daemon needs at shutdown. */
export interface OperationsService extends Operations {
  /** Answers every pending wait with the view as it is now (and later waits at once), so long-polls
   *  do not hold the API open at shutdown. Running work is left alone. */
  stop(): void;
}

export const DEFAULT_RETAIN_MS = 15 * 60_000;
export const DEFAULT_MAX_RETAINED = 1000;

/** The wire form of anything a work function threw; unknown throwables never leak their message. */
export function operationErrorOf(err: unknown): OperationError {
  if (err instanceof AppError) {
    const e: OperationError = { code: err.code, message: err.message, status: httpStatusFor(err.code) };
    if (err.issues?.length) e.errors = err.issues.map((i) => ({ pointer: i.pointer, reason: i.reason }));
    return e;
  }
  return { code: 'INTERNAL', message: 'the operation hit an unexpected error; see the daemon log for its id', status: 500 };
}

export function createOperations(opts: OperationsOptions = {}): OperationsService {
  const now = opts.now ?? Date.now;
  const retainMs = opts.retainMs ?? DEFAULT_RETAIN_MS;
  const maxRetained = opts.maxRetained ?? DEFAULT_MAX_RETAINED;
  const logger = opts.logger?.child({ component: 'ops' });
  // Insertion order is creation order, which the list and the count-based expiry rely on.
  const records = new Map<string, OperationRecord>();
  let finishedCount = 0;
  let stopped = false;

  const iso = () => new Date(now()).toISOString();

  function publish(type: string, rec: OperationRecord, extra: Record<string, unknown> = {}): void {
    if (!opts.events) return;
    try {
      opts.events.publish({
        type,
        subject: `operations/${rec.view.id}`,
        data: { kind: rec.view.kind, target: rec.view.target, status: rec.view.status, ...extra },
      });
    } catch (err) {
      // An event sink failing must not turn finished work into a failed operation.
      logger?.warn({ err, type, operation: rec.view.id }, 'publishing an operation event failed');
    }
  }

  function snapshot(rec: OperationRecord): OperationView {
    const v = rec.view;
    const out: OperationView = { ...v, progress: { ...v.progress } };
    if (v.error) out.error = { ...v.error, ...(v.error.errors ? { errors: v.error.errors.map((e) => ({ ...e })) } : {}) };
    return out;
  }

  function sweep(): void {
    if (finishedCount === 0) return;
    const t = now();
    let excess = finishedCount - maxRetained;
    for (const [id, rec] of records) {
      if (rec.finishedAt === undefined) continue;
      if (excess > 0 || t - rec.finishedAt >= retainMs) {
        records.delete(id);
        finishedCount--;
        excess--;
      }
    }
  }

  function lookup(id: string): OperationRecord {
    sweep();
    const rec = records.get(id);
    if (!rec) throw new AppError('OPERATION_NOT_FOUND', `no operation ${id} (unknown, or finished and expired)`);
    return rec;
  }

  function finish(rec: OperationRecord, status: Exclude<OperationStatus, 'running'>, fields: { result?: unknown; error?: OperationError }): void {
    rec.view.status = status;
    rec.view.updatedAt = iso();
    if (status === 'succeeded') {
      rec.view.progress = { ...rec.view.progress, percent: 100 };
      rec.view.result = fields.result;
    }
    if (fields.error) rec.view.error = fields.error;
    rec.finishedAt = now();
    finishedCount++;
    for (const wake of rec.waiters) wake();
    rec.waiters.clear();
    publish(`operation.${status}`, rec, fields.error ? { code: fields.error.code, message: fields.error.message } : {});
    sweep();
  }

  return {
    run<T>(kind: string, target: string, work: (ctx: OperationContext) => Promise<T>): OperationView {
      const created = iso();
      const rec: OperationRecord = {
        view: { id: randomUUID(), kind, target, status: 'running', progress: { percent: 0 }, createdAt: created, updatedAt: created },
        controller: new AbortController(),
        cancelRequested: false,
        finishedAt: undefined,
        waiters: new Set(),
      };
      records.set(rec.view.id, rec);
      publish('operation.started', rec);

      const ctx: OperationContext = {
        signal: rec.controller.signal,
        progress(percent, message) {
          if (rec.finishedAt !== undefined || !Number.isFinite(percent)) return;
          const clamped = Math.min(100, Math.max(rec.view.progress.percent, percent));
          rec.view.progress = message === undefined ? { percent: clamped } : { percent: clamped, message };
          rec.view.updatedAt = iso();
        },
      };

      // An async wrapper so a work function that throws synchronously still fails only its operation.
      void (async () => work(ctx))().then(
        (result) => {
          // Work that completed despite a cancel did its side effects: reporting "cancelled" would lie.
          finish(rec, 'succeeded', { result });
        },
        (err: unknown) => {
          if (rec.cancelRequested) {
            finish(rec, 'cancelled', { error: operationErrorOf(new AppError('OPERATION_CANCELLED', `${kind} on ${target} was cancelled`)) });
            return;
          }
          const error = operationErrorOf(err);
          if (error.status >= 500) logger?.error({ err, operation: rec.view.id, kind, target }, 'operation failed');
          else logger?.info({ operation: rec.view.id, kind, target, code: error.code }, 'operation failed');
          finish(rec, 'failed', { error });
        },
      );
      return snapshot(rec);
    },

    get(id) {
      return snapshot(lookup(id));
    },

    list() {
      sweep();
      return [...records.values()].map(snapshot);
    },

    wait(id, timeoutMs, signal) {
      let rec: OperationRecord;
      try {
        rec = lookup(id);
      } catch (err) {
        return Promise.reject(err);
      }
      if (rec.finishedAt !== undefined || stopped || signal?.aborted) return Promise.resolve(snapshot(rec));
      return new Promise((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          rec.waiters.delete(done);
          resolve(snapshot(rec));
        };
        const timer = setTimeout(done, Math.max(0, timeoutMs));
        signal?.addEventListener('abort', done, { once: true });
        rec.waiters.add(done);
      });
    },

    stop() {
      stopped = true;
      for (const rec of records.values()) for (const wake of [...rec.waiters]) wake();
    },

    cancel(id) {
      const rec = lookup(id);
      if (rec.finishedAt === undefined && !rec.cancelRequested) {
        rec.cancelRequested = true;
        rec.view.cancelRequested = true;
        rec.view.updatedAt = iso();
        rec.controller.abort(new AppError('OPERATION_CANCELLED', `${rec.view.kind} on ${rec.view.target} was cancelled`));
        logger?.info({ operation: id, kind: rec.view.kind, target: rec.view.target }, 'operation cancel requested');
      }
      return snapshot(rec);
    },
  };
}

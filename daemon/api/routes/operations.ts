// /v1/operations: list, get (?wait long-poll) and cancel (DELETE) the async operations that slow actions
// run as (ops/operations.ts); the actions themselves answer through api/operation-response.ts.
import { AppError } from '../../lib/errors.js';
import type { Operations } from '../../ops/types.js';
import { toOperation } from '../operation-response.js';
import type { Handlers } from '../types.js';

/** Aborts when the client goes away, so its long-poll stops waiting for nobody. */
function clientGone(ctx: { res: { once(event: 'close', cb: () => void): unknown } }): AbortSignal {
  const ac = new AbortController();
  // The response's close, not the request's: a bodiless request may count as closed once it was read.
  ctx.res.once('close', () => ac.abort());
  return ac.signal;
}

export function operationRoutes(deps: { ops: Operations | undefined }): Pick<Handlers, 'operationsList' | 'operationGet' | 'operationCancel'> {
  const svc = (): Operations => {
    // Fails loudly until main.ts wires it, rather than answering as if no operation existed.
    if (!deps.ops) throw new AppError('INTERNAL', 'operations are not wired into this daemon');
    return deps.ops;
  };
  return {
    async operationsList() {
      return { status: 200, body: { items: svc().list().map(toOperation) } };
    },

    async operationGet({ path, query }, ctx) {
      const ops = svc();
      const view = query.wait === undefined ? ops.get(path.id) : await ops.wait(path.id, query.wait * 1000, clientGone(ctx));
      return { status: 200, body: toOperation(view) };
    },

    async operationCancel({ path, query }, ctx) {
      const ops = svc();
      const view = ops.cancel(path.id);
      return { status: 200, body: toOperation(query.wait === undefined ? view : await ops.wait(path.id, query.wait * 1000, clientGone(ctx))) };
    },
  };
}

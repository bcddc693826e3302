// How an action that runs as an operation answers: 202 + Location at once, or, with ?wait=N, the finished
// operation (200) or the very problem the synchronous call would have given.
import { AppError, ERROR_CODES, type ErrorCode } from '../lib/errors.js';
import type { OperationView, Operations } from '../ops/types.js';
import type { Schemas } from './types.js';

export type OperationReply =
  | { status: 202; body: Schemas['Operation']; headers: { Location: string } }
  | { status: 200; body: Schemas['Operation'] };

export const operationLocation = (id: string): string => `/v1/operations/${encodeURIComponent(id)}`;

/** The wire form: views may hold undefined fields (a Vm view in `result`), which JSON drops. */
export function toOperation(view: OperationView): Schemas['Operation'] {
  return JSON.parse(JSON.stringify(view)) as Schemas['Operation'];
}

/** The AppError an ended-but-not-succeeded operation stands for, rebuilt from its recorded error. */
export function operationFailure(view: OperationView): AppError {
  if (view.status === 'cancelled') return new AppError('OPERATION_CANCELLED', view.error?.message);
  const e = view.error;
  if (!e || !Object.hasOwn(ERROR_CODES, e.code)) return new AppError('INTERNAL', e?.message);
  const issues = e.errors?.map((i) => ({ pointer: i.pointer, reason: i.reason }));
  return new AppError(e.code as ErrorCode, e.message, issues?.length ? { issues } : {});
}

export async function operationResponse(ops: Operations, op: OperationView, waitSeconds: number | undefined): Promise<OperationReply> {
  const view = waitSeconds === undefined ? op : await ops.wait(op.id, waitSeconds * 1000);
  if (view.status === 'running') return { status: 202, body: toOperation(view), headers: { Location: operationLocation(view.id) } };
  if (view.status === 'succeeded') return { status: 200, body: toOperation(view) };
  throw operationFailure(view);
}

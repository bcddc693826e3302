// Handler types derived from the generated spec types: every operationId needs a handler, and a handler's
// input and success replies have the shapes the spec gives them.
import type { Context } from 'koa';
import type { Readable } from 'node:stream';
import type { components, operations } from './generated/openapi.js';

export type Schemas = components['schemas'];
export type Node = Schemas['Node'];
export type HostCheck = Schemas['HostCheck'];
export type Lease = Schemas['Lease'];
export type OperationId = keyof operations;

type Op<K extends OperationId> = operations[K];
type PathOf<K extends OperationId> = Op<K>['parameters'] extends { path: infer P } ? P : Record<string, never>;
// openapi-typescript marks `query` optional when every query parameter is optional.
type QueryOf<K extends OperationId> = Op<K>['parameters'] extends { query?: infer Q }
  ? [Exclude<Q, undefined>] extends [never]
    ? Record<string, never>
    : Exclude<Q, undefined>
  : Record<string, never>;
type BodyOf<K extends OperationId> = Op<K> extends { requestBody: { content: { 'application/json': infer B } } } ? B : undefined;

export interface Input<K extends OperationId> {
  path: PathOf<K>;
  query: QueryOf<K>;
  body: BodyOf<K>;
}

type Responses<K extends OperationId> = Op<K>['responses'];
type SuccessStatus<K extends OperationId> = Extract<keyof Responses<K>, 101 | 200 | 201 | 202 | 204>;
type ReplyBody<R> = R extends { content: { 'application/json': infer B } }
  ? B
  : R extends { content?: never }
    ? undefined
    : string | Buffer | Readable;

export type Reply<K extends OperationId> = {
  [S in SuccessStatus<K>]: {
    status: S;
    body: ReplyBody<Responses<K>[S]>;
    /** Content-Type when it is not JSON. */
    type?: string;
    headers?: Record<string, string>;
  };
}[SuccessStatus<K>];

/** Errors are thrown as AppError; only success replies are returned. */
export type Handler<K extends OperationId> = (input: Input<K>, ctx: Context) => Promise<Reply<K>>;

export type Handlers = { [K in OperationId]: Handler<K> };

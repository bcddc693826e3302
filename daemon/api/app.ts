// Builds the koa app from the spec: one route per operation, request validation before the handler,
// optional response validation after it, one log line per request. Never listens (server.ts does).
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, RequestListener } from 'node:http';
import Koa, { type Context, type Middleware } from 'koa';
import Router from '@koa/router';
import { AppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { TokenService } from '../auth/token-service.js';
import { assertDeclaredLength, assertJsonContentType, discardBody, hasBody, readJsonBody, settleRequestBody } from './body.js';
import { errorMiddleware, sendProblem } from './errors.js';
import type { ApiOperation, ApiSpec } from './openapi.js';
import type { Handlers, Node } from './types.js';
import { docsRoutes } from './routes/docs.js';
import { healthzRoutes } from './routes/healthz.js';
import { leaseRoutes, type LeaseQuery } from './routes/leases.js';
import { networkRoutes, type NetworkApi } from './routes/networks.js';
import { vmRoutes, type VmApi } from './routes/vms.js';
import { imageRoutes, type ImageApi } from './routes/images.js';
import { operationRoutes } from './routes/operations.js';
import { eventRoutes, type EventRouteOptions } from './routes/events.js';
import type { EventLog } from '../ops/event-log.js';
import type { Operations } from '../ops/types.js';
import { consoleRoutes, type ConsoleApi, type VncApi } from './routes/console.js';
import { nodeRoutes } from './routes/node.js';
import { tokenRoutes } from './routes/tokens.js';

export interface AppDeps {
  logger: Logger;
  spec: ApiSpec;
  node: { info(): Promise<Node> };
  tokens: TokenService;
  /**
   * DHCP leases (net/dhcp/lease-repo.ts). Optional only until main.ts wires it: without it GET /v1/leases
   * answers 500 INTERNAL rather than an empty list that would look like "no guest has an address".
   */
  leases: LeaseQuery;
  /** Networks (net/network-service.ts). Optional until main.ts wires it; the routes answer 500 without it. */
  networks?: NetworkApi;
  /** VMs (vm/vm-service.ts). Optional until main.ts wires it; the routes answer 500 without it. */
  vms?: VmApi;
  /** Async operations (ops/operations.ts). Optional until main.ts wires it; the routes answer 500 without it. */
  ops?: Operations;
  /** The event log (ops/event-log.ts) behind GET /v1/events. Optional until main.ts wires it; 500 without it. */
  events?: EventLog;
  /** Heartbeat and slow-client timings of the event stream (tests shorten them). */
  eventStream?: EventRouteOptions;
  /** The image registry (storage/image-registry.ts); imports also need `ops`. Optional until main.ts wires it; the routes answer 500 without it. */
  images?: ImageApi;
  /** Serial console multiplexer (vm/console.ts) and VNC proxy (vm/vnc.ts); the WebSocket routes answer 500 without them. */
  console?: ConsoleApi;
  vnc?: VncApi;
  version: string;
  /** Check every response against the spec; a mismatch becomes 500 RESPONSE_INVALID. Tests turn it on. */
  validateResponses?: boolean;
}

export type Transport = 'unix' | 'tcp';

// Which listener a request came in on. Requests nobody marked are treated as TCP (untrusted), so an app
// served by anything other than server.ts fails closed.
const transports = new WeakMap<IncomingMessage, Transport>();

/** app.callback() for one listener: marks each request with its transport. */
export function requestListener(app: Koa, transport: Transport): RequestListener {
  const callback = app.callback();
  return (req, res) => {
    transports.set(req, transport);
    void callback(req, res);
  };
}

/** A handler with its per-operation types erased, as the router sees it. */
type AnyHandler = (
  input: { path: Record<string, unknown>; query: Record<string, unknown>; body: unknown },
  ctx: Context,
) => Promise<{ status: number; body?: unknown; type?: string; headers?: Record<string, string> }>;

const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function createApp(deps: AppDeps): Koa {
  const logger = deps.logger.child({ component: 'api' });
  const handlers: Handlers = {
    ...healthzRoutes(),
    ...nodeRoutes(deps),
    ...tokenRoutes(deps),
    ...leaseRoutes({ leases: deps.leases }),
    ...networkRoutes({ networks: deps.networks }),
    ...vmRoutes({ vms: deps.vms, ops: deps.ops }),
    ...operationRoutes({ ops: deps.ops }),
    ...eventRoutes({ events: deps.events, logger, ...deps.eventStream }),
    ...imageRoutes({ images: deps.images, ops: deps.ops }),
    ...consoleRoutes({ console: deps.console, vnc: deps.vnc }),
    ...docsRoutes(deps),
  };

  const byId = new Map(deps.spec.operations.map((op) => [op.operationId, op]));
  for (const id of Object.keys(handlers)) {
    if (!byId.has(id)) throw new Error(`handler ${id} has no operation in the spec`);
  }

  // strict/sensitive: /v1/node/ and /V1/NODE are not /v1/node; the spec lists exact paths.
  const router = new Router({ strict: true, sensitive: true });
  const publicOps = new Set<string>();
  const localOnlyOps = new Set<string>();
  for (const op of deps.spec.operations) {
    const handler = (handlers as unknown as Record<string, AnyHandler | undefined>)[op.operationId];
    if (!handler) throw new Error(`operation ${op.operationId} (${op.method} ${op.path}) has no handler`);
    if (op.public) publicOps.add(op.operationId);
    if (op.localOnly) localOnlyOps.add(op.operationId);
    router.register(op.routerPath, [op.method], operationMiddleware(op, handler), { name: op.operationId });
  }

  const app = new Koa();
  app.proxy = false;
  app.silent = true;
  app.use(requestLog(logger));
  if (deps.validateResponses) app.use(responseValidation(deps.spec, logger));
  app.use(errorMiddleware(logger));
  app.use(authenticate(deps.tokens, router, publicOps, localOnlyOps));
  app.use(router.routes());
  app.use(noRoute(router));
  return app;
}

function requestLog(logger: Logger): Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    const incoming = ctx.get('x-request-id');
    const requestId = SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    const transport = transports.get(ctx.req) ?? 'tcp';
    ctx.state.requestId = requestId;
    ctx.state.transport = transport;
    ctx.set('X-Request-Id', requestId);
    try {
      await next();
    } finally {
      settleRequestBody(ctx.req, (name, value) => ctx.set(name, value));
      const op = ctx.state.operation as ApiOperation | undefined;
      logger.info(
        {
          method: ctx.method,
          path: ctx.path,
          status: ctx.status,
          ms: Number(process.hrtime.bigint() - started) / 1e6,
          requestId,
          transport,
          ...(op ? { operationId: op.operationId } : {}),
          ...(ctx.state.principal ? { principal: ctx.state.principal } : {}),
        },
        'request',
      );
    }
  };
}

/** Every response (success or problem) must match the spec; tests run with this on. */
function responseValidation(spec: ApiSpec, logger: Logger): Middleware {
  return async (ctx, next) => {
    await next();
    const op = ctx.state.operation as ApiOperation | undefined;
    const type = ctx.response.type;
    const body: unknown = ctx.body;
    let problems: string[];
    if (op) {
      problems = op.validateResponse(ctx.status, type, Buffer.isBuffer(body) ? undefined : body);
    } else if (type !== 'application/problem+json') {
      problems = [`a response outside any operation must be application/problem+json, got ${type || '(none)'}`];
    } else {
      problems = spec.validateProblem(body);
    }
    if (problems.length === 0) return;
    logger.error({ operationId: op?.operationId, status: ctx.status, problems, requestId: ctx.state.requestId }, 'response does not match the API spec');
    sendProblem(ctx, new AppError('RESPONSE_INVALID', `the ${ctx.status} response of ${op?.operationId ?? ctx.path} does not match the API spec`), logger);
  };
}

/**
 * TCP requests need a valid bearer token unless their operation is public (security: [] in the spec);
 * local-only operations (x-nodevirt-local-only) are refused on TCP even with a token.
 */
function authenticate(tokens: TokenService, router: Router, publicOps: Set<string>, localOnlyOps: Set<string>): Middleware {
  return async (ctx, next) => {
    if (ctx.state.transport === 'unix') {
      ctx.state.principal = 'unix';
      return next();
    }
    const match = router.match(ctx.path, ctx.method);
    if (match.pathAndMethod.some((layer) => layer.name !== undefined && publicOps.has(layer.name))) return next();

    const header = ctx.get('authorization');
    const bearer = /^Bearer +(\S+) *$/i.exec(header)?.[1];
    if (!bearer) {
      throw new AppError('UNAUTHENTICATED', header ? 'the Authorization header is not a Bearer token' : 'this listener needs Authorization: Bearer <token>', {
        extra: { tokenPresented: header !== '' },
      });
    }
    const token = await tokens.verify(bearer);
    if (!token) throw new AppError('UNAUTHENTICATED', 'the bearer token is not valid', { extra: { tokenPresented: true } });
    ctx.state.principal = `token:${token.name}`;
    if (match.pathAndMethod.some((layer) => layer.name !== undefined && localOnlyOps.has(layer.name))) {
      throw new AppError('LOCAL_ONLY', `${ctx.method} ${ctx.path} is only allowed over the daemon's unix socket`);
    }
    return next();
  };
}

/** Reached only when no route matched path and method. */
function noRoute(router: Router): Middleware {
  return async (ctx) => {
    const allowed = [...new Set(router.match(ctx.path, ctx.method).path.flatMap((layer) => layer.methods))];
    if (allowed.length > 0) {
      throw new AppError('METHOD_NOT_ALLOWED', `${ctx.method} is not allowed on ${ctx.path}`, { extra: { allow: allowed } });
    }
    throw new AppError('ROUTE_NOT_FOUND', `no route ${ctx.path}`);
  };
}

/** Parses and validates a request for one operation, then runs its handler and writes the reply. */
function operationMiddleware(op: ApiOperation, handler: AnyHandler): Middleware {
  return async (ctx: Context) => {
    ctx.state.operation = op;
    const req = ctx.req;
    let body: { value: unknown } | undefined;
    if (hasBody(req)) {
      assertDeclaredLength(req);
      if (op.body) {
        assertJsonContentType(req);
        body = { value: await readJsonBody(req) };
      } else {
        // Unread on purpose: validateRequest reports it; the bytes are thrown away.
        discardBody(req);
        body = { value: undefined };
      }
    }
    const input = {
      path: { ...(ctx.params as Record<string, string>) },
      query: { ...ctx.query },
      body,
    };
    const issues = op.validateRequest(input);
    if (issues.length > 0) {
      throw new AppError('VALIDATION_FAILED', `the request does not match ${op.operationId} in the API spec`, { issues });
    }

    const reply = await handler({ path: input.path, query: input.query, body: body?.value }, ctx);
    ctx.status = reply.status;
    if (reply.body !== undefined) {
      ctx.body = reply.body;
      if (reply.type) ctx.type = reply.type;
    }
    for (const [name, value] of Object.entries(reply.headers ?? {})) ctx.set(name, value);
  };
}

// The one place errors become HTTP: AppError codes -> status + RFC 9457 application/problem+json;
// anything else is a bug -> 500 INTERNAL, logged with its stack, nothing internal in the response.
import type { Context, Middleware } from 'koa';
import { AppError, ERROR_CODES, type ErrorCode } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { components } from './generated/openapi.js';

export type Problem = components['schemas']['Problem'];

const STATUS: Partial<Record<ErrorCode, number>> = {
  MALFORMED_JSON: 400,
  VALIDATION_FAILED: 400,
  UNAUTHENTICATED: 401,
  LOCAL_ONLY: 403,
  NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  DOMAIN_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  OPERATION_CANCELLED: 409,
  VM_NOT_PAUSED: 409,
  VM_NOT_RUNNING: 409,
  PRECONDITION_FAILED: 412,
  UPGRADE_REQUIRED: 426,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INTERNAL: 500,
  HOST_ERROR: 500,
  CONFIG_INVALID: 500,
  RESPONSE_INVALID: 500,
  IMAGE_CHECKSUM_MISMATCH: 422,
  LIBVIRT_ERROR: 502,
  IMAGE_DOWNLOAD_FAILED: 502,
  LIBVIRT_UNAVAILABLE: 503,
  GUEST_AGENT_UNAVAILABLE: 503,
};

/**
 * Codes added to lib/errors.ts later get a status by naming convention, so a new code cannot break the
 * build; codes that fit no convention are 500 (and the error-mapping test names them).
 */
export function httpStatusFor(code: ErrorCode): number {
  const explicit = STATUS[code];
  if (explicit !== undefined) return explicit;
  if (code.endsWith('_NOT_FOUND')) return 404;
  if (/_(IN_USE|EXISTS|CONFLICT|BUSY)$/.test(code)) return 409;
  if (code.endsWith('_INVALID')) return 400;
  return 500;
}

/** Whether a code has a deliberate status (explicit or by convention) rather than the 500 fallback. */
export function hasHttpStatus(code: ErrorCode): boolean {
  return STATUS[code] !== undefined || httpStatusFor(code) !== 500;
}

const kebab = (code: string) => code.toLowerCase().replace(/_/g, '-');

/** Request paths go into `instance` only when they are plainly a URI reference. */
const SAFE_PATH = /^\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/;

export interface ProblemResponse {
  status: number;
  body: Problem;
  headers: Record<string, string>;
}

/** Builds the problem for anything thrown; logs unknown throwables (and 5xx AppErrors) with their stack. */
export function toProblem(err: unknown, ctx: { path: string; requestId: string | undefined }, logger: Logger): ProblemResponse {
  const app = err instanceof AppError ? err : undefined;
  const code: ErrorCode = app?.code ?? 'INTERNAL';
  const status = httpStatusFor(code);
  if (!app) {
    logger.error({ err, requestId: ctx.requestId, path: ctx.path }, 'unhandled error');
  } else if (status >= 500) {
    logger.error({ err, code, requestId: ctx.requestId, path: ctx.path }, 'request failed');
  }

  const body: Problem = {
    type: `urn:nodevirt:problem:${kebab(code)}`,
    title: ERROR_CODES[code],
    status,
    // Unknown throwables carry internals (paths, stack-ish messages): never echo them.
    detail: app ? app.message : 'the daemon hit an unexpected error; see its log for this request id',
    code,
  };
  if (SAFE_PATH.test(ctx.path)) body.instance = ctx.path;
  if (ctx.requestId !== undefined) body.requestId = ctx.requestId;
  if (app?.issues?.length) body.errors = app.issues.map((i) => ({ pointer: i.pointer, reason: i.reason }));

  const headers: Record<string, string> = {};
  if (code === 'METHOD_NOT_ALLOWED') {
    const allow = app?.extra?.allow;
    if (Array.isArray(allow)) headers.Allow = allow.join(', ');
  }
  // RFC 9110 15.5.22: a 426 names the protocol to switch to.
  if (code === 'UPGRADE_REQUIRED') headers.Upgrade = 'websocket';
  if (code === 'UNAUTHENTICATED') {
    // RFC 6750: a presented but unusable token is invalid_token; a missing one gets the bare challenge.
    headers['WWW-Authenticate'] = app?.extra?.tokenPresented ? 'Bearer realm="nodevirt", error="invalid_token"' : 'Bearer realm="nodevirt"';
  }
  return { status, body, headers };
}

/** Writes a problem onto the koa context. */
export function sendProblem(ctx: Context, err: unknown, logger: Logger): void {
  const requestId = typeof ctx.state.requestId === 'string' ? ctx.state.requestId : undefined;
  const problem = toProblem(err, { path: ctx.path, requestId }, logger);
  ctx.status = problem.status;
  ctx.body = problem.body;
  ctx.type = 'application/problem+json';
  for (const [name, value] of Object.entries(problem.headers)) ctx.set(name, value);
}

/** Catches everything thrown below it and answers with a problem. */
export function errorMiddleware(logger: Logger): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      // Headers from a half-finished handler (Location, caching) would describe a response that never happened.
      for (const name of Object.keys(ctx.response.headers)) {
        if (name !== 'x-request-id' && name !== 'connection') ctx.remove(name);
      }
      sendProblem(ctx, err, logger);
    }
  };
}

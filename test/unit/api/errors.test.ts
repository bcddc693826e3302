// The error -> HTTP mapping in isolation: every code has a deliberate status, problems have the RFC 9457
// shape, unknown throwables leak nothing.
import { describe, expect, it } from 'vitest';
import { hasHttpStatus, httpStatusFor, toProblem } from '../../../daemon/api/errors.js';
import { AppError, ERROR_CODES, type ErrorCode } from '../../../daemon/lib/errors.js';
import { silentLogger } from '../../../daemon/lib/logger.js';
import { spec } from './helpers.js';

const ctx = { path: '/v1/x', requestId: 'r-1' };

describe('error mapping', () => {
  it('maps every code in lib/errors.ts to a deliberate status', () => {
    const unmapped = (Object.keys(ERROR_CODES) as ErrorCode[]).filter((c) => !hasHttpStatus(c) && !['INTERNAL', 'HOST_ERROR', 'CONFIG_INVALID', 'RESPONSE_INVALID'].includes(c));
    expect(unmapped, 'add these codes to STATUS in daemon/api/errors.ts').toEqual([]);
    expect(httpStatusFor('VALIDATION_FAILED')).toBe(400);
    expect(httpStatusFor('BODY_TOO_LARGE')).toBe(413);
    expect(httpStatusFor('UNSUPPORTED_MEDIA_TYPE')).toBe(415);
    expect(httpStatusFor('LIBVIRT_UNAVAILABLE')).toBe(503);
  });

  it('builds a Problem that matches the spec, with issues and request id', async () => {
    const s = await spec();
    const p = toProblem(new AppError('VALIDATION_FAILED', 'bad', { issues: [{ pointer: '/body/a', reason: 'must be string' }] }), ctx, silentLogger());
    expect(p.status).toBe(400);
    expect(p.body).toEqual({
      type: 'urn:nodevirt:problem:validation-failed',
      title: ERROR_CODES.VALIDATION_FAILED,
      status: 400,
      detail: 'bad',
      instance: '/v1/x',
      code: 'VALIDATION_FAILED',
      requestId: 'r-1',
      errors: [{ pointer: '/body/a', reason: 'must be string' }],
    });
    expect(s.validateProblem(p.body)).toEqual([]);
  });

  it('hides the message of an unknown throwable', () => {
    const p = toProblem(new TypeError('cannot read x of undefined at /srv/secret.ts:12'), ctx, silentLogger());
    expect(p.status).toBe(500);
    expect(p.body.code).toBe('INTERNAL');
    expect(JSON.stringify(p.body)).not.toContain('secret');
    expect(toProblem('a string', ctx, silentLogger()).body.code).toBe('INTERNAL');
  });

  it('adds Allow for 405 and a Bearer challenge for 401', () => {
    expect(toProblem(new AppError('METHOD_NOT_ALLOWED', 'no', { extra: { allow: ['GET', 'HEAD'] } }), ctx, silentLogger()).headers).toEqual({ Allow: 'GET, HEAD' });
    expect(toProblem(new AppError('UNAUTHENTICATED'), ctx, silentLogger()).headers['WWW-Authenticate']).toBe('Bearer realm="nodevirt"');
    expect(toProblem(new AppError('UNAUTHENTICATED', 'x', { extra: { tokenPresented: true } }), ctx, silentLogger()).headers['WWW-Authenticate']).toContain('invalid_token');
  });

  it('omits instance when the path is not a clean URI reference', () => {
    expect(toProblem(new AppError('NOT_FOUND'), { path: '/a/%E0%A4%A', requestId: undefined }, silentLogger()).body.instance).toBeUndefined();
    expect(toProblem(new AppError('NOT_FOUND'), { path: '/a/%41', requestId: undefined }, silentLogger()).body.instance).toBe('/a/%41');
  });
});

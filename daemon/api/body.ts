// Reads a JSON request body with a hard byte limit: refuses by Content-Length before reading, stops
// buffering the moment the limit is crossed, and never holds more than `limit` bytes of a request.
import type { IncomingMessage } from 'node:http';
import { AppError } from '../lib/errors.js';
import { isJsonType } from './openapi.js';

export const BODY_LIMIT = 64 * 1024;

/**
 * After refusing a body we still discard up to this many further bytes so the connection stays usable
 * (closing a socket with unread data makes the kernel send RST, which can destroy the response before
 * the client reads it). A client that keeps sending past this gets its connection closed.
 */
export const DISCARD_LIMIT = 1024 * 1024;

export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return Number(length) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

function declaredLength(req: IncomingMessage): number | undefined {
  const length = req.headers['content-length'];
  return length === undefined ? undefined : Number(length);
}

/** Drops the rest of a refused body without buffering it; cuts the connection if it goes on too long. */
export function discardBody(req: IncomingMessage, budget = DISCARD_LIMIT): void {
  if (req.complete || req.destroyed) return;
  let seen = 0;
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > budget) req.socket.destroy();
  });
  req.on('error', () => {});
  req.resume();
}

/** Checks the Content-Type is JSON in UTF-8 (the only encoding RFC 8259 allows on the wire). */
export function assertJsonContentType(req: IncomingMessage): void {
  const header = req.headers['content-type'];
  const [mime = '', ...params] = (header ?? '').split(';').map((s) => s.trim());
  const type = mime.toLowerCase();
  const charset = params.map((p) => p.split('=')).find(([k]) => k?.trim().toLowerCase() === 'charset')?.[1]?.trim().replace(/^"|"$/g, '').toLowerCase();
  if (!isJsonType(type) || (charset !== undefined && charset !== 'utf-8')) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `request bodies must be application/json (UTF-8), got ${header === undefined ? 'no Content-Type' : JSON.stringify(header.slice(0, 100))}`);
  }
}

/** Refuses a body whose Content-Length alone is over the limit, before reading any of it. */
export function assertDeclaredLength(req: IncomingMessage, limit = BODY_LIMIT): void {
  const declared = declaredLength(req);
  if (declared !== undefined && declared > limit) throw tooLarge(limit);
}

/**
 * Called once the response is decided: whatever is left of an unread body is discarded (bounded), or, when
 * the client announced more than we are willing to even discard, the connection is closed after the response.
 */
export function settleRequestBody(req: IncomingMessage, setHeader: (name: string, value: string) => void): void {
  if (req.complete || req.readableEnded || req.destroyed || !hasBody(req)) return;
  const declared = declaredLength(req);
  if (declared !== undefined && declared > BODY_LIMIT + DISCARD_LIMIT) {
    setHeader('Connection', 'close');
    return;
  }
  discardBody(req);
}

/** Reads and parses the body; stops buffering the moment it passes the limit. */
export async function readJsonBody(req: IncomingMessage, limit = BODY_LIMIT): Promise<unknown> {
  assertDeclaredLength(req, limit);
  const raw = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // settleRequestBody discards the rest once the 413 is on its way.
        cleanup();
        req.pause();
        chunks.length = 0;
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new AppError('MALFORMED_JSON', 'the request body could not be read', { cause: err }));
    };
    const onAborted = () => onError(new Error('client aborted the request'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(raw);
  } catch {
    throw new AppError('MALFORMED_JSON', 'the request body is not valid UTF-8');
  }
  if (text.trim() === '') throw new AppError('MALFORMED_JSON', 'the request body is empty');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new AppError('MALFORMED_JSON', `the request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function tooLarge(limit: number): AppError {
  return new AppError('BODY_TOO_LARGE', `request bodies are limited to ${limit} bytes`, { extra: { limit } });
}

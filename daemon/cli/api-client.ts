// A minimal client for the daemon's own API over its unix socket (or TCP with a token): the CLI's only way
// to touch state, since the daemon alone owns the store.
import http from 'node:http';

export interface ApiTarget {
  socketPath?: string;
  url?: string;
  token?: string;
}

export interface ApiResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

export function apiRequest(target: ApiTarget, method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: http.OutgoingHttpHeaders = { accept: 'application/json, application/problem+json' };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = payload.length;
    }
    if (target.token) headers.authorization = `Bearer ${target.token}`;
    const base = target.url ? new URL(path, target.url) : undefined;
    const req = http.request(
      base
        ? { method, hostname: base.hostname, port: base.port, path: base.pathname + base.search, headers, timeout: timeoutMs }
        : { method, socketPath: target.socketPath, path, headers, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          if (/json/.test(res.headers['content-type'] ?? '') && text) {
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = text;
            }
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from the daemon within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

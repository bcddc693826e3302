// Test pieces for image imports: a loopback HTTP server whose routes serve bytes (whole, truncated, stalled,
// failing), a qemu-img-free inspect that tells qcow2 from raw by the magic, and a minimal operations runner.
import { randomUUID } from 'node:crypto';
import { open } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AppError } from '../../../daemon/lib/errors.js';
import type { OperationContext, OperationView, Operations } from '../../../daemon/ops/types.js';
import type { ImageFacts } from '../../../daemon/storage/images.js';

export type Route = (req: IncomingMessage, res: ServerResponse) => void;

export interface ByteServer {
  url(path: string): string;
  route(path: string, r: Route): void;
  requests: string[];
  close(): Promise<void>;
}

export async function startByteServer(): Promise<ByteServer> {
  const routes = new Map<string, Route>();
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const r = routes.get(req.url ?? '');
    if (r) r(req, res);
    else {
      res.statusCode = 404;
      res.end('not found');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (p) => `http://127.0.0.1:${port}${p}`,
    route: (p, r) => void routes.set(p, r),
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Serves `body` with its Content-Length, in chunks so progress has steps to report. */
export function serve(body: Buffer): Route {
  return (_req, res) => {
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
    const step = 64 * 1024;
    let off = 0;
    const push = () => {
      while (off < body.length) {
        const ok = res.write(body.subarray(off, off + step));
        off += step;
        if (!ok) return void res.once('drain', push);
      }
      res.end();
    };
    push();
  };
}

/** Announces `announce` bytes, sends `sent` of them, then either hangs (stall) or drops the connection. */
export function partial(announce: number, sent: Buffer, then: 'stall' | 'drop'): Route {
  return (_req, res) => {
    res.writeHead(200, { 'content-length': announce });
    res.write(sent);
    if (then === 'drop') setTimeout(() => res.socket?.destroy(), 20);
  };
}

/** Stands in for qemu-img info in unit tests: qcow2 by its magic, anything else raw, size = file length. */
export async function magicInspect(path: string): Promise<ImageFacts> {
  const fh = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new AppError('IMAGE_INVALID', `${path}: ${e.code}`);
  });
  try {
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    const st = await fh.stat();
    const qcow2 = head.equals(Buffer.from([0x51, 0x46, 0x49, 0xfb]));
    return { path, format: qcow2 ? 'qcow2' : 'raw', virtualSize: st.size, actualSize: st.blocks * 512, backingChain: [] };
  } finally {
    await fh.close();
  }
}

export interface TestOps extends Pick<Operations, 'run'> {
  /** Resolves with the view once the work returned. */
  done(id: string): Promise<OperationView>;
  cancel(id: string): void;
  progress(id: string): number[];
}

/** The Operations contract's run/cancel, kept to what the registry needs; errors keep their code. */
export function testOperations(): TestOps {
  const ops = new Map<string, { view: OperationView; ac: AbortController; done: Promise<OperationView>; progress: number[] }>();
  return {
    run<T>(kind: string, target: string, work: (ctx: OperationContext) => Promise<T>): OperationView {
      const id = randomUUID();
      const at = new Date().toISOString();
      const view: OperationView = { id, kind, target, status: 'running', progress: { percent: 0 }, createdAt: at, updatedAt: at };
      const ac = new AbortController();
      const progress: number[] = [];
      const ctx: OperationContext = {
        signal: ac.signal,
        progress(percent, message) {
          progress.push(percent);
          view.progress = { percent: Math.max(view.progress.percent, Math.min(100, percent)), ...(message === undefined ? {} : { message }) };
        },
      };
      const done = Promise.resolve()
        .then(() => work(ctx))
        .then(
          (result) => Object.assign(view, { status: 'succeeded' as const, result }),
          (e: unknown) =>
            Object.assign(view, {
              status: ac.signal.aborted ? ('cancelled' as const) : ('failed' as const),
              error: { code: e instanceof AppError ? e.code : 'INTERNAL', message: e instanceof Error ? e.message : String(e), status: 0 },
            }),
        );
      ops.set(id, { view, ac, done, progress });
      return { ...view };
    },
    done: (id) => ops.get(id)!.done,
    cancel: (id) => ops.get(id)!.ac.abort(),
    progress: (id) => ops.get(id)!.progress,
  };
}

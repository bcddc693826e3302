// Shared fixtures for API tests: a real app over a real (temp-dir) store, served on an ephemeral port,
// with response validation on and the log lines captured.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createApp, requestListener, type AppDeps, type Transport } from '../../../daemon/api/app.js';
import { loadApiSpec, type ApiSpec } from '../../../daemon/api/openapi.js';
import type { Node } from '../../../daemon/api/types.js';
import { createTokenService, type StoredToken, type TokenService } from '../../../daemon/auth/token-service.js';
import { createLogger, silentLogger } from '../../../daemon/lib/logger.js';
import { createLeaseRepo, type StoredLease } from '../../../daemon/net/dhcp/lease-repo.js';
import { createFakeLinks } from '../../../daemon/host/links-fake.js';
import { createFakeNftables } from '../../../daemon/host/nftables-fake.js';
import { createFakeNetHost } from '../../../daemon/host/net-host-fake.js';
import { createNetworkService } from '../../../daemon/net/network-service.js';
import { createStore, type KeySpace, type Store } from '../../../daemon/store/store.js';
import { createTestVmService } from './vm-harness.js';
import { createOperations } from '../../../daemon/ops/operations.js';
import { createEventLog } from '../../../daemon/ops/event-log.js';
import { createImageRegistry } from '../../../daemon/storage/image-registry.js';
import { createImageStore } from '../../../daemon/storage/images.js';
import { createPathGuard } from '../../../daemon/storage/paths.js';
import { createQemuImg } from '../../../daemon/storage/qemu-img.js';

let specPromise: Promise<ApiSpec> | undefined;
export function spec(): Promise<ApiSpec> {
  specPromise ??= loadApiSpec();
  return specPromise;
}

export function fakeNode(): Node {
  return {
    hostname: 'testhost',
    daemon: { version: '0.1.0-test', startedAt: '2024-01-02T03:04:05.000Z', uptimeSeconds: 12.5 },
    kernel: { release: '6.1.0-18-amd64', version: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1', arch: 'x86_64' },
    cpu: { count: 2, model: 'Test CPU', virtualizationFlag: 'vmx' },
    memory: { totalBytes: 8 * 1024 ** 3, availableBytes: 4 * 1024 ** 3 },
    libvirt: { connected: true, version: '9.0.0', uri: 'qemu:///system', error: null },
    qemu: { version: '7.2.0', emulator: '/usr/bin/qemu-system-x86_64' },
    virtType: 'qemu',
    virtTypeReason: '/dev/kvm cannot run guests here',
    virtTypeSource: 'detected',
    checks: [{ name: 'kvm-device', title: 'KVM device', status: 'warn', message: '/dev/kvm present but unusable; using TCG' }],
  };
}

export interface Harness {
  url: string;
  port: number;
  store: Store;
  tokenStore: KeySpace<StoredToken>;
  tokens: TokenService;
  logs: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

export async function startApp(opts: { transport?: Transport; node?: { info(): Promise<Node> } } = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'nodevirt-api-'));
  const store = createStore({ stateDir: dir });
  await store.open();
  const tokenStore = store.sublevel<StoredToken>('tokens');
  const tokens = createTokenService({ tokens: tokenStore });
  const logs: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const logger = createLogger({ level: 'info', destination });
  const ops = createOperations();
  const vmRoot = join(dir, 'vm-root');
  const vmTest = createTestVmService(store, vmRoot);
  const guard = createPathGuard({ roots: [vmRoot] });
  const app = createApp({
    logger,
    spec: await spec(),
    node: opts.node ?? { info: async () => fakeNode() },
    tokens,
    leases: createLeaseRepo({ leases: store.sublevel<StoredLease>('dhcp-leases') }),
    networks: (() => {
      const links = createFakeLinks();
      return createNetworkService({ store, adapters: { links, nft: createFakeNftables(), host: createFakeNetHost(links) } });
    })(),
    vms: vmTest.vms,
    ops,
    events: createEventLog(),
    images: createImageRegistry({ store, images: createImageStore({ qemuImg: createQemuImg(), guard }), guard, dir: join(vmRoot, 'images'), ops, usedBy: async () => [] }),
    version: '0.1.0-test',
    validateResponses: true,
  });
  const server = createServer(requestListener(app, opts.transport ?? 'unix'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    store,
    tokenStore,
    tokens,
    logs,
    async close() {
      await closeServer(server);
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The app over `store` with real tokens and leases, plus `extra` (a service under test, or a replacement),
 * served over the trusted transport on an ephemeral loopback port, responses validated against the spec.
 */
export async function serveApp(store: Pick<Store, 'sublevel'>, extra: Partial<AppDeps> = {}): Promise<{ server: Server; port: number }> {
  const app = createApp({
    logger: silentLogger(),
    spec: await spec(),
    node: { info: async () => fakeNode() },
    tokens: createTokenService({ tokens: store.sublevel<StoredToken>('tokens') }),
    leases: createLeaseRepo({ leases: store.sublevel<StoredLease>('dhcp-leases') }),
    version: 't',
    validateResponses: true,
    ...extra,
  });
  const server = createServer(requestListener(app, 'unix'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export interface Res {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: unknown;
}

/** A raw request: the path is sent byte-for-byte (no normalisation), body as given. */
export function send(
  target: { port: number } | { socketPath: string },
  req: { method?: string; path: string; headers?: Record<string, string | number>; body?: string | Buffer },
): Promise<Res> {
  const headers: Record<string, string | number> = { ...req.headers };
  const names = Object.keys(headers).map((k) => k.toLowerCase());
  // Node frames GET/DELETE bodies only when told to; without a length the body would read as a second request.
  if (req.body !== undefined && !names.includes('content-length') && !names.includes('transfer-encoding')) {
    headers['content-length'] = Buffer.byteLength(req.body);
  }
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      { ...target, host: '127.0.0.1', method: req.method ?? 'GET', path: req.path, headers, agent: false },
      (res) => {
        // A stream never ends by itself: its status and headers are the answer.
        if (String(res.headers['content-type']).startsWith('text/event-stream')) {
          res.destroy();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text: '', json: undefined });
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    r.on('error', reject);
    r.end(req.body);
  });
}

export function jsonBody(value: unknown): { headers: Record<string, string>; body: string } {
  return { headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) };
}

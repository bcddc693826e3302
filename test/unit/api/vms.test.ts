// /v1/vms through the real app (response validation on) over the real VM service and its fakes: create,
// no-op and update with ETag/generation, If-Match 412, dry run with the domain XML, start/stop/restart as
// operations (202 + Location, ?wait), delete, pause/resume/reset and their 409s, and 500 while not wired.
import { mkdtemp, rm } from 'node:fs/promises';
import { type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VmApi } from '../../../daemon/api/routes/vms.js';
import { createOperations } from '../../../daemon/ops/operations.js';
import { createStore, type Store } from '../../../daemon/store/store.js';
import { closeServer, serveApp, jsonBody, send, spec } from './helpers.js';
import { createTestVmService, type TestVms } from './vm-harness.js';

let dir: string;
let store: Store;
let server: Server;
let port: number;
let t: TestVms;

async function serve(vms: VmApi | undefined): Promise<void> {
  ({ server, port } = await serveApp(store, vms ? { vms, ops: createOperations() } : {}));
}
/** start/stop/restart run as operations: ?wait long enough gives 200 with the finished operation. */
const act = async (name: string, action: string, query = '') => {
  const r = await send({ port }, { method: 'POST', path: `/v1/vms/${name}/${action}?wait=30${query}` });
  return { ...r, vm: (r.json as { result?: unknown }).result as { status: { phase: string } } | undefined };
};

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodevirt-vms-api-'));
  store = createStore({ stateDir: dir });
  await store.open();
  t = createTestVmService(store);
  await t.networks.put('lan', { type: 'bridge', ipam: { subnet: '192.168.50.0/24' } });
});

afterEach(async () => {
  await closeServer(server);
  await store.close();
  await rm(dir, { recursive: true, force: true });
  await rm(t.root, { recursive: true, force: true });
});

const put = (name: string, body: unknown, headers: Record<string, string> = {}, query = '') => {
  const j = jsonBody(body);
  return send({ port }, { method: 'PUT', path: `/v1/vms/${name}${query}`, headers: { ...j.headers, ...headers }, body: j.body });
};
const web = () => ({ name: 'web1', memory: 256, interfaces: [{ network: 'lan' }], kernelBoot: { kernel: 'vmlinuz', initrd: 'initramfs.gz', cmdline: 'console=ttyS0' } });

describe('/v1/vms', () => {
  it('PUT creates (201, ETag, Location) with MAC/IP in status only, repeats as a no-op, updates with If-Match', async () => {
    await serve(t.vms);
    const created = await put('web1', web());
    expect(created.status).toBe(201);
    expect(created.headers.etag).toBe('"1"');
    expect(created.headers.location).toBe('/v1/vms/web1');
    const vm = (created.json as { vm: { spec: unknown; status: { nics: Array<{ mac: string; ip: string }> } } }).vm;
    expect(vm.spec).toEqual(web());
    expect(vm.status.nics[0]).toMatchObject({ ip: '192.168.50.2', dhcpAcked: false, tap: null });

    const again = await put('web1', web());
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ changed: false, diff: [], vm: { generation: 1 } });

    expect((await put('web1', { ...web(), memory: 300 }, { 'if-match': '"9"' })).status).toBe(412);
    const upd = await put('web1', { ...web(), memory: 300 }, { 'if-match': '"1"' });
    expect(upd.status).toBe(200);
    expect(upd.headers.etag).toBe('"2"');
    expect(upd.json).toMatchObject({ changed: true, diff: ['~ /memory: 256 -> 300'] });

    const got = await send({ port }, { path: '/v1/vms/web1' });
    expect(got.status).toBe(200);
    expect(got.headers.etag).toBe('"2"');
    expect((await send({ port }, { path: '/v1/vms' })).json).toMatchObject({ items: [{ name: 'web1' }] });
  });

  it('dry run returns the diff and the domain XML and stores nothing', async () => {
    await serve(t.vms);
    const r = await put('web1', web(), {}, '?dryRun=true');
    expect(r.status).toBe(200);
    expect(r.headers.etag).toBeUndefined();
    expect((r.json as { domainXml: string }).domainXml).toContain('<name>nodevirt-web1</name>');
    expect((await send({ port }, { path: '/v1/vms/web1' })).status).toBe(404);
  });

  it('start, stop and delete drive the domain; problems carry codes and pointers', async () => {
    await serve(t.vms);
    await put('web1', web());
    // Without ?wait: 202 at once with the running operation and where to follow it.
    const accepted = await send({ port }, { method: 'POST', path: '/v1/vms/web1/start' });
    expect(accepted.status).toBe(202);
    const op = accepted.json as { id: string; kind: string; target: string };
    expect(op).toMatchObject({ kind: 'vm.start', target: 'vms/web1' });
    expect(accepted.headers.location).toBe(`/v1/operations/${op.id}`);
    const done = await send({ port }, { path: `/v1/operations/${op.id}?wait=30` });
    expect(done.json).toMatchObject({ status: 'succeeded', result: { status: { phase: 'Running', nics: [{ tap: expect.stringMatching(/^nv/) }] } } });
    const stopped = await act('web1', 'stop', '&force=true');
    expect(stopped.status).toBe(200);
    expect(stopped.json).toMatchObject({ kind: 'vm.stop', status: 'succeeded' });
    expect(stopped.vm).toMatchObject({ status: { phase: 'Stopped' } });
    // An unknown VM is a plain 404 before any operation exists.
    expect((await send({ port }, { method: 'POST', path: '/v1/vms/nope/start' })).status).toBe(404);
    expect((await send({ port }, { method: 'DELETE', path: '/v1/vms/web1' })).status).toBe(204);
    expect(await t.libvirt.lookupDomain('nodevirt-web1')).toBeUndefined();
    const missing = await send({ port }, { path: '/v1/vms/web1' });
    expect(missing.status).toBe(404);
    expect(missing.json).toMatchObject({ code: 'VM_NOT_FOUND' });

    const big = await put('web1', { ...web(), memory: 1 << 20 });
    expect(big.status).toBe(400);
    expect(big.json).toMatchObject({ code: 'VM_SPEC_INVALID', errors: [{ pointer: '/memory' }] });
    const escape = await put('web1', { ...web(), kernelBoot: { kernel: '../../etc/passwd' } });
    expect(escape.status).toBe(400);
  });

  it('pause, resume, reset and restart answer 200 with the VM, and 409 problems with stable codes when they cannot apply', async () => {
    await serve(t.vms);
    await put('web1', web());
    const post = (action: string) => send({ port }, { method: 'POST', path: `/v1/vms/web1/${action}` });
    const offPause = await post('pause');
    expect(offPause.status).toBe(409);
    expect(offPause.headers['content-type']).toContain('application/problem+json');
    expect(offPause.json).toMatchObject({ code: 'VM_NOT_RUNNING' });
    // A failing operation with ?wait answers the very problem the synchronous call would have.
    const offRestart = await act('web1', 'restart');
    expect(offRestart.status).toBe(409);
    expect(offRestart.json).toMatchObject({ code: 'VM_NOT_RUNNING' });
    expect((await act('web1', 'start')).vm).toMatchObject({ status: { phase: 'Running' } });
    expect((await post('pause')).json).toMatchObject({ status: { phase: 'Paused' } });
    expect((await post('resume')).json).toMatchObject({ status: { phase: 'Running' } });
    const notPaused = await post('resume');
    expect(notPaused.status).toBe(409);
    expect(notPaused.json).toMatchObject({ code: 'VM_NOT_PAUSED' });
    expect((await post('reset')).json).toMatchObject({ status: { phase: 'Running' } });
    const restarted = await act('web1', 'restart');
    expect(restarted.status).toBe(200);
    expect(restarted.vm).toMatchObject({ status: { phase: 'Running', running: true, guestAgent: null } });
    expect((await send({ port }, { method: 'POST', path: '/v1/vms/nope/reset' })).status).toBe(404);

    await put('web1', { ...web(), runStrategy: 'Halted' });
    await act('web1', 'stop');
    const halted = await act('web1', 'start');
    expect(halted.status).toBe(409);
    expect(halted.json).toMatchObject({ code: 'VM_CONFLICT' });
  });

  it('start/stop/restart answer 500 INTERNAL while operations are not wired', async () => {
    ({ server, port } = await serveApp(store, { vms: t.vms }));
    await put('web1', web());
    const r = await send({ port }, { method: 'POST', path: '/v1/vms/web1/start' });
    expect(r.status).toBe(500);
    expect(r.json).toMatchObject({ code: 'INTERNAL' });
  });

  it('answers 500 INTERNAL while the VM service is not wired', async () => {
    await serve(undefined);
    const r = await send({ port }, { path: '/v1/vms' });
    expect(r.status).toBe(500);
    expect(r.json).toMatchObject({ code: 'INTERNAL' });
  });
});

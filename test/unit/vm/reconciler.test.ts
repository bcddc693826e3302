// The VM reconciler: decide() case by case, the backoff schedule, and the reconciler over the real VM service
// with the stateful libvirt fake (guest power-offs, QEMU crashes, virsh behind the daemon's back, vanished
// domains, a libvirt outage, a daemon restart, a crash loop).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DomainInfo } from '../../../daemon/libvirt/types.js';
import type { EventInput } from '../../../daemon/ops/types.js';
import { createStore, type Store } from '../../../daemon/store/store.js';
import { backoffDelay, createVmReconciler, decide, DEFAULT_BACKOFF, type VmReconciler } from '../../../daemon/vm/reconciler.js';
import type { VmSpec } from '../../../daemon/vm/vm-model.js';
import type { VmObservation } from '../../../daemon/vm/vm-service.js';
import { createTestVmService, type TestVms } from '../api/vm-harness.js';

const dom = (over: Partial<DomainInfo> = {}): DomainInfo => ({ name: 'nodevirt-web', uuid: 'u', state: 'running', reason: 1, persistent: true, active: true, ...over });
const off = (reason: number) => dom({ state: 'shutoff', reason, active: false });
const obs = (over: Partial<VmObservation> = {}): VmObservation => ({
  name: 'web',
  runStrategy: 'Always',
  running: undefined,
  domain: undefined,
  started: false,
  plumbed: false,
  lastExit: undefined,
  ...over,
});
const fresh = { failures: 0, notBefore: 0 };

describe('decide', () => {
  it('never touches a running domain the record knows, and takes over one started behind its back', () => {
    for (const runStrategy of ['Always', 'RerunOnFailure', 'Manual'] as const) {
      expect(decide(obs({ runStrategy, domain: dom(), started: true, plumbed: true }), fresh, 0)).toEqual({ kind: 'none' });
      expect(decide(obs({ runStrategy, domain: dom(), started: false }), fresh, 0)).toEqual({ kind: 'adopt', reason: 'StartedOutsideDaemon' });
    }
    expect(decide(obs({ runStrategy: 'Always', domain: dom({ state: 'paused' }), started: true }), fresh, 0)).toEqual({ kind: 'none' });
  });

  it('stops a Halted VM whose domain runs anyway', () => {
    expect(decide(obs({ runStrategy: 'Halted', domain: dom(), started: true }), fresh, 0)).toEqual({ kind: 'stop', reason: 'RunStrategyHalted' });
  });

  it('settles a domain that went down on its own with the cause libvirt gives; RerunOnFailure drops the intent on a clean exit', () => {
    const down = { started: true, plumbed: true };
    expect(decide(obs({ ...down, domain: off(3) }), fresh, 0)).toEqual({ kind: 'settle', cause: 'crashed' });
    expect(decide(obs({ ...down, domain: off(6) }), fresh, 0)).toEqual({ kind: 'settle', cause: 'crashed' });
    expect(decide(obs({ ...down, domain: off(1) }), fresh, 0)).toEqual({ kind: 'settle', cause: 'shutdown' });
    expect(decide(obs({ ...down, domain: off(2) }), fresh, 0)).toEqual({ kind: 'settle', cause: 'destroyed' });
    expect(decide(obs({ ...down, domain: undefined }), fresh, 0)).toEqual({ kind: 'settle', cause: 'vanished' });
    expect(decide(obs({ ...down, runStrategy: 'RerunOnFailure', domain: off(1) }), fresh, 0)).toEqual({ kind: 'settle', cause: 'shutdown', running: false });
    expect(decide(obs({ ...down, runStrategy: 'RerunOnFailure', domain: off(2) }), fresh, 0)).toEqual({ kind: 'settle', cause: 'destroyed', running: false });
    expect(decide(obs({ ...down, runStrategy: 'RerunOnFailure', domain: off(3) }), fresh, 0)).toEqual({ kind: 'settle', cause: 'crashed' });
    // NICs still plumbed while the record already says stopped (a crash between steps) are settled too.
    expect(decide(obs({ runStrategy: 'Manual', plumbed: true, domain: off(0) }), fresh, 0)).toMatchObject({ kind: 'settle' });
  });

  it('starts a settled VM only when its strategy and intent say so, and not before the backoff ends', () => {
    const crashed = { cause: 'crashed' as const, at: '' };
    expect(decide(obs({ runStrategy: 'Always' }), fresh, 0)).toEqual({ kind: 'start', reason: 'RunStrategyAlways' });
    expect(decide(obs({ runStrategy: 'Always', running: false }), fresh, 0)).toEqual({ kind: 'none' });
    expect(decide(obs({ runStrategy: 'Always', running: true, lastExit: { cause: 'shutdown', at: '' } }), fresh, 0)).toEqual({ kind: 'start', reason: 'RestartAfterShutdown' });
    expect(decide(obs({ runStrategy: 'RerunOnFailure', running: true, lastExit: crashed }), fresh, 0)).toEqual({ kind: 'start', reason: 'RestartAfterCrashed' });
    expect(decide(obs({ runStrategy: 'RerunOnFailure', running: false, lastExit: { cause: 'shutdown', at: '' } }), fresh, 0)).toEqual({ kind: 'none' });
    expect(decide(obs({ runStrategy: 'Manual', running: true, lastExit: crashed }), fresh, 0)).toEqual({ kind: 'none' });
    expect(decide(obs({ runStrategy: 'Halted', running: true }), fresh, 0)).toEqual({ kind: 'none' });
    expect(decide(obs({ runStrategy: 'Always', lastExit: crashed }), { failures: 3, notBefore: 5000 }, 1000)).toEqual({ kind: 'backoff', until: new Date(5000), failures: 3 });
    expect(decide(obs({ runStrategy: 'Always', lastExit: crashed }), { failures: 3, notBefore: 5000 }, 5000)).toMatchObject({ kind: 'start' });
  });

  it('backs off exponentially from the second failure, capped', () => {
    expect([0, 1, 2, 3, 4, 20].map((n) => backoffDelay(n, DEFAULT_BACKOFF))).toEqual([0, 1000, 2000, 4000, 8000, 300_000]);
  });
});

describe('reconciler over the VM service and the libvirt fake', () => {
  let dir: string;
  let store: Store;
  let t: TestVms;
  let events: EventInput[];
  let rec: VmReconciler;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nodevirt-reconciler-'));
    store = createStore({ stateDir: join(dir, 'state') });
    await store.open();
    events = [];
    t = createTestVmService(store, join(dir, 'root'), { events: { publish: (e) => void events.push(e) } });
    await t.networks.put('lan', { type: 'bridge', ipam: { subnet: '192.168.60.0/24' } });
    rec = createVmReconciler({ vms: t.vms, libvirt: t.libvirt, resyncMs: 60_000, backoff: { initialMs: 100, maxMs: 400, stableMs: 5000 } });
  });
  afterEach(async () => {
    await rec.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const spec = (over: Partial<VmSpec> = {}): VmSpec => ({ name: 'web', memory: 128, interfaces: [{ network: 'lan' }], kernelBoot: { kernel: 'vmlinuz' }, ...over });
  const until = async <T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, ms = 3000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (ok(v)) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const vm = () => t.vms.get('web');
  const settled = async () => {
    await new Promise((r) => setImmediate(r));
    await rec.reconcile('web');
  };
  const types = () => events.map((e) => `${e.type}:${String(e.data?.reason)}`);

  it('Always: started at creation, restarted after a guest power-off and a crash, kept off after an API stop', async () => {
    rec.start();
    await t.vms.put('web', spec({ runStrategy: 'Always' }));
    const first = await until('first start', vm, (v) => v.status.phase === 'Running');
    expect(first.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'True', reason: 'RunStrategyAlways' }));
    const pid1 = (await t.libvirt.lookupDomain('nodevirt-web'))!.uuid;

    t.libvirt.simulateGuestPoweroff('nodevirt-web');
    await until('restart after power-off', vm, (v) => v.status.phase === 'Running' && v.status.conditions.some((c) => c.reason === 'RestartAfterShutdown'));
    t.libvirt.simulateCrash('nodevirt-web');
    const again = await until('restart after crash', vm, (v) => v.status.phase === 'Running' && v.status.conditions.some((c) => c.reason === 'RestartAfterCrashed'));
    expect(again.status.nics[0]!.tap).toMatch(/^nv/);
    expect((await t.libvirt.lookupDomain('nodevirt-web'))!.uuid).toBe(pid1);
    expect(types()).toEqual([
      'vm.created:api',
      'vm.started:RunStrategyAlways',
      'vm.stopped:GuestShutdown',
      'vm.restarted:RestartAfterShutdown',
      'vm.crashed:Crashed',
      'vm.restarted:RestartAfterCrashed',
    ]);

    await t.vms.stop('web');
    await rec.resync();
    expect((await vm()).status).toMatchObject({ phase: 'Stopped', running: false });
    await t.vms.start('web');
    expect((await vm()).status.phase).toBe('Running');
  });

  it('a PUT that changes the run strategy resets the run intent: a VM stopped as Manual starts when made Always', async () => {
    rec.start();
    await t.vms.put('web', spec());
    await t.vms.start('web');
    await t.vms.stop('web');
    await rec.resync();
    expect((await vm()).status).toMatchObject({ phase: 'Stopped', running: false });
    await t.vms.put('web', spec({ runStrategy: 'Always' }));
    const v = await until('started by Always', vm, (x) => x.status.phase === 'Running');
    expect(v.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'True', reason: 'RunStrategyAlways' }));
    // The same spec again changes nothing, so a later stop holds.
    await t.vms.stop('web');
    await t.vms.put('web', spec({ runStrategy: 'Always' }));
    await rec.resync();
    expect((await vm()).status.phase).toBe('Stopped');
  });

  it('RerunOnFailure: a crash is followed by a restart, a clean guest shutdown is not (NICs unplumbed, intent dropped)', async () => {
    rec.start();
    await t.vms.put('web', spec({ runStrategy: 'RerunOnFailure' }));
    await until('first start', vm, (v) => v.status.phase === 'Running');
    t.libvirt.simulateCrash('nodevirt-web');
    await until('restart after crash', vm, (v) => v.status.phase === 'Running' && v.status.conditions.some((c) => c.reason === 'RestartAfterCrashed'));
    t.libvirt.simulateGuestPoweroff('nodevirt-web');
    const down = await until('settled after shutdown', vm, (v) => v.status.phase === 'Stopped' && v.status.nics[0]!.tap === null);
    expect(down.status.running).toBe(false);
    expect(down.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'False', reason: 'GuestShutdown' }));
    await rec.resync();
    expect((await t.libvirt.lookupDomain('nodevirt-web'))!.active).toBe(false);
  });

  it('Manual: a crash is shown as Failed with its reason, NICs unplumbed, and nothing restarts it', async () => {
    rec.start();
    await t.vms.put('web', spec());
    const tap = (await t.vms.start('web')).status.nics[0]!.tap!;
    t.libvirt.simulateCrash('nodevirt-web');
    const v = await until('failed', vm, (x) => x.status.phase === 'Failed');
    expect(v.status.nics[0]!.tap).toBeNull();
    expect(v.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'False', reason: 'Crashed' }));
    expect(tap).toMatch(/^nv/);
    await rec.resync();
    expect((await vm()).status.phase).toBe('Failed');
    expect(types()).toEqual(['vm.created:api', 'vm.started:api', 'vm.crashed:Crashed']);
    // A start clears the failure.
    expect((await t.vms.start('web')).status.phase).toBe('Running');
  });

  it('notices virsh behind its back: a start is taken over, a domain that vanished is Failed with DomainVanished', async () => {
    rec.start();
    await t.vms.put('web', spec());
    await t.vms.start('web');
    await t.vms.stop('web');
    // The taps are gone after a stop, but the fake does not care: as if someone re-created them and ran virsh start.
    await t.libvirt.startDomain('nodevirt-web');
    const adopted = await until('adopted', vm, (v) => v.status.conditions.some((c) => c.reason === 'StartedOutsideDaemon'));
    expect(adopted.status.phase).toBe('Running');
    expect(types().at(-1)).toBe('vm.started:StartedOutsideDaemon');

    await t.libvirt.undefineDomain('nodevirt-web');
    await t.libvirt.destroyDomain('nodevirt-web');
    const gone = await until('vanished', vm, (v) => v.status.phase === 'Failed');
    expect(gone.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'False', reason: 'DomainVanished' }));
  });

  it('Halted: a domain started anyway is shut down again', async () => {
    rec.start();
    await t.vms.put('web', spec({ runStrategy: 'Halted' }));
    await settled();
    expect(await t.libvirt.lookupDomain('nodevirt-web')).toBeUndefined();
    // Defined and started outside the daemon (the domain was once ours).
    await t.vms.put('web', spec({ runStrategy: 'Manual' }));
    await t.vms.start('web');
    await t.vms.put('web', spec({ runStrategy: 'Halted' }));
    const v = await until('halted', vm, (x) => x.status.phase === 'Stopped');
    expect(v.status.conditions).toContainEqual(expect.objectContaining({ type: 'Started', status: 'False', reason: 'RunStrategyHalted' }));
    expect((await t.libvirt.lookupDomain('nodevirt-web'))!.active).toBe(false);
  });

  it('a crash while libvirt is away is caught up by the resync on reconnect', async () => {
    rec.start();
    await t.vms.put('web', spec({ runStrategy: 'RerunOnFailure' }));
    await until('first start', vm, (v) => v.status.phase === 'Running');
    t.libvirt.simulateDisconnect();
    t.libvirt.simulateCrash('nodevirt-web');
    await new Promise((r) => setTimeout(r, 30));
    t.libvirt.simulateReconnect();
    await until('restart after reconnect', vm, (v) => v.status.phase === 'Running' && v.status.conditions.some((c) => c.reason === 'RestartAfterCrashed'));
  });

  it('a daemon restart adopts running guests and restarts none of them', async () => {
    await t.vms.put('web', spec({ runStrategy: 'Always' }));
    await t.vms.start('web');
    let starts = 0;
    t.libvirt.on('domain', (e) => void (e.event === 'started' && starts++));
    // A fresh reconciler over the same store and libvirt, as after a daemon restart (the service keeps no state
    // of its own beyond locks; vm-service.test.ts covers a new service's adoption).
    const rec2 = createVmReconciler({ vms: t.vms, libvirt: t.libvirt });
    rec2.start();
    await rec2.resync();
    await rec2.resync();
    await rec2.stop();
    expect(starts).toBe(0);
    expect((await vm()).status.phase).toBe('Running');
  });

  it('a crash loop backs off (exponential, capped) and shows RestartBackoff instead of spinning', async () => {
    rec.start();
    let restarts = 0;
    // The guest dies right after every start.
    t.libvirt.on('domain', (e) => {
      if (e.event !== 'started') return;
      restarts++;
      setTimeout(() => {
        try {
          t.libvirt.simulateCrash('nodevirt-web');
        } catch {
          // already down
        }
      }, 5);
    });
    await t.vms.put('web', spec({ runStrategy: 'Always' }));
    const held = await until('RestartBackoff', vm, (v) => v.status.conditions.some((c) => c.type === 'RestartBackoff' && c.status === 'True'));
    expect(held.status.phase).toBe('Failed');
    await new Promise((r) => setTimeout(r, 1500));
    // Delays 0, 100, 200, 400, 400 ... ms: a handful of restarts in ~1.7 s, not hundreds.
    expect(restarts).toBeGreaterThanOrEqual(4);
    expect(restarts).toBeLessThanOrEqual(9);
    await t.vms.stop('web');
  });
});

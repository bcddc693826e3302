// Converges each VM's desired state (spec.runStrategy + the user's run intent, in the store) with what libvirt
// says, on lifecycle events, on a periodic resync and on every libvirt reconnect. decide() is pure; the VM
// service applies its answer under the VM's lock, so reconciling never races an API action.
//
// Run strategies (KubeVirt's meanings), with the run intent `running` that start/stop record:
// - Always: runs unless the user stopped it through the API (running === false); a guest shutdown, a crash,
//   a forced stop outside the daemon or a vanished domain are all followed by a restart. Started at creation.
// - RerunOnFailure: like Always, but only a failure (QEMU died, guest crashed, domain vanished) is followed by
//   a restart; a clean guest shutdown or a destroy outside the daemon counts as a stop (running = false).
// - Manual: never started or stopped by the reconciler; exits are only recorded (NICs unplumbed).
// - Halted: kept off; a domain running anyway (virsh start) is shut down. start answers 409.
// A domain found running is never restarted (daemon restarts adopt running guests); one started outside the
// daemon is taken over (its DHCP servers attached) and reported. Restarts that keep failing back off
// exponentially (capped), shown as the RestartBackoff condition.
import { errorMessage, isAppError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { DomainEvent, LibvirtClient } from '../libvirt/types.js';
import { exitCauseOf, isFailure, type VmObservation, type VmReconcileAction, type VmService } from './vm-service.js';

export interface BackoffState {
  /** Failed restarts in a row (a start that failed, or a guest that went down again soon after our restart). */
  failures: number;
  /** No restart before this time (ms since the epoch). */
  notBefore: number;
}

export interface RestartBackoff {
  /** Delay after the first failure in a row. Default 1 s. */
  initialMs: number;
  /** Cap on the delay. Default 5 min. */
  maxMs: number;
  /** A guest that ran at least this long after our restart was not crash-looping: the count resets. Default 60 s. */
  stableMs: number;
}

export const DEFAULT_BACKOFF: RestartBackoff = { initialMs: 1000, maxMs: 300_000, stableMs: 60_000 };

/** The delay before the next restart after `failures` failures in a row: 0, then initial, 2x, 4x ... capped. */
export function backoffDelay(failures: number, b: RestartBackoff): number {
  if (failures <= 0) return 0;
  return Math.min(b.maxMs, b.initialMs * 2 ** Math.min(failures - 1, 30));
}

/** Whether the run strategy wants the (settled, off) VM running. */
function wantsRunning(o: VmObservation): boolean {
  switch (o.runStrategy) {
    case 'Always':
      return o.running !== false;
    case 'RerunOnFailure':
      // Settle turned a clean exit into running=false, so what is left is a first start or a failure.
      return o.running !== false;
    default:
      return false;
  }
}

/**
 * What to do with one VM, from what is observed and the VM's backoff state. Pure: the same inputs give the
 * same action, so every case is a unit test.
 */
export function decide(o: VmObservation, backoff: BackoffState, nowMs: number): VmReconcileAction {
  const up = o.domain !== undefined && o.domain.active;
  if (up) {
    if (o.runStrategy === 'Halted') return { kind: 'stop', reason: 'RunStrategyHalted' };
    if (!o.started) return { kind: 'adopt', reason: 'StartedOutsideDaemon' };
    return { kind: 'none' };
  }
  if (o.started || o.plumbed) {
    // It went down without the daemon asking (our own stops clear `started` and unplumb under the lock).
    const cause = exitCauseOf(o.domain);
    const stays = o.runStrategy === 'RerunOnFailure' && !isFailure(cause);
    return { kind: 'settle', cause, ...(stays ? { running: false } : {}) };
  }
  if (!wantsRunning(o)) return { kind: 'none' };
  if (nowMs < backoff.notBefore) return { kind: 'backoff', until: new Date(backoff.notBefore), failures: backoff.failures };
  const reason = o.lastExit === undefined ? `RunStrategy${o.runStrategy}` : `RestartAfter${o.lastExit.cause[0]!.toUpperCase()}${o.lastExit.cause.slice(1)}`;
  return { kind: 'start', reason };
}

export interface VmReconcilerDeps {
  vms: Pick<VmService, 'names' | 'reconcile' | 'onChange'>;
  libvirt: Pick<LibvirtClient, 'on' | 'off'>;
  logger?: Logger;
  /** The VM a libvirt domain belongs to (undefined: not ours). Default: the `nodevirt-` prefix stripped. */
  vmOfDomain?: (domain: string) => string | undefined;
  /** Full resync interval (events can be missed while libvirt-dbus restarts). Default 30 s. */
  resyncMs?: number;
  backoff?: Partial<RestartBackoff>;
  now?: () => number;
}

export interface VmReconciler {
  /** Subscribes to events and changes, starts the resync timer and runs a first full pass (not awaited). */
  start(): void;
  /** Unsubscribes and waits for the passes in flight. */
  stop(): Promise<void>;
  /** One full pass over every VM; resolves when done. */
  resync(): Promise<void>;
  /** Reconciles one VM now (coalesced with a pass already queued); resolves when done. */
  reconcile(name: string): Promise<void>;
}

export function createVmReconciler(deps: VmReconcilerDeps): VmReconciler {
  const log = deps.logger?.child({ component: 'vm-reconciler' });
  const now = deps.now ?? Date.now;
  const b: RestartBackoff = { ...DEFAULT_BACKOFF, ...deps.backoff };
  const vmOf = deps.vmOfDomain ?? ((d: string) => (d.startsWith('nodevirt-') ? d.slice('nodevirt-'.length) : undefined));
  const backoffs = new Map<string, BackoffState & { lastStartAt?: number }>();
  const timers = new Map<string, NodeJS.Timeout>();
  // Per VM: the pass running now and whether another was asked for meanwhile (events come in bursts).
  const inFlight = new Map<string, Promise<void>>();
  const again = new Set<string>();
  let running = false;
  let resyncTimer: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;

  const stateOf = (name: string) => {
    let s = backoffs.get(name);
    if (s === undefined) backoffs.set(name, (s = { failures: 0, notBefore: 0 }));
    return s;
  };

  const failed = (name: string, why: string) => {
    const s = stateOf(name);
    s.failures++;
    s.notBefore = now() + backoffDelay(s.failures, b);
    log?.warn({ vm: name, failures: s.failures, retryInMs: s.notBefore - now(), why }, 'restart failed or did not last: backing off');
  };

  const wakeAt = (name: string, at: number) => {
    clearTimeout(timers.get(name));
    timers.set(
      name,
      setTimeout(() => {
        timers.delete(name);
        void reconcile(name);
      }, Math.max(0, at - now())),
    );
  };

  /** One VM until it needs nothing more (a settle is followed by the restart decision at once). */
  const pass = async (name: string): Promise<void> => {
    for (let step = 0; step < 4 && running; step++) {
      const s = stateOf(name);
      let action: VmReconcileAction | undefined;
      try {
        action = await deps.vms.reconcile(name, (o) => {
          // A guest that stayed up long enough after our restart ends the crash loop.
          if (o.domain?.active && s.lastStartAt !== undefined && now() - s.lastStartAt >= b.stableMs) {
            s.failures = 0;
            s.notBefore = 0;
            delete s.lastStartAt;
          }
          return decide(o, s, now());
        });
      } catch (e) {
        if (isAppError(e, 'LIBVIRT_UNAVAILABLE')) {
          log?.debug({ vm: name, err: errorMessage(e) }, 'libvirt away: the reconnect resyncs');
          return;
        }
        // Only a start can fail here in a way worth retrying later; anything else is logged and retried on resync.
        failed(name, errorMessage(e));
        wakeAt(name, stateOf(name).notBefore);
        return;
      }
      if (action === undefined) {
        backoffs.delete(name);
        return;
      }
      switch (action.kind) {
        case 'none':
          return;
        case 'backoff':
          wakeAt(name, action.until.getTime());
          return;
        case 'start':
          s.lastStartAt = now();
          log?.info({ vm: name, reason: action.reason }, 'VM started by its run strategy');
          return;
        case 'settle':
          log?.info({ vm: name, cause: action.cause }, 'VM went down without the daemon asking');
          // Went down again soon after our restart: a crash loop in the making.
          if (s.lastStartAt !== undefined && now() - s.lastStartAt < b.stableMs) failed(name, `went down (${action.cause}) ${now() - s.lastStartAt} ms after a restart`);
          delete s.lastStartAt;
          continue;
        default:
          return;
      }
    }
  };

  const reconcile = (name: string): Promise<void> => {
    const current = inFlight.get(name);
    if (current !== undefined) {
      again.add(name);
      return current;
    }
    const p = (async () => {
      do {
        again.delete(name);
        await pass(name);
      } while (again.has(name) && running);
    })().finally(() => inFlight.delete(name));
    inFlight.set(name, p);
    return p;
  };

  const resync = async (): Promise<void> => {
    let names: string[];
    try {
      names = await deps.vms.names();
    } catch (e) {
      log?.warn({ err: errorMessage(e) }, 'resync could not list VMs');
      return;
    }
    await Promise.all(names.map((n) => reconcile(n)));
  };

  const onDomain = (ev: DomainEvent) => {
    const name = ev.name === undefined ? undefined : vmOf(ev.name);
    if (name === undefined || !running) return;
    void reconcile(name);
  };
  const onConnection = (ev: { connected: boolean }) => {
    // Events sent while libvirt (or the bus) was away are lost: look at everything again.
    if (ev.connected && running) void resync();
  };

  return {
    start() {
      if (running) return;
      running = true;
      deps.libvirt.on('domain', onDomain);
      deps.libvirt.on('connection', onConnection);
      unsubscribe = deps.vms.onChange((name) => void reconcile(name));
      resyncTimer = setInterval(() => void resync(), deps.resyncMs ?? 30_000);
      resyncTimer.unref();
      void resync();
    },
    async stop() {
      if (!running) return;
      running = false;
      deps.libvirt.off('domain', onDomain);
      deps.libvirt.off('connection', onConnection);
      unsubscribe?.();
      clearInterval(resyncTimer);
      for (const t of timers.values()) clearTimeout(t);
      timers.clear();
      await Promise.allSettled([...inFlight.values()]);
    },
    resync,
    reconcile,
  };
}

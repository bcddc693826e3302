// Host network changes that roll back by themselves (nmstate's checkpoint idea, standalone): checkpoint the
// links, persist the record, start a detached revert agent (revert-agent.sh), apply, probe, then confirm or
// revert. The agent, not this process, holds the deadline, so a daemon killed mid-change still gets reverted.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError, errorMessage } from '../lib/errors.js';
import { runCommand } from '../host/run-command.js';
import type { Store } from '../store/store.js';
import { captureCheckpoint, renderHostOp, restorePlan, type Checkpoint, type HostOp } from './checkpoint.js';

export type HostChangeState = 'pending' | 'confirmed' | 'reverted' | 'failed';

/** Why a change was reverted. 'agent' means the detached agent did it (the daemon was gone or late). */
export type RevertReason = 'apply-failed' | 'probe-failed' | 'timeout' | 'agent' | 'daemon-restart';

export interface ProbeResult {
  /** "gateway 192.0.2.1" or the URL. */
  name: string;
  baseline: boolean;
  /** Unset until the after-change probes ran (and for probes that failed at baseline, which do not count). */
  after?: boolean;
}

export interface HostChange {
  id: string;
  state: HostChangeState;
  reason?: RevertReason;
  /** Apply or restore error text; set with state 'failed' when the restore itself had errors. */
  error?: string;
  netns?: string;
  links: string[];
  createdAt: string;
  /** Epoch ms after which an unconfirmed change is reverted. */
  deadline: number;
  autoConfirm: boolean;
  probes: ProbeResult[];
  applyPlan: string[];
  restorePlan: string[];
  checkpoint: Checkpoint;
  agentPid?: number;
}

export interface HostChangeRequest {
  /** Work inside this named network namespace (tests). */
  netns?: string;
  /** Every link the change touches or creates: the checkpoint covers exactly these. */
  links: string[];
  /** The change, or a function of the checkpoint (e.g. cp => bridgeOverUplinkPlan(cp, 'eth0', br)). */
  apply: readonly HostOp[] | ((cp: Checkpoint) => HostOp[]);
  /** Ping the default gateway of the checkpoint (default true) and GET these URLs (2xx/3xx passes). */
  probes?: { gateway?: boolean; urls?: string[] };
  /** Default 60 s. Probes run inside this window. */
  timeoutMs?: number;
  /** Confirm as soon as the counted probes pass (default true); otherwise wait for confirm(). */
  autoConfirm?: boolean;
}

export interface HostChanges {
  /**
   * Resolves once applied and probed: 'confirmed' (auto-confirm), 'pending' (waiting for confirm() until
   * the deadline), 'reverted' (apply or probe failure) or 'failed' (the restore had errors). Throws
   * HOST_CHANGE_INVALID for a bad request and HOST_ERROR when the checkpoint cannot be read.
   */
  applyWithRollback(req: HostChangeRequest): Promise<HostChange>;
  /** HOST_CHANGE_NOT_FOUND; HOST_CHANGE_CONFLICT when already reverted/failed. Confirming twice is fine. */
  confirm(id: string): Promise<HostChange>;
  /** Reverts a pending change now (an operator's "undo"); no-op on finished ones. */
  revert(id: string): Promise<HostChange>;
  get(id: string): Promise<HostChange | undefined>;
  list(): Promise<HostChange[]>;
  /** At daemon start: pending changes whose agent is gone (or whose deadline passed) are reverted; others re-armed. */
  reconcile(): Promise<HostChange[]>;
  /** Drops in-process timers (the agents keep guarding). */
  stop(): void;
}

export interface HostChangeDeps {
  store: Store;
  /** Each change gets DIR = stateDir/host-changes/ID with restore.batch, lock and markers. */
  stateDir: string;
  /** Path of revert-agent.sh; found next to this module or in the source tree by default. */
  agentScript?: string;
  /** How long probes may retry after the change before it counts as broken (default min(10 s, timeout/2)). */
  probeWindowMs?: number;
  log?: { info(o: object, msg: string): void; warn(o: object, msg: string): void };
}

const DEFAULT_TIMEOUT_MS = 60_000;
const IFNAME = /^[A-Za-z0-9_.:@+-]{1,15}$/;
const NETNS = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * revert-agent.sh: tsc does not copy it into dist/, so from dist/daemon/net it is found by walking up to
 * the directory holding daemon/net/revert-agent.sh (the repository), as the spec loader finds api-spec/.
 */
export function defaultAgentScript(start: string = fileURLToPath(new URL('.', import.meta.url))): string {
  const here = join(start, 'revert-agent.sh');
  if (existsSync(here)) return here;
  let dir = start;
  for (;;) {
    const candidate = join(dir, 'daemon', 'net', 'revert-agent.sh');
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`daemon/net/revert-agent.sh not found above ${start}`);
    dir = parent;
  }
}

/** The ping command: iputils when installed, else busybox (Debian's minimal images ship neither by default). */
function pingArgv(): string[] {
  for (const p of ['/usr/bin/ping', '/bin/ping']) if (existsSync(p)) return [p];
  return ['busybox', 'ping'];
}

async function probeOnce(kind: 'ping' | 'http', target: string, netns: string | undefined): Promise<boolean> {
  if (kind === 'ping') {
    const [cmd, ...pre] = pingArgv();
    const r = await runCommand(cmd!, [...pre, '-c', '1', '-W', '1', target], { okCodes: [1, 2], ...(netns === undefined ? {} : { netns }) }).catch(() => undefined);
    return r?.code === 0;
  }
  if (netns === undefined) {
    try {
      const res = await fetch(target, { method: 'GET', redirect: 'manual', signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      return res.status >= 200 && res.status < 400;
    } catch {
      return false;
    }
  }
  // fetch runs in this process's namespace; inside a test namespace a short node child does the GET.
  const js = `fetch(process.argv[1],{redirect:'manual',signal:AbortSignal.timeout(2000)}).then(r=>process.exit(r.status>=200&&r.status<400?0:1),()=>process.exit(1))`;
  const r = await runCommand(process.execPath, ['-e', js, target], { netns, okCodes: [1] }).catch(() => undefined);
  return r?.code === 0;
}

interface ProbeSpec {
  name: string;
  kind: 'ping' | 'http';
  target: string;
}

/** Retries one probe until it passes or the window closes. */
async function probeUntil(p: ProbeSpec, netns: string | undefined, until: number): Promise<boolean> {
  for (;;) {
    if (await probeOnce(p.kind, p.target, netns)) return true;
    if (Date.now() + 300 >= until) return false;
    await new Promise((r) => setTimeout(r, 300));
  }
}

function validate(req: HostChangeRequest): void {
  const bad = (msg: string) => new AppError('HOST_CHANGE_INVALID', msg);
  if (req.netns !== undefined && !NETNS.test(req.netns)) throw bad(`bad netns ${JSON.stringify(req.netns)}`);
  if (req.links.length === 0) throw bad('a host change names at least one link');
  for (const l of req.links) if (!IFNAME.test(l)) throw bad(`bad link name ${JSON.stringify(l)}`);
  const t = req.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(t) || t < 1000 || t > 3_600_000) throw bad(`timeoutMs must be 1000..3600000, got ${t}`);
  for (const u of req.probes?.urls ?? []) {
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw bad(`bad probe URL ${JSON.stringify(u)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(`probe URL must be http(s): ${u}`);
  }
}

export function createHostChanges(deps: HostChangeDeps): HostChanges {
  const repo = deps.store.sublevel<HostChange>('host-changes');
  const agent = deps.agentScript ?? defaultAgentScript();
  const root = join(deps.stateDir, 'host-changes');
  const timers = new Map<string, NodeJS.Timeout>();
  const dirOf = (id: string) => join(root, id);

  /** The agent is ours while its command line still names the change's directory (pids get reused). */
  const agentAlive = async (c: HostChange): Promise<boolean> => {
    if (c.agentPid === undefined) return false;
    try {
      const cmd = await readFile(`/proc/${c.agentPid}/cmdline`, 'utf8');
      return cmd.split('\0').includes(dirOf(c.id));
    } catch {
      return false;
    }
  };
  const killAgent = async (c: HostChange) => {
    if (!(await agentAlive(c))) return;
    try {
      // The agent leads its own session and process group: this also ends its `sleep`.
      process.kill(-c.agentPid!, 'SIGTERM');
    } catch {
      /* already gone */
    }
  };
  const runAgent = (args: string[]) => runCommand('sh', [agent, ...args], { okCodes: [3, 4] });

  const clearTimer = (id: string) => {
    const t = timers.get(id);
    if (t) clearTimeout(t);
    timers.delete(id);
  };
  const arm = (c: HostChange) => {
    clearTimer(c.id);
    const t = setTimeout(() => {
      timers.delete(c.id);
      doRevert(c.id, 'timeout').catch((e) => deps.log?.warn({ id: c.id, err: errorMessage(e) }, 'host change: revert at deadline failed'));
    }, Math.max(0, c.deadline - Date.now()));
    t.unref();
    timers.set(c.id, t);
  };

  const must = async (id: string) => {
    const c = /^[a-z0-9-]{1,64}$/.test(id) ? await repo.get(id) : undefined;
    if (!c) throw new AppError('HOST_CHANGE_NOT_FOUND', `no host change ${id}`);
    return c;
  };

  async function doRevert(id: string, reason: RevertReason, error?: string): Promise<HostChange> {
    const c = await must(id);
    if (c.state !== 'pending') return c;
    clearTimer(id);
    await killAgent(c);
    const dir = dirOf(id);
    const agentDidIt = existsSync(join(dir, 'reverted'));
    const r = await runAgent(['revert', dir, ...(c.netns === undefined ? [] : [c.netns])]);
    let next: HostChange;
    if (r.code === 4) {
      next = { ...c, state: 'confirmed' };
    } else {
      const outcome = (await readFile(join(dir, 'reverted'), 'utf8')).trim();
      const why = agentDidIt ? 'agent' : reason;
      if (outcome === 'ok') {
        next = { ...c, state: 'reverted', reason: why, ...(error === undefined ? {} : { error }) };
      } else {
        const stderr = await readFile(join(dir, 'restore.err'), 'utf8').catch(() => '');
        next = { ...c, state: 'failed', reason: why, error: [error, `restore: ${outcome}: ${stderr.trim()}`].filter(Boolean).join('; ') };
      }
    }
    await repo.put(id, next);
    deps.log?.warn({ id, state: next.state, reason: next.reason, error: next.error }, 'host change reverted');
    return next;
  }

  async function doConfirm(id: string): Promise<HostChange> {
    const c = await must(id);
    if (c.state === 'confirmed') return c;
    if (c.state !== 'pending') throw new AppError('HOST_CHANGE_CONFLICT', `host change ${id} is ${c.state}`, { extra: { state: c.state } });
    const r = await runAgent(['confirm', dirOf(id)]);
    if (r.code === 3) {
      // The agent won the race at the deadline: record what it did.
      const reverted = await doRevert(id, 'agent');
      throw new AppError('HOST_CHANGE_CONFLICT', `host change ${id} was already reverted`, { extra: { state: reverted.state } });
    }
    clearTimer(id);
    await killAgent(c);
    const next: HostChange = { ...c, state: 'confirmed' };
    await repo.put(id, next);
    deps.log?.info({ id }, 'host change confirmed');
    return next;
  }

  return {
    async applyWithRollback(req) {
      validate(req);
      const timeoutMs = req.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      const autoConfirm = req.autoConfirm ?? true;
      const ns = req.netns;
      const cp = await captureCheckpoint(req.links, ns === undefined ? {} : { netns: ns });
      let applyLines: string[];
      let restoreLines: string[];
      try {
        applyLines = (typeof req.apply === 'function' ? req.apply(cp) : req.apply).map(renderHostOp);
        restoreLines = restorePlan(cp).map(renderHostOp);
      } catch (e) {
        if (e instanceof AppError) throw e;
        throw new AppError('HOST_CHANGE_INVALID', errorMessage(e), { cause: e });
      }
      if (applyLines.length === 0) throw new AppError('HOST_CHANGE_INVALID', 'the change plan is empty');

      const specs: ProbeSpec[] = [];
      if ((req.probes?.gateway ?? true) && cp.defaultGateway !== undefined) specs.push({ name: `gateway ${cp.defaultGateway}`, kind: 'ping', target: cp.defaultGateway });
      for (const u of req.probes?.urls ?? []) specs.push({ name: u, kind: 'http', target: u });
      // Baseline: a probe that fails before the change says nothing about the change.
      const baseline = await Promise.all(specs.map((p) => probeUntil(p, ns, Date.now() + 1500)));

      const id = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
      const dir = dirOf(id);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFile(join(dir, 'restore.batch'), restoreLines.join('\n') + '\n', { mode: 0o600 });
      const deadline = Date.now() + timeoutMs;
      let c: HostChange = {
        id,
        state: 'pending',
        ...(ns === undefined ? {} : { netns: ns }),
        links: [...req.links],
        createdAt: new Date().toISOString(),
        deadline,
        autoConfirm,
        probes: specs.map((p, i) => ({ name: p.name, baseline: baseline[i]! })),
        applyPlan: applyLines,
        restorePlan: restoreLines,
        checkpoint: cp,
      };
      // Recorded before the agent and the kernel hear of it, so a crash at any later point is found by reconcile().
      await repo.put(id, c);

      const child = spawn('sh', [agent, 'wait', dir, String(Math.ceil(deadline / 1000)), ...(ns === undefined ? [] : [ns])], {
        detached: true,
        stdio: 'ignore',
      });
      const started = await new Promise<boolean>((resolve) => {
        child.once('spawn', () => resolve(true));
        child.once('error', () => resolve(false));
      });
      if (!started || child.pid === undefined) {
        await repo.put(id, { ...c, state: 'failed', error: 'the revert agent did not start; nothing was applied' });
        throw new AppError('HOST_ERROR', `host change: cannot start the revert agent ${agent}`);
      }
      child.unref();
      c = { ...c, agentPid: child.pid };
      await repo.put(id, c);
      deps.log?.info({ id, links: c.links, deadline: new Date(deadline).toISOString(), agentPid: child.pid }, 'host change: applying');

      try {
        await runCommand('ip', [...(ns === undefined ? [] : ['-n', ns]), '-4', '-batch', '-'], { input: applyLines.join('\n') + '\n' });
      } catch (e) {
        return doRevert(id, 'apply-failed', errorMessage(e));
      }

      const window = deps.probeWindowMs ?? Math.min(10_000, timeoutMs / 2);
      const until = Math.min(Date.now() + window, deadline - 500);
      const after = await Promise.all(specs.map((p, i) => (baseline[i] ? probeUntil(p, ns, until) : Promise.resolve(undefined))));
      c = { ...c, probes: c.probes.map((p, i) => (after[i] === undefined ? p : { ...p, after: after[i]! })) };
      const current = await must(id);
      if (current.state !== 'pending') return current;
      await repo.put(id, c);
      if (after.some((a) => a === false)) return doRevert(id, 'probe-failed', `probes failed: ${c.probes.filter((p) => p.after === false).map((p) => p.name).join(', ')}`);
      if (autoConfirm) return doConfirm(id);
      arm(c);
      return c;
    },
    confirm: doConfirm,
    revert: (id) => doRevert(id, 'timeout'),
    async get(id) {
      return repo.get(id);
    },
    async list() {
      return (await repo.list()).map(([, v]) => v);
    },
    async reconcile() {
      const out: HostChange[] = [];
      for (const [, c] of await repo.list()) {
        if (c.state !== 'pending') continue;
        if (Date.now() < c.deadline && (await agentAlive(c))) {
          arm(c);
          out.push(c);
        } else {
          out.push(await doRevert(c.id, 'daemon-restart'));
        }
      }
      return out;
    },
    stop() {
      for (const id of [...timers.keys()]) clearTimer(id);
    },
  };
}

// /v1/vms: declarative PUT (?dryRun, If-Match, ETag = generation), GET one/list, DELETE (?keepDisks) and the
// actions: start/stop/restart run as operations (202 + Location, or ?wait), pause/resume/reset answer at once.
// The VM service does the work; this file maps HTTP to it.
import { AppError } from '../../lib/errors.js';
import type { OperationContext, Operations } from '../../ops/types.js';
import type { VmSpec } from '../../vm/vm-model.js';
import { vmEtag, type VmPutResult, type VmService, type VmView } from '../../vm/vm-service.js';
import { operationResponse } from '../operation-response.js';
import type { Handlers, Schemas } from '../types.js';

/** What the routes need from vm/vm-service.ts. */
export type VmApi = Pick<VmService, 'put' | 'get' | 'list' | 'delete' | 'start' | 'stop' | 'restart' | 'pause' | 'resume' | 'reset'>;

// The service's views may hold undefined fields; the wire drops them.
const wire = <T>(v: unknown): T => JSON.parse(JSON.stringify(v)) as T;
const toVm = (v: VmView): Schemas['Vm'] => wire<Schemas['Vm']>(v);
const toResult = (r: VmPutResult): Schemas['VmApplyResult'] => ({
  vm: toVm(r.vm),
  changed: r.changed,
  dryRun: r.dryRun,
  diff: r.diff,
  ...(r.domainXml === undefined ? {} : { domainXml: r.domainXml }),
});

export function vmRoutes(deps: { vms: VmApi | undefined; ops?: Operations | undefined }): Pick<
  Handlers,
  'vmsList' | 'vmGet' | 'vmPut' | 'vmDelete' | 'vmStart' | 'vmStop' | 'vmRestart' | 'vmPause' | 'vmResume' | 'vmReset'
> {
  const svc = (): VmApi => {
    // Fails loudly until main.ts wires the service, rather than answering as if no VM existed.
    if (!deps.vms) throw new AppError('INTERNAL', 'the VM service is not wired into this daemon');
    return deps.vms;
  };
  const ifMatch = (h: string | undefined) => (h === undefined || h === '' ? {} : { ifMatch: h });
  /**
   * Slow actions as operations: an unknown VM is still a plain 404 before any operation exists; everything
   * else (409s, libvirt failures) becomes the operation's error, which ?wait turns back into the same problem.
   */
  const asOperation = async (kind: string, name: string, wait: number | undefined, work: (ctx: OperationContext) => Promise<VmView>) => {
    if (!deps.ops) throw new AppError('INTERNAL', 'operations are not wired into this daemon');
    await svc().get(name);
    const op = deps.ops.run(`vm.${kind}`, `vms/${name}`, async (ctx) => {
      ctx.progress(0, `${kind} ${name}`);
      const v = await work(ctx);
      ctx.progress(100, `${kind} done: ${v.status.phase}`);
      return toVm(v);
    });
    return operationResponse(deps.ops, op, wait);
  };
  return {
    async vmsList() {
      return { status: 200, body: { items: (await svc().list()).map(toVm) } };
    },

    async vmGet({ path }) {
      const v = await svc().get(path.name);
      return { status: 200, body: toVm(v), headers: { ETag: vmEtag(v.generation) } };
    },

    async vmPut({ path, query, body }, ctx) {
      const dryRun = query.dryRun === true;
      const r = await svc().put(path.name, body as VmSpec, { dryRun, ...ifMatch(ctx.get('if-match')) });
      const headers: Record<string, string> = dryRun ? {} : { ETag: vmEtag(r.vm.generation) };
      if (r.created && !dryRun) {
        return { status: 201, body: toResult(r), headers: { ...headers, Location: `/v1/vms/${encodeURIComponent(path.name)}` } };
      }
      return { status: 200, body: toResult(r), headers };
    },

    async vmDelete({ path, query }, ctx) {
      await svc().delete(path.name, { keepDisks: query.keepDisks === true, ...ifMatch(ctx.get('if-match')) });
      return { status: 204, body: undefined };
    },

    async vmStart({ path, query }) {
      return asOperation('start', path.name, query.wait, () => svc().start(path.name));
    },

    async vmStop({ path, query }) {
      return asOperation('stop', path.name, query.wait, () => svc().stop(path.name, { force: query.force === true }));
    },

    async vmRestart({ path, query }) {
      return asOperation('restart', path.name, query.wait, () => svc().restart(path.name));
    },

    async vmPause({ path }) {
      return { status: 200, body: toVm(await svc().pause(path.name)) };
    },

    async vmResume({ path }) {
      return { status: 200, body: toVm(await svc().resume(path.name)) };
    },

    async vmReset({ path }) {
      return { status: 200, body: toVm(await svc().reset(path.name)) };
    },
  };
}

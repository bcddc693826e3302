// A VM's storage: checks disk sources at PUT (confinement included), resolves them to host files at start
// (volumes created on first use) and removes the per-VM files at delete. The VM service calls only this file
// for disks, so image-backed sources grow here.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, type ErrorIssue } from '../lib/errors.js';
import type { ImageStore } from '../storage/images.js';
import type { PathGuard } from '../storage/paths.js';
import type { DiskFormat, DomainXmlContext } from './domain-xml.js';
import type { VmSpec } from './vm-model.js';

export interface VmDisksDeps {
  /** Confines kernel and host-disk paths to the storage roots. */
  guard: PathGuard;
  images: Pick<ImageStore, 'inspect' | 'createEmptyVolume'>;
  /** Per-VM directories (seed ISO, volumes) live here; must be inside a storage root libvirt's qemu can read. */
  vmDir: string;
}

export interface VmDisks {
  /** Problems with the spec's disk sources, as issues; also resolves every path so escapes are refused at PUT. */
  check(spec: VmSpec): Promise<ErrorIssue[]>;
  /** Host paths of the domain's disks and kernel; with dryRun nothing is created or inspected. */
  resolve(name: string, spec: VmSpec, dryRun: boolean): Promise<Pick<DomainXmlContext, 'disks' | 'kernelBoot'>>;
  /** The per-VM directory (seed ISO, volumes, overlays). */
  dirOf(name: string): string;
  /** Removes the VM's files; with keepDisks only what is not a disk (the seed ISO). */
  remove(name: string, keepDisks: boolean): Promise<void>;
}

function isMissingFile(e: unknown): boolean {
  // inspect() of a missing file: qemu-img reports it as a host error whose message names ENOENT.
  return /No such file|ENOENT|not found/i.test(errorMessage(e));
}

export function createVmDisks(deps: VmDisksDeps): VmDisks {
  const dirOf = (name: string) => join(deps.vmDir, name);
  return {
    dirOf,

    async check(spec) {
      const issues: ErrorIssue[] = [];
      // The image registry is not built yet: only sources that need no image are accepted.
      (spec.disks ?? []).forEach((d, i) => {
        if (d.image !== undefined || d.cdrom !== undefined || d.volume?.fromImage !== undefined) {
          issues.push({ pointer: `/disks/${i}`, reason: 'image-based disks need the image registry, which this node does not have yet; use host or an empty volume' });
        }
      });
      if (issues.length) return issues;
      // Confinement (symlinks included) is checked now too, so a path outside the roots is refused at PUT, not at start.
      for (const p of [spec.kernelBoot?.kernel, spec.kernelBoot?.initrd, ...(spec.disks ?? []).map((d) => d.host?.path)]) {
        if (p !== undefined) await deps.guard.resolve(p);
      }
      return [];
    },

    async resolve(name, spec, dryRun) {
      const disks: Record<string, { path: string; format: DiskFormat }> = {};
      for (const d of spec.disks ?? []) {
        if (d.host) {
          const path = await deps.guard.resolve(d.host.path);
          if (dryRun) disks[d.name] = { path, format: 'raw' };
          else {
            const facts = await deps.images.inspect(path).catch(async (e: unknown) => {
              if (d.host?.sizeBytes === undefined || !isMissingFile(e)) throw e;
              return deps.images.createEmptyVolume(path, d.host.sizeBytes, 'raw');
            });
            disks[d.name] = { path: facts.path, format: facts.format };
          }
        } else if (d.volume?.sizeBytes !== undefined) {
          const path = join(dirOf(name), `${d.name}.qcow2`);
          if (dryRun) disks[d.name] = { path, format: 'qcow2' };
          else {
            await mkdir(dirOf(name), { recursive: true, mode: 0o755 });
            const size = d.volume.sizeBytes;
            const facts = await deps.images.inspect(path).catch(() => deps.images.createEmptyVolume(path, size, 'qcow2'));
            disks[d.name] = { path: facts.path, format: facts.format };
          }
        }
      }
      const kb = spec.kernelBoot;
      if (kb === undefined) return { disks };
      const kernel = await deps.guard.resolve(kb.kernel);
      const initrd = kb.initrd === undefined ? undefined : await deps.guard.resolve(kb.initrd);
      return { disks, kernelBoot: { kernel, ...(initrd === undefined ? {} : { initrd }) } };
    },

    async remove(name, keepDisks) {
      if (keepDisks) await rm(join(dirOf(name), 'seed.iso'), { force: true });
      else await rm(dirOf(name), { recursive: true, force: true });
    },
  };
}

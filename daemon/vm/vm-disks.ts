// A VM's storage: checks disk sources at PUT (confinement and registry lookups, no qemu-img), resolves them to
// host files at start (overlays and volumes created on first use) and removes the per-VM files at delete.
// The VM service calls only this file for disks.
//
// Files in the VM's directory: `<disk>.overlay.qcow2` for an `image` disk (copy-on-write on the registry image:
// created at the first start, kept across stops, starts and daemon restarts, made again when the spec points
// the disk at another image, removed at delete even with keepDisks because it is not a volume);
// `<disk>.qcow2` for a `volume` (empty at sizeBytes, or a standalone copy of `fromImage` grown to sizeBytes,
// made once; later spec changes of fromImage do not touch an existing volume; kept with keepDisks).
// A `cdrom` is the registry image itself, attached read-only.
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError, errorMessage, type ErrorIssue } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { ImageRecord } from '../storage/image-registry.js';
import type { ImageStore } from '../storage/images.js';
import type { PathGuard } from '../storage/paths.js';
import type { DiskFormat, DomainXmlContext } from './domain-xml.js';
import type { VmSpec } from './vm-model.js';

/** What image-backed sources need: registry lookups (a store read) and the two qemu-img file operations. */
export interface VmDiskRegistry {
  find(name: string): Promise<Pick<ImageRecord, 'name' | 'format' | 'path' | 'virtualSize'> | undefined>;
  createOverlay: ImageStore['createOverlay'];
  copyToVolume: ImageStore['copyToVolume'];
}

export interface VmDiskImages extends Pick<ImageStore, 'inspect' | 'createEmptyVolume'> {
  /** Absent: image, cdrom and volume.fromImage sources are refused at PUT. main.ts passes diskImages(). */
  registry?: VmDiskRegistry;
}

export interface VmDisksDeps {
  /** Confines kernel and host-disk paths to the storage roots. */
  guard: PathGuard;
  images: VmDiskImages;
  /** Per-VM directories (seed ISO, volumes) live here; must be inside a storage root libvirt's qemu can read. */
  vmDir: string;
  logger?: Logger;
}

export interface VmDisks {
  /** Problems with the spec's disk sources, as issues; also resolves every path so escapes are refused at PUT. */
  check(spec: VmSpec): Promise<ErrorIssue[]>;
  /** Host paths of the domain's disks and kernel; with dryRun nothing is created or inspected. */
  resolve(name: string, spec: VmSpec, dryRun: boolean): Promise<Pick<DomainXmlContext, 'disks' | 'kernelBoot'>>;
  /** The per-VM directory (seed ISO, volumes, overlays). */
  dirOf(name: string): string;
  /** Removes the VM's files; with keepDisks only what is not a volume or host disk (seed ISO, overlays). */
  remove(name: string, keepDisks: boolean): Promise<void>;
}

/** The image store plus the registry, as the VM service's `images` dep (main.ts wiring). */
export function diskImages(store: ImageStore, registry: { find(name: string): Promise<ImageRecord | undefined> }): VmDiskImages {
  return {
    inspect: (p) => store.inspect(p),
    createEmptyVolume: (p, size, format) => store.createEmptyVolume(p, size, format),
    registry: {
      find: (n) => registry.find(n),
      createOverlay: (b, o) => store.createOverlay(b, o),
      copyToVolume: (i, v, opts) => store.copyToVolume(i, v, opts),
    },
  };
}

/** Registry image names a spec uses (image, cdrom, volume.fromImage), each once: for the registry's usedBy. */
export function imagesOf(spec: Pick<VmSpec, 'disks'>): string[] {
  const names = new Set<string>();
  for (const d of spec.disks ?? []) {
    for (const n of [d.image?.name, d.cdrom?.image, d.volume?.fromImage]) if (n !== undefined) names.add(n);
  }
  return [...names];
}

const OVERLAY_SUFFIX = '.overlay.qcow2';

function isMissingFile(e: unknown): boolean {
  // inspect() of a missing file: qemu-img reports it as a host error whose message names ENOENT.
  return /No such file|ENOENT|not found/i.test(errorMessage(e));
}

const exists = (p: string): Promise<boolean> => lstat(p).then(() => true, () => false);

export function createVmDisks(deps: VmDisksDeps): VmDisks {
  const dirOf = (name: string) => join(deps.vmDir, name);
  const log = deps.logger?.child({ component: 'vm-disks' });

  const registered = async (image: string) => {
    const reg = deps.images.registry;
    const rec = reg ? await reg.find(image) : undefined;
    // Checked at PUT, and the registry refuses to delete a used image; this is a delete racing a PUT.
    if (!reg || !rec) throw new AppError('IMAGE_NOT_FOUND', `no image named ${image}`, { extra: { name: image } });
    return { reg, rec };
  };

  return {
    dirOf,

    async check(spec) {
      const issues: ErrorIssue[] = [];
      const reg = deps.images.registry;
      for (const [i, d] of (spec.disks ?? []).entries()) {
        const ref = d.image ? { name: d.image.name, pointer: `/disks/${i}/image/name` }
          : d.cdrom ? { name: d.cdrom.image, pointer: `/disks/${i}/cdrom/image` }
          : d.volume?.fromImage !== undefined ? { name: d.volume.fromImage, pointer: `/disks/${i}/volume/fromImage` }
          : undefined;
        if (!ref) continue;
        if (!reg) {
          issues.push({ pointer: `/disks/${i}`, reason: 'image-based disks need the image registry, which this daemon was started without; use host or an empty volume' });
          continue;
        }
        const rec = await reg.find(ref.name);
        if (!rec) {
          issues.push({ pointer: ref.pointer, reason: `no image named ${ref.name} (import it with POST /v1/images)` });
          continue;
        }
        const size = d.volume?.sizeBytes;
        if (d.volume?.fromImage !== undefined && size !== undefined && size < rec.virtualSize) {
          issues.push({ pointer: `/disks/${i}/volume/sizeBytes`, reason: `must be at least the image's virtual size (${rec.virtualSize} bytes)` });
        }
      }
      if (issues.length) return issues;
      // Confinement (symlinks included) is checked now too, so a path outside the roots is refused at PUT, not at start.
      for (const p of [spec.kernelBoot?.kernel, spec.kernelBoot?.initrd, ...(spec.disks ?? []).map((d) => d.host?.path)]) {
        if (p !== undefined) await deps.guard.resolve(p);
      }
      return [];
    },

    async resolve(name, spec, dryRun) {
      const disks: Record<string, { path: string; format: DiskFormat }> = {};
      const ensureDir = () => mkdir(dirOf(name), { recursive: true, mode: 0o755 });
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
        } else if (d.volume) {
          const path = join(dirOf(name), `${d.name}.qcow2`);
          if (dryRun) disks[d.name] = { path, format: 'qcow2' };
          else if (await exists(path)) {
            // Persistent: an existing volume is used as it is, whatever fromImage says now.
            const facts = await deps.images.inspect(path);
            disks[d.name] = { path: facts.path, format: facts.format };
          } else {
            await ensureDir();
            const { fromImage, sizeBytes } = d.volume;
            let facts;
            if (fromImage !== undefined) {
              const { reg, rec } = await registered(fromImage);
              facts = await reg.copyToVolume(rec.path, path, { format: 'qcow2', ...(sizeBytes === undefined ? {} : { sizeBytes }) });
              log?.info({ vm: name, disk: d.name, image: fromImage }, 'volume copied from image');
            } else {
              facts = await deps.images.createEmptyVolume(path, sizeBytes ?? 0, 'qcow2');
            }
            disks[d.name] = { path: facts.path, format: facts.format };
          }
        } else if (d.image) {
          const path = join(dirOf(name), `${d.name}${OVERLAY_SUFFIX}`);
          if (dryRun) disks[d.name] = { path, format: 'qcow2' };
          else {
            const { reg, rec } = await registered(d.image.name);
            if (await exists(path)) {
              const facts = await deps.images.inspect(path);
              if (facts.backingChain[0]?.path === rec.path) {
                disks[d.name] = { path: facts.path, format: facts.format };
                continue;
              }
              // The spec now names another image: the old overlay's writes belong to the old image and are dropped.
              log?.info({ vm: name, disk: d.name, image: rec.name, was: facts.backingChain[0]?.path }, 'overlay re-created on another image');
              await rm(path, { force: true });
            }
            await ensureDir();
            const facts = await reg.createOverlay(rec.path, path);
            disks[d.name] = { path: facts.path, format: facts.format };
          }
        } else if (d.cdrom) {
          const { rec } = await registered(d.cdrom.image);
          disks[d.name] = { path: rec.path, format: rec.format };
        }
      }
      const kb = spec.kernelBoot;
      if (kb === undefined) return { disks };
      const kernel = await deps.guard.resolve(kb.kernel);
      const initrd = kb.initrd === undefined ? undefined : await deps.guard.resolve(kb.initrd);
      return { disks, kernelBoot: { kernel, ...(initrd === undefined ? {} : { initrd }) } };
    },

    async remove(name, keepDisks) {
      if (!keepDisks) return rm(dirOf(name), { recursive: true, force: true });
      const files = await readdir(dirOf(name)).catch(() => [] as string[]);
      for (const f of files) {
        if (f === 'seed.iso' || f.endsWith(OVERLAY_SUFFIX)) await rm(join(dirOf(name), f), { force: true });
      }
    },
  };
}

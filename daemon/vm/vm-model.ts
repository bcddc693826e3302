// The VM's desired state (spec) as the daemon holds it, its defaults, and the pure validation that turns a
// spec into a list of {pointer, reason} issues before anything touches libvirt, the kernel or the disk.
import { parseMac } from '../net/macs.js';
import { parseIpv4 } from '../net/ipam.js';
import type { ErrorIssue } from '../lib/errors.js';
import { pathSyntaxProblem } from '../storage/paths.js';

export type Machine = 'q35' | 'pc';
export type Firmware = 'bios' | 'uefi';
export type DiskBus = 'virtio' | 'sata' | 'scsi';
export type NicModel = 'virtio' | 'e1000';
/** KubeVirt's meanings: Always restarts after any stop, RerunOnFailure only after a crash, Manual never, Halted keeps it off. */
export type RunStrategy = 'Always' | 'RerunOnFailure' | 'Manual' | 'Halted';

/** Exactly one source per disk. */
export interface DiskSource {
  /** A qcow2 overlay on the named image (ephemeral; KubeVirt's containerDisk). */
  image?: { name: string };
  /** A persistent volume of this VM: a copy of an image, or empty at `sizeBytes`. */
  volume?: { fromImage?: string; sizeBytes?: number };
  /** An existing file inside an allowed storage root; created at `sizeBytes` if absent (DiskOrCreate). */
  host?: { path: string; sizeBytes?: number };
  /** An ISO image attached as a read-only CD-ROM. */
  cdrom?: { image: string };
}

export interface VmDisk extends DiskSource {
  name: string;
  /** Defaults to virtio for disks and sata for CD-ROMs. */
  bus?: DiskBus;
  /** 1 is tried first; unique across disks and interfaces. */
  bootOrder?: number;
  readonly?: boolean;
}

export interface VmInterface {
  /** Defaults to `net<index>`. */
  name?: string;
  network: string;
  model?: NicModel;
  mac?: string;
  ip?: string;
  bootOrder?: number;
}

export interface VmCloudInit {
  userData?: string;
  metaData?: string;
  /** Generated from the interfaces (network-config v2, matched by MAC) when omitted. */
  networkData?: string;
}

export interface VmKernelBoot {
  kernel: string;
  initrd?: string;
  cmdline?: string;
}

export interface VmSpec {
  name: string;
  cpu?: { sockets?: number; cores?: number; threads?: number };
  /** Memory in MiB. */
  memory: number;
  machine?: Machine;
  firmware?: Firmware;
  disks?: VmDisk[];
  interfaces?: VmInterface[];
  cloudInit?: VmCloudInit;
  runStrategy?: RunStrategy;
  kernelBoot?: VmKernelBoot;
  /** How long an ACPI shutdown may take before stop forces the domain off. */
  stopGracePeriodSeconds?: number;
}

export interface HostCapacity {
  cpus: number;
  memoryMiB: number;
}

/**
 * vCPUs of one VM may exceed the host's CPUs by this factor: guests rarely keep every vCPU busy, but past
 * 2x a single guest's spinlocks start to stall on descheduled vCPUs, so we refuse beyond it.
 */
export const VCPU_OVERCOMMIT = 2;
/** One VM never gets more memory than the host has: no memory overcommit for a single guest. */
export const MEMORY_MIN_MIB = 16;
export const MAX_DISKS = 16;
export const MAX_INTERFACES = 8;
export const MAX_STOP_GRACE_SECONDS = 3600;
/** Cloud-init documents are files on a small seed ISO; 1 MiB each keeps the ISO and the store small. */
export const MAX_CLOUD_INIT_BYTES = 1 << 20;
export const MAX_DISK_BYTES = 64 * 2 ** 40;

export const DEFAULTS = { machine: 'q35', firmware: 'bios', runStrategy: 'Manual', stopGracePeriodSeconds: 60 } as const;

/** DNS label: the name is the guest's default hostname and part of libvirt's domain name. */
export const VM_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const SHORT_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;
/** C0 controls and DEL; multi-line documents (cloud-init) may keep tab, LF and CR. */
const CONTROL_RE = /[\u0000-\u001f\u007f]/;
const DOC_CONTROL_RE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
/** Lone surrogates and U+FFFE/U+FFFF cannot be encoded in an XML document or a UTF-8 file. */
const NON_XML_RE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]|[\ufffe\uffff]/;
const DOC_POINTERS = new Set(['/cloudInit/userData', '/cloudInit/metaData', '/cloudInit/networkData']);

export function vcpuCount(spec: Pick<VmSpec, 'cpu'>): number {
  return (spec.cpu?.sockets ?? 1) * (spec.cpu?.cores ?? 1) * (spec.cpu?.threads ?? 1);
}

export function isCdrom(d: VmDisk): boolean {
  return d.cdrom !== undefined;
}

export function diskBus(d: VmDisk): DiskBus {
  return d.bus ?? (isCdrom(d) ? 'sata' : 'virtio');
}

export function nicName(n: VmInterface, index: number): string {
  return n.name ?? `net${index}`;
}

function escapePointer(s: string): string {
  return s.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Every string anywhere in the value, with its JSON pointer. */
function* strings(v: unknown, pointer: string): Generator<[string, string]> {
  if (typeof v === 'string') yield [pointer, v];
  else if (Array.isArray(v)) for (let i = 0; i < v.length; i++) yield* strings(v[i], `${pointer}/${i}`);
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) yield* strings(x, `${pointer}/${escapePointer(k)}`);
}

/**
 * All problems with a spec, empty when it is valid. Shape errors the API schema would also catch are
 * checked again here so that no caller (CLI, store migration, tests) can reach libvirt with a bad spec.
 */
export function validateVmSpec(spec: VmSpec, host: HostCapacity): ErrorIssue[] {
  const issues: ErrorIssue[] = [];
  const bad = (pointer: string, reason: string): void => void issues.push({ pointer, reason });
  // Path syntax also refuses control characters, already reported above: one issue per pointer is enough.
  const badPath = (pointer: string, why: string | undefined): void => {
    if (why !== undefined && !issues.some((i) => i.pointer === pointer)) bad(pointer, why);
  };
  const isInt = (v: unknown, min: number, max: number): v is number => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;

  for (const [pointer, s] of strings(spec, '')) {
    if ((DOC_POINTERS.has(pointer) ? DOC_CONTROL_RE : CONTROL_RE).test(s)) bad(pointer, 'must not contain control characters');
    else if (NON_XML_RE.test(s)) bad(pointer, 'must be valid Unicode text (no lone surrogates or non-characters)');
  }

  if (typeof spec.name !== 'string' || !VM_NAME_RE.test(spec.name)) {
    bad('/name', 'must be 1-63 lower-case letters, digits or hyphens, starting and ending with a letter or digit');
  }

  for (const k of ['sockets', 'cores', 'threads'] as const) {
    const v = spec.cpu?.[k];
    if (v !== undefined && !isInt(v, 1, 1024)) bad(`/cpu/${k}`, 'must be an integer from 1 to 1024');
  }
  const vcpus = vcpuCount(spec);
  const maxVcpus = host.cpus * VCPU_OVERCOMMIT;
  if (Number.isSafeInteger(vcpus) && vcpus > maxVcpus) {
    bad('/cpu', `${vcpus} vCPUs exceed this host's limit of ${maxVcpus} (${host.cpus} CPUs x ${VCPU_OVERCOMMIT} overcommit)`);
  }

  if (!isInt(spec.memory, MEMORY_MIN_MIB, Number.MAX_SAFE_INTEGER)) bad('/memory', `must be an integer number of MiB, at least ${MEMORY_MIN_MIB}`);
  else if (spec.memory > host.memoryMiB) bad('/memory', `${spec.memory} MiB exceed this host's ${host.memoryMiB} MiB`);

  if (spec.machine !== undefined && spec.machine !== 'q35' && spec.machine !== 'pc') bad('/machine', "must be 'q35' or 'pc'");
  if (spec.firmware !== undefined && spec.firmware !== 'bios' && spec.firmware !== 'uefi') bad('/firmware', "must be 'bios' or 'uefi'");
  if (spec.runStrategy !== undefined && !['Always', 'RerunOnFailure', 'Manual', 'Halted'].includes(spec.runStrategy)) {
    bad('/runStrategy', 'must be Always, RerunOnFailure, Manual or Halted');
  }
  if (spec.stopGracePeriodSeconds !== undefined && !isInt(spec.stopGracePeriodSeconds, 0, MAX_STOP_GRACE_SECONDS)) {
    bad('/stopGracePeriodSeconds', `must be an integer from 0 to ${MAX_STOP_GRACE_SECONDS}`);
  }

  // Boot orders are shared by disks and NICs in libvirt: a duplicate makes defineDomain fail.
  const bootOrders = new Map<number, string>();
  const takeBootOrder = (pointer: string, order: number | undefined): void => {
    if (order === undefined) return;
    if (!isInt(order, 1, 1000)) return bad(`${pointer}/bootOrder`, 'must be an integer from 1 to 1000');
    const other = bootOrders.get(order);
    if (other !== undefined) return bad(`${pointer}/bootOrder`, `boot order ${order} is already used by ${other}`);
    bootOrders.set(order, pointer);
  };

  const disks = spec.disks ?? [];
  if (!Array.isArray(disks)) bad('/disks', 'must be a list');
  else {
    if (disks.length > MAX_DISKS) bad('/disks', `at most ${MAX_DISKS} disks`);
    const names = new Set<string>();
    disks.forEach((d, i) => {
      const p = `/disks/${i}`;
      if (typeof d?.name !== 'string' || !SHORT_NAME_RE.test(d.name)) bad(`${p}/name`, 'must be 1-32 lower-case letters, digits or hyphens');
      else if (names.has(d.name)) bad(`${p}/name`, `disk name '${d.name}' is used twice`);
      else names.add(d.name);
      const sources = (['image', 'volume', 'host', 'cdrom'] as const).filter((k) => d?.[k] !== undefined);
      if (sources.length !== 1) {
        bad(p, `needs exactly one source of image, volume, host or cdrom (has ${sources.length === 0 ? 'none' : sources.join(', ')})`);
      }
      if (d.bus !== undefined && !['virtio', 'sata', 'scsi'].includes(d.bus)) bad(`${p}/bus`, 'must be virtio, sata or scsi');
      if (isCdrom(d) && d.bus === 'virtio') bad(`${p}/bus`, 'a CD-ROM needs a sata or scsi bus');
      if (isCdrom(d) && d.readonly === false) bad(`${p}/readonly`, 'a CD-ROM is always read-only');
      // QEMU cannot make a SATA (AHCI) hard disk read-only; libvirt refuses the definition.
      if (!isCdrom(d) && d.readonly === true && diskBus(d) === 'sata') bad(`${p}/readonly`, 'a read-only disk needs a virtio or scsi bus (QEMU has no read-only SATA disks)');
      if (d.image && (typeof d.image.name !== 'string' || !SHORT_NAME_RE.test(d.image.name))) bad(`${p}/image/name`, 'must be an image name');
      if (d.cdrom && (typeof d.cdrom.image !== 'string' || !SHORT_NAME_RE.test(d.cdrom.image))) bad(`${p}/cdrom/image`, 'must be an image name');
      if (d.volume) {
        const { fromImage, sizeBytes } = d.volume;
        if (fromImage !== undefined && (typeof fromImage !== 'string' || !SHORT_NAME_RE.test(fromImage))) bad(`${p}/volume/fromImage`, 'must be an image name');
        if (sizeBytes !== undefined && !isInt(sizeBytes, 1 << 20, MAX_DISK_BYTES)) bad(`${p}/volume/sizeBytes`, `must be an integer from 1 MiB to ${MAX_DISK_BYTES}`);
        if (fromImage === undefined && sizeBytes === undefined) bad(`${p}/volume`, 'needs fromImage or sizeBytes');
      }
      if (d.host) {
        // Syntax only here; confinement to the roots (symlinks included) is checked on the host when resolved.
        badPath(`${p}/host/path`, pathSyntaxProblem(d.host.path));
        if (d.host.sizeBytes !== undefined && !isInt(d.host.sizeBytes, 1 << 20, MAX_DISK_BYTES)) bad(`${p}/host/sizeBytes`, `must be an integer from 1 MiB to ${MAX_DISK_BYTES}`);
      }
      takeBootOrder(p, d.bootOrder);
    });
  }

  const nics = spec.interfaces ?? [];
  if (!Array.isArray(nics)) bad('/interfaces', 'must be a list');
  else {
    if (nics.length > MAX_INTERFACES) bad('/interfaces', `at most ${MAX_INTERFACES} interfaces`);
    const names = new Set<string>();
    const macs = new Set<string>();
    nics.forEach((n, i) => {
      const p = `/interfaces/${i}`;
      const name = nicName(n, i);
      if (typeof name !== 'string' || !SHORT_NAME_RE.test(name)) bad(`${p}/name`, 'must be 1-32 lower-case letters, digits or hyphens');
      else if (names.has(name)) bad(`${p}/name`, `interface name '${name}' is used twice`);
      else names.add(name);
      if (typeof n.network !== 'string' || !SHORT_NAME_RE.test(n.network)) bad(`${p}/network`, 'must be a network name');
      if (n.model !== undefined && n.model !== 'virtio' && n.model !== 'e1000') bad(`${p}/model`, 'must be virtio or e1000');
      if (n.mac !== undefined) {
        const bytes = typeof n.mac === 'string' ? parseMac(n.mac) : undefined;
        if (!bytes) bad(`${p}/mac`, 'must be a MAC address (aa:bb:cc:dd:ee:ff)');
        else if (bytes.every((b) => b === 0) || (bytes[0]! & 1) !== 0) bad(`${p}/mac`, 'must be a unicast, non-zero MAC');
        else {
          const canon = bytes.join(':');
          if (macs.has(canon)) bad(`${p}/mac`, 'MAC is used by another interface of this VM');
          macs.add(canon);
        }
      }
      if (n.ip !== undefined && (typeof n.ip !== 'string' || parseIpv4(n.ip) === undefined)) bad(`${p}/ip`, 'must be an IPv4 address');
      takeBootOrder(p, n.bootOrder);
    });
  }

  if (spec.cloudInit !== undefined) {
    for (const k of ['userData', 'metaData', 'networkData'] as const) {
      const v = spec.cloudInit[k];
      if (v === undefined) continue;
      if (typeof v !== 'string') bad(`/cloudInit/${k}`, 'must be a string');
      else if (Buffer.byteLength(v) > MAX_CLOUD_INIT_BYTES) bad(`/cloudInit/${k}`, `must be at most ${MAX_CLOUD_INIT_BYTES} bytes`);
    }
  }

  if (spec.kernelBoot !== undefined) {
    badPath('/kernelBoot/kernel', pathSyntaxProblem(spec.kernelBoot.kernel));
    if (spec.kernelBoot.initrd !== undefined) badPath('/kernelBoot/initrd', pathSyntaxProblem(spec.kernelBoot.initrd));
    if (spec.kernelBoot.cmdline !== undefined && (typeof spec.kernelBoot.cmdline !== 'string' || spec.kernelBoot.cmdline.length > 4096)) {
      bad('/kernelBoot/cmdline', 'must be at most 4096 characters');
    }
  }

  return issues;
}

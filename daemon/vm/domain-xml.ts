// Pure: a validated VmSpec plus host-resolved facts (paths, taps, MACs, sockets) -> libvirt domain XML.
// Nothing here touches the host; every value that came from a user goes through escapeXml.
import { AppError } from '../lib/errors.js';
import { escapeXml as e } from '../libvirt/xml.js';
import { DEFAULTS, diskBus, isCdrom, nicName, vcpuCount, type NicModel, type RunStrategy, type VmSpec } from './vm-model.js';

/** Our XML namespace for <metadata>: lets the reconciler read back which spec generation a domain runs. */
export const NODEVIRT_XMLNS = 'https://nodevirt.dev/xmlns/domain/1';
export const NODEVIRT_XML_PREFIX = 'nodevirt';

export type DiskFormat = 'raw' | 'qcow2';

export interface DomainXmlContext {
  domainName: string;
  uuid: string;
  virtType: 'kvm' | 'qemu';
  emulator: string;
  /** Spec generation recorded in <metadata>. */
  generation: number;
  /** Resolved backing file of each spec disk, by disk name. */
  disks: Record<string, { path: string; format: DiskFormat }>;
  /** One entry per spec interface, same order. */
  nics: Array<{ tap: string; mac: string; model: NicModel }>;
  /** libvirt creates this one itself (and passes QEMU the listening fd). */
  serialSocket: string;
  /**
   * QEMU binds this one itself, as libvirt's qemu user: its directory must be writable by that user. Absent:
   * libvirt picks a socket in its own per-domain directory, readable back from the live XML.
   */
  vncSocket?: string;
  /** The NoCloud seed ISO, attached as an extra read-only CD-ROM. */
  cloudInitIso?: string;
  /**
   * Present only when OVMF is installed (vm/firmware.ts); required for firmware 'uefi'. Without `nvram`
   * libvirt keeps the domain's variables in its own directory and deletes them on undefine.
   */
  ovmf?: { code: string; varsTemplate: string; nvram?: string };
  /** Resolved (confined) paths for direct kernel boot; the command line comes from the spec. */
  kernelBoot?: { kernel: string; initrd?: string };
}

/** What libvirt itself does on guest events; restarts after a stop or crash are the reconciler's job. */
export function lifecycleActions(strategy: RunStrategy): { onPoweroff: string; onReboot: string; onCrash: string } {
  // A crash must end the domain so the reconciler sees it (and restarts for RerunOnFailure/Always);
  // a Halted VM should not come back even when the guest asks for a reboot.
  return { onPoweroff: 'destroy', onReboot: strategy === 'Halted' ? 'destroy' : 'restart', onCrash: 'destroy' };
}

function targetNames(spec: VmSpec, withSeed: boolean): { disks: string[]; seed: string | undefined } {
  // virtio disks are vdX; sata and scsi share the sdX namespace in libvirt.
  let vd = 0;
  let sd = 0;
  const letter = (n: number): string => (n < 26 ? String.fromCharCode(97 + n) : letter(Math.floor(n / 26) - 1) + String.fromCharCode(97 + (n % 26)));
  const disks = (spec.disks ?? []).map((d) => (diskBus(d) === 'virtio' ? `vd${letter(vd++)}` : `sd${letter(sd++)}`));
  return { disks, seed: withSeed ? `sd${letter(sd++)}` : undefined };
}

export function buildDomainXml(spec: VmSpec, ctx: DomainXmlContext): string {
  const machine = spec.machine ?? DEFAULTS.machine;
  const firmware = spec.firmware ?? DEFAULTS.firmware;
  const runStrategy = spec.runStrategy ?? DEFAULTS.runStrategy;
  if (firmware === 'uefi' && !ctx.ovmf) throw new AppError('FIRMWARE_INVALID', 'firmware uefi needs OVMF, which is not installed on this host');
  const disks = spec.disks ?? [];
  const nics = spec.interfaces ?? [];
  if (nics.length !== ctx.nics.length) throw new Error(`domain XML: ${nics.length} interfaces in the spec but ${ctx.nics.length} resolved`);
  const targets = targetNames(spec, ctx.cloudInitIso !== undefined);
  const cpu = { sockets: spec.cpu?.sockets ?? 1, cores: spec.cpu?.cores ?? 1, threads: spec.cpu?.threads ?? 1 };
  const actions = lifecycleActions(runStrategy);
  const out: string[] = [];
  const add = (indent: number, line: string): void => void out.push(' '.repeat(indent) + line);

  add(0, `<domain type='${ctx.virtType === 'kvm' ? 'kvm' : 'qemu'}'>`);
  add(2, `<name>${e(ctx.domainName)}</name>`);
  add(2, `<uuid>${e(ctx.uuid)}</uuid>`);
  add(2, '<metadata>');
  add(4, `<${NODEVIRT_XML_PREFIX}:vm xmlns:${NODEVIRT_XML_PREFIX}='${NODEVIRT_XMLNS}'>`);
  add(6, `<${NODEVIRT_XML_PREFIX}:name>${e(spec.name)}</${NODEVIRT_XML_PREFIX}:name>`);
  add(6, `<${NODEVIRT_XML_PREFIX}:generation>${e(ctx.generation)}</${NODEVIRT_XML_PREFIX}:generation>`);
  add(4, `</${NODEVIRT_XML_PREFIX}:vm>`);
  add(2, '</metadata>');
  add(2, `<memory unit='MiB'>${e(spec.memory)}</memory>`);
  add(2, `<vcpu placement='static'>${e(vcpuCount(spec))}</vcpu>`);
  const topology = `<topology sockets='${e(cpu.sockets)}' dies='1' cores='${e(cpu.cores)}' threads='${e(cpu.threads)}'/>`;
  // host-passthrough needs hardware virtualisation; under TCG QEMU's default model is used.
  if (ctx.virtType === 'kvm') add(2, `<cpu mode='host-passthrough' check='none' migratable='on'>${topology}</cpu>`);
  else add(2, `<cpu>${topology}</cpu>`);

  add(2, '<os>');
  add(4, `<type arch='x86_64' machine='${machine}'>hvm</type>`);
  if (firmware === 'uefi' && ctx.ovmf) {
    add(4, `<loader readonly='yes' type='pflash'>${e(ctx.ovmf.code)}</loader>`);
    if (ctx.ovmf.nvram !== undefined) add(4, `<nvram template='${e(ctx.ovmf.varsTemplate)}'>${e(ctx.ovmf.nvram)}</nvram>`);
    else add(4, `<nvram template='${e(ctx.ovmf.varsTemplate)}'/>`);
  }
  if (spec.kernelBoot && ctx.kernelBoot) {
    add(4, `<kernel>${e(ctx.kernelBoot.kernel)}</kernel>`);
    if (ctx.kernelBoot.initrd !== undefined) add(4, `<initrd>${e(ctx.kernelBoot.initrd)}</initrd>`);
    if (spec.kernelBoot.cmdline !== undefined) add(4, `<cmdline>${e(spec.kernelBoot.cmdline)}</cmdline>`);
  } else if (spec.kernelBoot) {
    throw new Error('domain XML: kernelBoot in the spec but no resolved kernel path');
  }
  add(2, '</os>');
  // Without ACPI `poweroff` only halts the CPU and an ACPI shutdown request is ignored (test/guest/README.md).
  add(2, '<features><acpi/></features>');
  add(2, "<clock offset='utc'/>");
  add(2, `<on_poweroff>${actions.onPoweroff}</on_poweroff>`);
  add(2, `<on_reboot>${actions.onReboot}</on_reboot>`);
  add(2, `<on_crash>${actions.onCrash}</on_crash>`);

  add(2, '<devices>');
  add(4, `<emulator>${e(ctx.emulator)}</emulator>`);
  disks.forEach((d, i) => {
    const resolved = ctx.disks[d.name];
    if (!resolved) throw new Error(`domain XML: disk ${d.name} has no resolved path`);
    const cdrom = isCdrom(d);
    add(4, `<disk type='file' device='${cdrom ? 'cdrom' : 'disk'}'>`);
    add(6, `<driver name='qemu' type='${resolved.format}'${cdrom ? '' : " discard='unmap'"}/>`);
    add(6, `<source file='${e(resolved.path)}'/>`);
    add(6, `<target dev='${targets.disks[i]}' bus='${diskBus(d)}'/>`);
    if (d.bootOrder !== undefined) add(6, `<boot order='${e(d.bootOrder)}'/>`);
    if (cdrom || d.readonly) add(6, '<readonly/>');
    // Shows up as /dev/disk/by-id/*-<name> in the guest; CD-ROMs have no serial in libvirt's schema for sata.
    if (!cdrom) add(6, `<serial>${e(d.name)}</serial>`);
    add(6, `<alias name='ua-disk-${e(d.name)}'/>`);
    add(4, '</disk>');
  });
  if (ctx.cloudInitIso !== undefined) {
    add(4, "<disk type='file' device='cdrom'>");
    add(6, "<driver name='qemu' type='raw'/>");
    add(6, `<source file='${e(ctx.cloudInitIso)}'/>`);
    add(6, `<target dev='${targets.seed}' bus='sata'/>`);
    add(6, '<readonly/>');
    add(6, "<alias name='ua-cloudinit'/>");
    add(4, '</disk>');
  }
  if (disks.some((d) => diskBus(d) === 'scsi')) add(4, "<controller type='scsi' index='0' model='virtio-scsi'/>");
  nics.forEach((n, i) => {
    const r = ctx.nics[i]!;
    add(4, "<interface type='ethernet'>");
    add(6, `<mac address='${e(r.mac)}'/>`);
    // managed='no': the tap is ours (plumbed with its guard rules before start); libvirt must not create or delete it.
    add(6, `<target dev='${e(r.tap)}' managed='no'/>`);
    add(6, `<model type='${r.model}'/>`);
    if (n.bootOrder !== undefined) add(6, `<boot order='${e(n.bootOrder)}'/>`);
    add(6, `<alias name='ua-nic-${e(nicName(n, i))}'/>`);
    add(4, '</interface>');
  });
  add(4, "<serial type='unix'>");
  add(6, `<source mode='bind' path='${e(ctx.serialSocket)}'/>`);
  add(6, "<target port='0'/>");
  add(4, '</serial>');
  add(4, "<console type='unix'>");
  add(6, `<source mode='bind' path='${e(ctx.serialSocket)}'/>`);
  add(6, "<target type='serial' port='0'/>");
  add(4, '</console>');
  add(4, "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>");
  if (ctx.vncSocket !== undefined) add(4, `<graphics type='vnc' socket='${e(ctx.vncSocket)}'/>`);
  else add(4, "<graphics type='vnc'><listen type='socket'/></graphics>");
  add(4, "<video><model type='vga'/></video>");
  add(4, "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>");
  add(4, "<memballoon model='none'/>");
  add(2, '</devices>');
  add(0, '</domain>');
  return out.join('\n') + '\n';
}

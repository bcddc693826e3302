// Builds the small TCG domains the libvirt tests use (pure; every value escaped): no disk, optional direct
// kernel boot and a serial console on a unix socket. Names carry the `nvtest-` prefix so cleanup can find them.
import { randomBytes } from 'node:crypto';
import { escapeXml } from '../../daemon/libvirt/xml.js';

export const TEST_DOMAIN_PREFIX = 'nvtest-';

export interface TestDomainSpec {
  name: string;
  uuid?: string;
  memoryMiB?: number;
  machine?: 'pc' | 'q35';
  /** Direct kernel boot: kernel + initrd paths and the command line. */
  kernel?: { path: string; initrd?: string; cmdline?: string };
  /** Path of a unix socket libvirt binds for the first serial port (also the console). */
  serialSocket?: string;
}

/** A fresh unique name, e.g. nvtest-3f9a1c-boot. */
export function testDomainName(label: string): string {
  return `${TEST_DOMAIN_PREFIX}${randomBytes(3).toString('hex')}-${label}`;
}

export function testDomainXml(spec: TestDomainSpec): string {
  const e = escapeXml;
  const lines = [
    "<domain type='qemu'>",
    `  <name>${e(spec.name)}</name>`,
    ...(spec.uuid ? [`  <uuid>${e(spec.uuid)}</uuid>`] : []),
    `  <memory unit='MiB'>${e(spec.memoryMiB ?? 64)}</memory>`,
    '  <vcpu>1</vcpu>',
    '  <os>',
    `    <type arch='x86_64' machine='${e(spec.machine ?? 'pc')}'>hvm</type>`,
    ...(spec.kernel
      ? [
          `    <kernel>${e(spec.kernel.path)}</kernel>`,
          ...(spec.kernel.initrd ? [`    <initrd>${e(spec.kernel.initrd)}</initrd>`] : []),
          ...(spec.kernel.cmdline ? [`    <cmdline>${e(spec.kernel.cmdline)}</cmdline>`] : []),
        ]
      : []),
    '  </os>',
    '  <features><acpi/></features>',
    '  <on_poweroff>destroy</on_poweroff>',
    '  <on_reboot>restart</on_reboot>',
    '  <on_crash>destroy</on_crash>',
    '  <devices>',
    ...(spec.serialSocket
      ? [
          `    <serial type='unix'><source mode='bind' path='${e(spec.serialSocket)}'/><target port='0'/></serial>`,
          `    <console type='unix'><source mode='bind' path='${e(spec.serialSocket)}'/><target type='serial' port='0'/></console>`,
        ]
      : []),
    "    <memballoon model='none'/>",
    '  </devices>',
    '</domain>',
    '',
  ];
  return lines.join('\n');
}

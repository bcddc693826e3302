// Finds OVMF (UEFI for x86_64 guests) where distributions install it; firmware 'uefi' is offered only when found.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export interface OvmfFiles {
  /** Read-only firmware code (pflash unit 0). */
  code: string;
  /** Template libvirt copies into each domain's own NVRAM file on first start. */
  varsTemplate: string;
}

/** Non-secure-boot builds first: secure-boot code needs SMM and enrolled keys, which we do not configure. */
const CANDIDATES: ReadonlyArray<[string, string, string]> = [
  ['/usr/share/OVMF', 'OVMF_CODE_4M.fd', 'OVMF_VARS_4M.fd'], // Debian 12, Ubuntu 22.04+
  ['/usr/share/OVMF', 'OVMF_CODE.fd', 'OVMF_VARS.fd'], // older Debian/Ubuntu
  ['/usr/share/edk2/ovmf', 'OVMF_CODE.fd', 'OVMF_VARS.fd'], // Fedora, RHEL
  ['/usr/share/edk2/x64', 'OVMF_CODE.4m.fd', 'OVMF_VARS.4m.fd'], // Arch
];

export function findOvmf(exists: (path: string) => boolean = existsSync): OvmfFiles | undefined {
  for (const [dir, code, vars] of CANDIDATES) {
    if (exists(join(dir, code)) && exists(join(dir, vars))) return { code: join(dir, code), varsTemplate: join(dir, vars) };
  }
  return undefined;
}

// OVMF discovery order over a fake file system.
import { describe, expect, it } from 'vitest';
import { findOvmf } from '../../../daemon/vm/firmware.js';

describe('findOvmf', () => {
  it('prefers the 4M non-secure-boot pair and needs both files of a pair', () => {
    const fs = (files: string[]) => (p: string) => files.includes(p);
    expect(findOvmf(fs([]))).toBeUndefined();
    expect(findOvmf(fs(['/usr/share/OVMF/OVMF_CODE_4M.fd']))).toBeUndefined();
    expect(findOvmf(fs(['/usr/share/OVMF/OVMF_CODE.fd', '/usr/share/OVMF/OVMF_VARS.fd', '/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_VARS_4M.fd']))).toEqual({
      code: '/usr/share/OVMF/OVMF_CODE_4M.fd',
      varsTemplate: '/usr/share/OVMF/OVMF_VARS_4M.fd',
    });
    expect(findOvmf(fs(['/usr/share/edk2/ovmf/OVMF_CODE.fd', '/usr/share/edk2/ovmf/OVMF_VARS.fd']))?.code).toBe('/usr/share/edk2/ovmf/OVMF_CODE.fd');
  });
});

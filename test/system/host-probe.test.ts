// The probe against this very host: facts must be real and the feature probes must leave nothing behind.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createHostProbe } from '../../daemon/host/host-probe.js';
import { decideVirtType } from '../../daemon/node/host-checks.js';

describe('host probe on the real host', () => {
  it('reads facts and probes kernel features in a throwaway namespace', async () => {
    const before = execFileSync('ip', ['-o', 'link']).toString();
    const f = await createHostProbe().facts();
    expect(f.cpu.count).toBeGreaterThanOrEqual(1);
    expect(f.memory.totalBytes).toBeGreaterThan(f.memory.availableBytes);
    expect(f.kernel.release).toBe(execFileSync('uname', ['-r']).toString().trim());
    // Bridges and veth work on every host nodevirt supports; the probe must have created them for real.
    expect(f.net.bridge).toEqual({ ok: true });
    expect(f.net.veth).toEqual({ ok: true });
    expect(f.net.nftables).toEqual({ ok: true });
    const cpuHasVirt = /\b(vmx|svm)\b/.test(execFileSync('cat', ['/proc/cpuinfo']).toString());
    const d = decideVirtType(f, 'auto');
    if (!cpuHasVirt) expect(d.virtType).toBe('qemu');
    // Nothing leaked into the host namespace.
    expect(execFileSync('ip', ['-o', 'link']).toString()).toBe(before);
  });
});

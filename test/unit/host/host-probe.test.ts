import { describe, expect, it } from 'vitest';
import { parseCpuinfo, parseMeminfo, parseNetProbe } from '../../../daemon/host/host-probe.js';

describe('host probe parsers', () => {
  it('cpuinfo: model and virtualization flag', () => {
    expect(parseCpuinfo('processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu vme svm sse\n')).toEqual({ model: 'AMD EPYC 7B13', virtualizationFlag: 'svm' });
    expect(parseCpuinfo('model name : Intel\nflags : fpu vmx\n').virtualizationFlag).toBe('vmx');
    expect(parseCpuinfo('flags : fpu sse\n')).toEqual({ model: 'unknown', virtualizationFlag: 'none' });
    // "svm" must match a whole flag, not a substring such as "nosvmx".
    expect(parseCpuinfo('flags : fpu nosvmx\n').virtualizationFlag).toBe('none');
  });
  it('meminfo in bytes', () => {
    expect(parseMeminfo('MemTotal:       2048 kB\nMemFree: 10 kB\nMemAvailable:   1024 kB\n')).toEqual({ totalBytes: 2048 * 1024, availableBytes: 1024 * 1024 });
  });
  it('net probe lines, unknown lines ignored, missing keys reported', () => {
    const net = parseNetProbe('bridge ok\nvlan8021q fail Error: Unknown device type.\ngarbage\nnftables ok\n');
    expect(net.bridge).toEqual({ ok: true });
    expect(net.vlan8021q).toEqual({ ok: false, detail: 'Error: Unknown device type.' });
    expect(net.nftables.ok).toBe(true);
    expect(net.vxlan).toEqual({ ok: false, detail: 'not probed' });
  });
});

// Pure pieces of the adapter: backoff, libvirt enums, error translation, path/version decoding, test XML.
import { describe, expect, it } from 'vitest';
import { DBusError } from 'dbus-next';
import { createBackoff } from '../../../daemon/libvirt/backoff.js';
import { formatLibvirtVersion, uuidFromDomainPath } from '../../../daemon/libvirt/client.js';
import { decodeDomainEvent, decodeDomainState } from '../../../daemon/libvirt/enums.js';
import { translateError } from '../../../daemon/libvirt/libvirt-errors.js';
import { AppError } from '../../../daemon/lib/errors.js';
import { child, parseXml } from '../../../daemon/libvirt/xml.js';
import { testDomainXml } from '../../contract/test-domain.js';

describe('backoff', () => {
  it('grows by the factor up to the cap, jitters downwards, and resets', () => {
    const b = createBackoff({ initialMs: 100, maxMs: 1_000, factor: 2, jitter: 0.5 }, () => 0);
    expect(Array.from({ length: 6 }, () => b.next())).toEqual([100, 200, 400, 800, 1000, 1000]);
    b.reset();
    expect(b.next()).toBe(100);
    const j = createBackoff({ initialMs: 100, maxMs: 1_000, jitter: 0.5 }, () => 1);
    expect(j.next()).toBe(50);
  });

  it('rejects nonsensical settings', () => {
    expect(() => createBackoff({ initialMs: 0 })).toThrow(RangeError);
    expect(() => createBackoff({ initialMs: 500, maxMs: 100 })).toThrow(RangeError);
  });
});

describe('libvirt enums', () => {
  it('decodes lifecycle events with their typed details', () => {
    expect(decodeDomainEvent(0, 0)).toEqual({ event: 'defined', detail: 'added' });
    expect(decodeDomainEvent(2, 0)).toEqual({ event: 'started', detail: 'booted' });
    expect(decodeDomainEvent(5, 1)).toEqual({ event: 'stopped', detail: 'destroyed' });
    expect(decodeDomainEvent(5, 5)).toEqual({ event: 'stopped', detail: 'failed' });
    expect(decodeDomainEvent(6, 2)).toEqual({ event: 'shutdown', detail: 'host' });
    expect(decodeDomainEvent(8, 0)).toEqual({ event: 'crashed', detail: 'panicked' });
    expect(decodeDomainEvent(5, 99)).toEqual({ event: 'stopped', detail: 'unknown' });
    expect(decodeDomainEvent(42, 0)).toBeUndefined();
  });

  it('decodes domain states', () => {
    expect([0, 1, 3, 5, 7, 99].map(decodeDomainState)).toEqual(['nostate', 'running', 'paused', 'shutoff', 'pmsuspended', 'nostate']);
  });
});

describe('translateError', () => {
  const libvirt = (text: string) => new DBusError('org.libvirt.Error', text);
  it.each([
    [libvirt("Domain not found: no domain with matching name 'x'"), 'DOMAIN_NOT_FOUND'],
    [libvirt('Requested operation is not valid: domain is already running'), 'LIBVIRT_ERROR'],
    [libvirt("Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory"), 'LIBVIRT_UNAVAILABLE'],
    [libvirt('internal error: client socket is closed'), 'LIBVIRT_UNAVAILABLE'],
    [new DBusError('org.freedesktop.DBus.Error.ServiceUnknown', 'The name org.libvirt was not provided'), 'LIBVIRT_UNAVAILABLE'],
    [new DBusError('org.freedesktop.DBus.Error.NoReply', 'recipient disconnected'), 'LIBVIRT_UNAVAILABLE'],
    [new DBusError('org.freedesktop.DBus.Error.AccessDenied', 'nope'), 'LIBVIRT_ERROR'],
  ])('%s -> %s', (err, code) => {
    const out = translateError(err, 'Op');
    expect(out).toBeInstanceOf(AppError);
    expect((out as AppError).code).toBe(code);
    expect(out.message).toContain(err.text);
  });

  it('passes AppErrors and bugs through unchanged', () => {
    const app = new AppError('DOMAIN_NOT_FOUND');
    const bug = new TypeError('bad marshalling');
    expect(translateError(app, 'Op')).toBe(app);
    expect(translateError(bug, 'Op')).toBe(bug);
  });
});

describe('client helpers', () => {
  it('reads the uuid from a libvirt-dbus domain path', () => {
    expect(uuidFromDomainPath('/org/libvirt/QEMU/domain/_0a17e08a_06b2_4f5a_a40f_09f1bef8222e')).toBe('0a17e08a-06b2-4f5a-a40f-09f1bef8222e');
    expect(uuidFromDomainPath('/org/libvirt/QEMU')).toBeUndefined();
  });

  it('formats packed libvirt versions', () => {
    expect(formatLibvirtVersion(9000000n)).toBe('9.0.0');
    expect(formatLibvirtVersion(7002022n)).toBe('7.2.22');
    expect(formatLibvirtVersion(10_010_001)).toBe('10.10.1');
  });
});

describe('testDomainXml', () => {
  it('escapes every value', () => {
    const xml = testDomainXml({
      name: `nvtest-<&'">`,
      kernel: { path: "/k'ern<el", initrd: '/i&d', cmdline: `console=ttyS0 x="<y>"` },
      serialSocket: "/run/nodevirt/a'b.serial",
    });
    const dom = parseXml(xml);
    expect(child(dom, 'name')?.text).toBe(`nvtest-<&'">`);
    const os = child(dom, 'os')!;
    expect(child(os, 'kernel')?.text).toBe("/k'ern<el");
    expect(child(os, 'cmdline')?.text).toBe(`console=ttyS0 x="<y>"`);
    const serial = child(child(dom, 'devices')!, 'serial')!;
    expect(child(serial, 'source')?.attrs.path).toBe("/run/nodevirt/a'b.serial");
  });
});

// bindInterface turns generated spec tables into calls with the right signatures and reply shapes.
import { describe, expect, it } from 'vitest';
import { Variant } from 'dbus-next';
import { bindInterface, countTypes, isSignal, unwrapVariant, type DBusCaller } from '../../../daemon/libvirt/dbus-bind.js';
import { ConnectSpec, DomainSpec } from '../../../daemon/libvirt/generated/index.js';

function recordingCaller(replies: Record<string, unknown[]>): { caller: DBusCaller; calls: unknown[][] } {
  const calls: unknown[][] = [];
  return {
    calls,
    caller: {
      async call(path, iface, member, signature, body) {
        calls.push([path, iface, member, signature, body]);
        return replies[member] ?? [];
      },
    },
  };
}

describe('dbus-bind', () => {
  it('counts complete types', () => {
    expect(['', 's', 'as', 'a{sv}u', '(ii)', 'a(sa{sv})', 'sst', 'aab'].map(countTypes)).toEqual([0, 1, 1, 2, 1, 1, 3, 1]);
  });

  it('unwraps nested variants (libvirt-dbus GetAll wraps twice)', () => {
    expect(unwrapVariant(new Variant('v', new Variant('t', 9000000n)))).toBe(9000000n);
    expect(unwrapVariant('plain')).toBe('plain');
  });

  it('calls methods with the generated signatures and shapes replies', async () => {
    const { caller, calls } = recordingCaller({ GetState: [[1, 1]], Create: [], DomainLookupByName: ['/org/libvirt/QEMU/domain/_x'] });
    const dom = bindInterface(caller, '/org/libvirt/QEMU/domain/_x', DomainSpec);
    expect(await dom.GetState(0)).toEqual([1, 1]);
    expect(await dom.Create(0)).toBeUndefined();
    const conn = bindInterface(caller, '/org/libvirt/QEMU', ConnectSpec);
    expect(await conn.DomainLookupByName('vm')).toBe('/org/libvirt/QEMU/domain/_x');
    expect(calls).toEqual([
      ['/org/libvirt/QEMU/domain/_x', 'org.libvirt.Domain', 'GetState', 'u', [0]],
      ['/org/libvirt/QEMU/domain/_x', 'org.libvirt.Domain', 'Create', 'u', [0]],
      ['/org/libvirt/QEMU', 'org.libvirt.Connect', 'DomainLookupByName', 's', ['vm']],
    ]);
  });

  it('reads properties through org.freedesktop.DBus.Properties', async () => {
    const { caller, calls } = recordingCaller({
      Get: [new Variant('t', 9000000n)],
      GetAll: [{ LibVersion: new Variant('v', new Variant('t', 9000000n)), Hostname: new Variant('s', 'h') }],
    });
    const conn = bindInterface(caller, '/org/libvirt/QEMU', ConnectSpec);
    expect(await conn.getProperty('LibVersion')).toBe(9000000n);
    expect(await conn.getAllProperties()).toEqual({ LibVersion: 9000000n, Hostname: 'h' });
    expect(calls[0]).toEqual(['/org/libvirt/QEMU', 'org.freedesktop.DBus.Properties', 'Get', 'ss', ['org.libvirt.Connect', 'LibVersion']]);
  });

  it('recognises a signal only with the expected interface, member and signature', () => {
    const body: unknown[] = ['/p', 0, 0];
    expect(isSignal(ConnectSpec, 'DomainEvent', 'org.libvirt.Connect', 'DomainEvent', 'oii', body)).toBe(true);
    expect(isSignal(ConnectSpec, 'DomainEvent', 'org.libvirt.Connect', 'DomainEvent', 'oi', body)).toBe(false);
    expect(isSignal(ConnectSpec, 'DomainEvent', 'org.libvirt.Domain', 'DomainEvent', 'oii', body)).toBe(false);
  });
});

// systemd/setup.sh on this host: refuses non-root, a repeated run changes nothing and leaves the running
// libvirt stack (the same processes) answering, and the example config is valid with every key enabled.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_CONFIG, resolveConfig } from '../../daemon/config/config.js';

const repo = resolve(import.meta.dirname, '../..');
const setup = resolve(repo, 'systemd/setup.sh');

function run(args: string[] = [], asNobody = false) {
  const cmd = asNobody ? 'setpriv' : 'bash';
  const argv = asNobody ? ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'bash', setup, ...args] : [setup, ...args];
  return spawnSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CI: 'true' } });
}

function libvirtDbusOwner(): string {
  return execFileSync('dbus-send', ['--system', '--print-reply=literal', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus',
    'org.freedesktop.DBus.GetConnectionUnixProcessID', 'string:org.libvirt'], { encoding: 'utf8' }).trim();
}

describe('systemd/setup.sh', () => {
  it('refuses to run as a non-root user, saying why', () => {
    const r = run([], true);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/^setup: error: must run as root/m);
    expect(r.stdout).toBe('');
  });

  it('is idempotent: a second run starts and installs nothing and the same daemons keep answering', () => {
    const first = run();
    expect(first.status, first.stderr).toBe(0);
    const libvirtd = readFileSync('/run/libvirtd.pid', 'utf8').trim();
    const dbus = readFileSync('/run/dbus/pid', 'utf8').trim();
    const owner = libvirtDbusOwner();

    const second = run();
    expect(second.status, second.stderr).toBe(0);
    expect(second.stderr).not.toMatch(/installing|starting|restarting|created|installed|npm ci|native/);
    expect(second.stderr).toMatch(/^setup: done in \d+ ms$/m);
    expect(readFileSync('/run/libvirtd.pid', 'utf8').trim()).toBe(libvirtd);
    expect(readFileSync('/run/dbus/pid', 'utf8').trim()).toBe(dbus);
    expect(libvirtDbusOwner()).toBe(owner);

    expect(execFileSync('virsh', ['-c', 'qemu:///system', 'version'], { encoding: 'utf8' })).toMatch(/Running hypervisor: QEMU/);
    const version = execFileSync('dbus-send', ['--system', '--print-reply=literal', '--dest=org.libvirt', '/org/libvirt/QEMU',
      'org.freedesktop.DBus.Properties.Get', 'string:org.libvirt.Connect', 'string:LibVersion'], { encoding: 'utf8' });
    expect(version).toMatch(/uint64 \d+/);
    for (const group of ['nodevirt', 'kvm', 'libvirt']) {
      expect(spawnSync('getent', ['group', group]).status, group).toBe(0);
    }
  });

  it('starts a dead stack from scratch, once each (private mount, pid and net namespaces; stale pid files)', () => {
    // Fresh /run and empty libvirt state dirs so nothing here touches the host's running stack or its domains;
    // the pid files name processes that do not exist, as after a crash.
    const script = `set -e
      mount -t tmpfs tmpfs /run
      mount -t tmpfs tmpfs /var/lib/libvirt
      mount -t tmpfs tmpfs /etc/libvirt/qemu
      mkdir -p /run/dbus
      echo 999999 >/run/dbus/pid; echo 999998 >/run/libvirtd.pid; echo 999997 >/run/virtlogd.pid
      bash "$1" --host-only
      echo ===
      ps -eo user:20,comm --no-headers
      echo ===
      virsh -c qemu:///system version
      dbus-send --system --print-reply=literal --dest=org.libvirt /org/libvirt/QEMU \
        org.freedesktop.DBus.Properties.Get string:org.libvirt.Connect string:LibVersion
      echo ===
      bash "$1" --host-only`;
    const r = spawnSync('unshare', ['--mount', '--pid', '--net', '--fork', '--mount-proc', 'bash', '-c', script, '_', setup], {
      encoding: 'utf8',
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const [, ps, probes] = r.stdout.split('===\n');
    const procs = ps!.trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));
    for (const p of ['messagebus dbus-daemon', 'root virtlogd', 'root libvirtd', 'root libvirt-dbus']) {
      expect(procs.filter((x) => x === p), p).toHaveLength(1);
    }
    expect(procs.filter((x) => x.endsWith('libvirt-dbus'))).toHaveLength(1);
    expect(probes).toMatch(/Running hypervisor: QEMU/);
    expect(probes).toMatch(/uint64 \d+/);
    const runs = r.stderr.split(/^setup: done in \d+ ms$/m);
    expect(runs).toHaveLength(3);
    for (const s of ['dbus-daemon', 'virtlogd', 'libvirtd', 'libvirt-dbus']) expect(runs[0]).toContain(`setup: starting ${s}`);
    expect(runs[1]!.trim()).toBe('');
  });

  it('ships an example config whose every key, once uncommented, is valid and spells the defaults', () => {
    const example = readFileSync(resolve(repo, 'systemd/config.example.yaml'), 'utf8');
    // As shipped everything is commented out: the daemon runs on defaults.
    expect(parseYaml(example)).toBeNull();
    const enabled = example
      .split('\n')
      .map((l) => l.replace(/^#(\s*[A-Za-z][\w]*:)/, '$1'))
      .join('\n');
    const file = parseYaml(enabled) as Record<string, unknown>;
    expect(Object.keys(file).sort()).toEqual(['api', 'dhcp', 'libvirt', 'logLevel', 'stateDir', 'virtType']);
    const config = resolveConfig(file, {});
    const { tcp, ...api } = config.api;
    // Optional listeners (TCP, DHCP relay) are off by default; the example shows how to turn them on.
    expect({ ...config, api, dhcp: {} }).toEqual({ ...DEFAULT_CONFIG, libvirt: { ...DEFAULT_CONFIG.libvirt, busAddress: 'unix:path=/run/dbus/system_bus_socket' } });
    expect(tcp).toEqual({ host: '127.0.0.1', port: 8006 });
    expect(config.dhcp.relay).toEqual({ address: '127.0.0.1', port: 67 });
  });
});

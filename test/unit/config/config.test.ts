import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, loadConfig, resolveConfig } from '../../../daemon/config/config.js';
import { isAppError } from '../../../daemon/lib/errors.js';

describe('config', () => {
  it('defaults when the default file is absent', async () => {
    const { config, source } = await loadConfig({ env: {} , path: undefined });
    // /etc/nodevirt/config.yaml may exist on a set-up host; only assert shape then.
    if (source === null) expect(config).toEqual(DEFAULT_CONFIG);
    expect(config.api.unixSocket.path).toMatch(/^\//);
  });

  it('an explicit path that does not exist is an error', async () => {
    await expect(loadConfig({ path: '/nonexistent/nodevirt.yaml', env: {} })).rejects.toThrow(/cannot read config/);
  });

  it('reads YAML and converts the socket mode from octal', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nvcfg-'));
    const path = join(dir, 'c.yaml');
    await writeFile(path, 'stateDir: /srv/nv\napi:\n  unixSocket: { mode: "0600", group: wheel }\n  tcp: { host: 127.0.0.1, port: 8443 }\nvirtType: qemu\n');
    const { config, source } = await loadConfig({ path, env: {} });
    expect(source).toBe(path);
    expect(config.stateDir).toBe('/srv/nv');
    expect(config.api.unixSocket).toEqual({ path: DEFAULT_CONFIG.api.unixSocket.path, mode: 0o600, group: 'wheel' });
    expect(config.api.tcp).toEqual({ host: '127.0.0.1', port: 8443 });
    expect(config.virtType).toBe('qemu');
  });

  it('environment overrides the file', () => {
    const c = resolveConfig({ stateDir: '/a', virtType: 'kvm' }, { NODEVIRT_STATE_DIR: '/b', NODEVIRT_TCP: '[::1]:9000', NODEVIRT_VIRT_TYPE: 'qemu', NODEVIRT_BUS_ADDRESS: 'unix:path=/x' });
    expect(c.stateDir).toBe('/b');
    expect(c.api.tcp).toEqual({ host: '::1', port: 9000 });
    expect(c.virtType).toBe('qemu');
    expect(c.libvirt.busAddress).toBe('unix:path=/x');
  });

  it('NODEVIRT_TCP=off removes a configured TCP listener', () => {
    const c = resolveConfig({ api: { tcp: { port: 80 } } }, { NODEVIRT_TCP: 'off' });
    expect(c.api.tcp).toBeUndefined();
  });

  it('reports every invalid key with its path', () => {
    try {
      resolveConfig({ stateDir: 'relative', api: { tcp: { port: 70000 } }, virtTyp: 'kvm' }, {});
      expect.unreachable();
    } catch (e) {
      expect(isAppError(e, 'CONFIG_INVALID')).toBe(true);
      const msg = (e as Error).message;
      expect(msg).toContain('/stateDir');
      expect(msg).toContain('/api/tcp/port');
      expect(msg).toContain('unknown key "virtTyp"');
    }
  });

  it('rejects a malformed NODEVIRT_TCP and a bad virtType from the environment, naming the variable and the choices', () => {
    expect(() => resolveConfig({}, { NODEVIRT_TCP: 'nonsense' })).toThrow(/NODEVIRT_TCP/);
    expect(() => resolveConfig({}, { NODEVIRT_VIRT_TYPE: 'xen' })).toThrow('/virtType: must be one of "auto", "kvm", "qemu" (set by NODEVIRT_VIRT_TYPE="xen")');
    expect(resolveConfig({}, { NODEVIRT_TCP: ':8006' }).api.tcp).toEqual({ host: '127.0.0.1', port: 8006 });
  });

  it('DHCP relay listener: off by default, port 67 unless given, address must be IPv4', () => {
    expect(resolveConfig({}, {}).dhcp).toEqual({});
    expect(resolveConfig({ dhcp: { relay: { address: '10.0.0.1' } } }, {}).dhcp.relay).toEqual({ address: '10.0.0.1', port: 67 });
    expect(() => resolveConfig({ dhcp: { relay: { address: 'eth0' } } }, {})).toThrow(/\/dhcp\/relay\/address/);
  });

  it('explains an unquoted socket mode', () => {
    expect(() => resolveConfig({ api: { unixSocket: { mode: 432 } } }, {})).toThrow(/quoted octal string/);
  });

  it('rejects YAML that is not a mapping', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nvcfg-'));
    const path = join(dir, 'c.yaml');
    await writeFile(path, '- a\n- b\n');
    await expect(loadConfig({ path, env: {} })).rejects.toThrow(/mapping/);
    await writeFile(path, 'a: [\n');
    await expect(loadConfig({ path, env: {} })).rejects.toThrow(/not valid YAML/);
  });
});

// The test guest (test/guest/): the build is cached and complete (modules in dependency order, executable
// /init), and one real TCG boot shows the marker contract of test/guest/README.md end to end.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, appendFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GUEST_CMDLINE, GUEST_OUT } from '../guest/paths.js';

const guestDir = resolve(import.meta.dirname, '../guest');
const out = GUEST_OUT;
const scratch = mkdtempSync(join(tmpdir(), 'nodevirt-guest-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function build(dir = guestDir, outDir = out): string {
  const r = spawnSync('bash', [join(dir, 'build.sh')], { encoding: 'utf8', env: { ...process.env, NODEVIRT_GUEST_OUT: outDir } });
  expect(r.status, r.stderr).toBe(0);
  return r.stderr;
}

/** Paths and modes in the initramfs, as cpio lists them. */
function listInitramfs(file: string): Map<string, string> {
  const listing = execFileSync('sh', ['-c', 'gzip -dc "$1" | cpio -itv --quiet', '_', file], { encoding: 'utf8' });
  const entries = new Map<string, string>();
  for (const line of listing.split('\n')) {
    const m = /^(\S+)\s.*\s(\S+)$/.exec(line.replace(/ -> .*$/, ''));
    if (m) entries.set(m[2]!.replace(/^\.\//, ''), m[1]!);
  }
  return entries;
}

function extract(file: string, member: string): string {
  return execFileSync('sh', ['-c', 'gzip -dc "$1" | cpio -i --quiet --to-stdout "$2"', '_', file, member], {
    encoding: 'utf8',
  });
}

describe('test guest build', () => {
  it('builds a kernel and an initramfs whose modules load in dependency order', () => {
    build();
    const kver = readFileSync(join(out, 'kernel-release'), 'utf8').trim();
    expect(statSync(join(out, 'vmlinuz')).size).toBe(statSync(`/boot/vmlinuz-${kver}`).size);

    const initramfs = join(out, 'initramfs.gz');
    const entries = listInitramfs(initramfs);
    expect(entries.get('init')).toMatch(/^-rwx/);
    expect(entries.get('bin/busybox')).toMatch(/^-rwx/);
    expect(entries.get('etc/nodevirt/udhcpc.script')).toMatch(/^-rwx/);
    expect(entries.has('bin/sh')).toBe(true);
    // /init must at least parse with the shell that runs it.
    const syntax = spawnSync('/bin/busybox', ['sh', '-n', join(guestDir, 'init')], { encoding: 'utf8' });
    expect(syntax.status, syntax.stderr).toBe(0);

    const order = extract(initramfs, 'etc/nodevirt/modules').trim().split('\n');
    expect(readFileSync(join(out, 'modules.txt'), 'utf8').trim().split('\n')).toEqual(order);
    const name = (p: string) => p.replace(/^.*\//, '').replace(/\.ko$/, '').replace(/-/g, '_');
    const names = order.map(name);
    for (const wanted of ['virtio_pci', 'virtio_net', 'e1000', 'virtio_blk', 'virtio_scsi', 'sr_mod', 'cdrom', 'isofs', 'ahci']) {
      expect(names, `module ${wanted}`).toContain(wanted);
    }
    expect(new Set(names).size).toBe(names.length);
    for (const [i, path] of order.entries()) {
      expect(entries.get(path.slice(1)), path).toMatch(/^-/);
      // Every dependency the module declares (from the host's copy) is loaded before it.
      const deps = execFileSync('modinfo', ['-F', 'depends', path], { encoding: 'utf8' }).trim();
      for (const dep of deps ? deps.split(',') : []) {
        const at = names.indexOf(dep.replace(/-/g, '_'));
        expect(at, `${name(path)} needs ${dep}`).toBeGreaterThanOrEqual(0);
        expect(at, `${dep} before ${name(path)}`).toBeLessThan(i);
      }
    }
  });

  it('is cached on its inputs: a no-change run rebuilds nothing, a changed /init rebuilds', () => {
    const copy = join(scratch, 'guest');
    mkdirSync(copy);
    for (const f of ['build.sh', 'init', 'udhcpc.script', 'www-update']) cpSync(join(guestDir, f), join(copy, f));
    expect(build(copy, join(copy, 'out'))).toMatch(/built /);
    const first = readFileSync(join(copy, 'out/inputs.sha256'), 'utf8');
    const mtime = statSync(join(copy, 'out/initramfs.gz')).mtimeMs;
    expect(build(copy, join(copy, 'out'))).toMatch(/up to date/);
    expect(statSync(join(copy, 'out/initramfs.gz')).mtimeMs).toBe(mtime);
    appendFileSync(join(copy, 'init'), '# changed\n');
    expect(build(copy, join(copy, 'out'))).toMatch(/built /);
    expect(readFileSync(join(copy, 'out/inputs.sha256'), 'utf8')).not.toBe(first);
  });
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res) => srv.listen(0, '127.0.0.1', res));
  const port = (srv.address() as { port: number }).port;
  await new Promise((res) => srv.close(res));
  return port;
}

const qemu = '/usr/bin/qemu-system-x86_64';
describe.skipIf(!existsSync(qemu))(`test guest boot under qemu TCG${existsSync(qemu) ? '' : ` (skipped: ${qemu} is not installed; apt-get install qemu-system-x86)`}`, () => {
  if (!existsSync(qemu)) console.log(`skipped: ${qemu} missing (apt-get install qemu-system-x86)`);

  it('prints the contract lines: seed, DHCP ok and fail, ping, READY, echo, commands, HTTP', async () => {
    build();
    const seedDir = join(scratch, 'seed');
    mkdirSync(seedDir);
    writeFileSync(join(seedDir, 'meta-data'), 'instance-id: iid-guest-test\nlocal-hostname: "guest-test"\n');
    writeFileSync(join(seedDir, 'user-data'), '#cloud-config\n');
    const iso = join(scratch, 'seed.iso');
    execFileSync('xorriso', ['-as', 'mkisofs', '-quiet', '-o', iso, '-V', 'cidata', '-J', '-R', seedDir], { stdio: 'ignore' });
    const userDataSha = execFileSync('sha256sum', [join(seedDir, 'user-data')], { encoding: 'utf8' }).split(' ')[0];

    const serial = join(scratch, 'serial.sock');
    const port = await freePort();
    // eth0: user-mode networking (its built-in DHCP server answers); eth1: a NIC with no peer, so no DHCP.
    const vm = spawn(qemu, [
      '-accel', 'tcg', '-m', '256', '-display', 'none', '-no-reboot', '-nodefaults',
      '-kernel', join(out, 'vmlinuz'), '-initrd', join(out, 'initramfs.gz'),
      '-append', `${GUEST_CMDLINE} nodevirt.stay=1 nodevirt.dhcp_timeout=4`,
      '-nic', `user,model=virtio-net-pci,mac=52:54:00:00:00:01,hostfwd=tcp:127.0.0.1:${port}-:8080`,
      '-device', 'virtio-net-pci,mac=52:54:00:00:00:02',
      '-drive', `file=${iso},media=cdrom,readonly=on`,
      '-serial', `unix:${serial},server=on,wait=on`,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let qemuErr = '';
    vm.stderr.on('data', (d: Buffer) => (qemuErr += d.toString()));
    const exited = new Promise<number | null>((res) => vm.on('exit', (code) => res(code)));

    try {
      while (!existsSync(serial)) await new Promise((r) => setTimeout(r, 50));
      const con = createConnection(serial);
      let text = '';
      con.on('data', (d: Buffer) => (text += d.toString('latin1').replace(/\r/g, '')));
      const lines = () => text.split('\n').map((l) => l.slice(Math.max(0, l.indexOf('NODEVIRT-')))).filter((l) => l.startsWith('NODEVIRT-'));
      const waitFor = async (re: RegExp, ms = 90_000) => {
        const until = Date.now() + ms;
        while (Date.now() < until) {
          const hit = lines().find((l) => re.test(l));
          if (hit) return hit;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`no line matching ${re} in:\n${text}\nqemu: ${qemuErr}`);
      };

      await waitFor(/^NODEVIRT-GUEST-READY$/);
      const kver = readFileSync(join(out, 'kernel-release'), 'utf8').trim();
      expect(lines()).toContain(`NODEVIRT-GUEST-BOOT kernel=${kver}`);
      expect(lines()).toContain(
        `NODEVIRT-CLOUDINIT device=sr0 instance-id=iid-guest-test hostname=guest-test userdata-sha256=${userDataSha}`,
      );
      const dhcp0 = lines().find((l) => l.startsWith('NODEVIRT-DHCP iface=eth0 '));
      expect(dhcp0).toMatch(
        /^NODEVIRT-DHCP iface=eth0 mac=52:54:00:00:00:01 status=ok ip=10\.0\.2\.15 mask=255\.255\.255\.0 router=10\.0\.2\.2 dns=10\.0\.2\.3 mtu=\S* hostname=\S* domain=\S* search=\S* routes=\S* lease=\d+$/,
      );
      expect(lines()).toContain('NODEVIRT-DHCP iface=eth1 mac=52:54:00:00:00:02 status=fail');
      expect(lines()).toContain('NODEVIRT-PING iface=eth0 target=10.0.2.2 status=ok');
      expect(lines().some((l) => l.startsWith('NODEVIRT-PING iface=eth1'))).toBe(false);
      expect(lines()).not.toContain('NODEVIRT-GUEST-DONE');

      const res = await fetch(`http://127.0.0.1:${port}/`);
      expect(await res.text()).toBe('hostname=guest-test ip=10.0.2.15\n');

      con.write('hello guest\r');
      await waitFor(/^NODEVIRT-ECHO hello guest$/);
      con.write('!cat /proc/sys/kernel/hostname\n');
      await waitFor(/^NODEVIRT-EXIT 0$/);
      expect(lines()).toContain('NODEVIRT-OUT guest-test');
      con.write('!poweroff -f\n');
      expect(await exited).toBe(0);
      con.destroy();
    } finally {
      if (vm.exitCode === null) vm.kill('SIGKILL');
    }
  }, 180_000);
});

// systemd/nodevirtd.service, rendered the way setup.sh installs it, must pass `systemd-analyze verify` with
// no complaint at all (the tool exits 0 even for unknown keys, so its output is what counts).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const repo = resolve(import.meta.dirname, '../..');
const analyze = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).stdout.trim();
const dir = mkdtempSync(join(tmpdir(), 'nodevirt-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function render(): string {
  return execFileSync('bash', [join(repo, 'systemd/setup.sh'), '--render-unit'], { encoding: 'utf8' });
}

function verify(text: string): { status: number | null; output: string } {
  const file = join(dir, 'nodevirtd.service');
  writeFileSync(file, text);
  const r = spawnSync(analyze, ['verify', '--man=no', file], { encoding: 'utf8' });
  return { status: r.status, output: (r.stdout + r.stderr).trim() };
}

describe('nodevirtd.service', () => {
  it('is rendered with this checkout and the node on PATH', () => {
    const unit = render();
    const node = spawnSync('sh', ['-c', 'command -v node'], { encoding: 'utf8' }).stdout.trim();
    expect(unit).toContain(`\nExecStart=${node} ${repo}/dist/daemon/main.js\n`);
    expect(unit).toContain(`\nWorkingDirectory=${repo}\n`);
    expect(unit).not.toContain('/opt/nodevirt');
    for (const line of ['Type=notify', 'NotifyAccess=main', 'WatchdogSec=30s', 'Restart=on-failure', 'KillMode=mixed',
      'RuntimeDirectory=nodevirt', 'StateDirectory=nodevirt', 'ConfigurationDirectory=nodevirt']) {
      expect(unit.split('\n'), line).toContain(line);
    }
  });

  it.skipIf(!analyze)(`passes systemd-analyze verify without a warning${analyze ? '' : ' (skipped: systemd-analyze not installed; apt-get install systemd)'}`, () => {
    const r = verify(render());
    expect(r.output).toBe('');
    expect(r.status).toBe(0);
    // The tool really inspects the file here: a broken copy is reported.
    const broken = verify(render().replace('KillMode=mixed', 'KillMode=gently'));
    expect(broken.output).toMatch(/kill mode/i);
  });
});

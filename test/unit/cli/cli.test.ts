import { describe, expect, it } from 'vitest';
import { runCli } from '../../../daemon/cli/cli.js';

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } };
}

describe('nodevirtd CLI', () => {
  it('names an unknown command and prints usage with exit 2', async () => {
    const c = io();
    expect(await runCli(['frobnicate'], { socketPath: '/nonexistent.sock' }, c.io)).toBe(2);
    expect(c.err.join('\n')).toMatch(/unknown command "frobnicate"[\s\S]*token create NAME/);
  });

  it('says the daemon is not running, naming the socket it tried (the --socket override)', async () => {
    const c = io();
    expect(await runCli(['token', 'list', '--socket', '/nonexistent/other.sock'], { socketPath: '/nonexistent.sock' }, c.io)).toBe(1);
    expect(c.err.join('\n')).toContain('the daemon is not running (cannot connect to /nonexistent/other.sock)');
  });

  it('rejects an option without its value', async () => {
    const c = io();
    expect(await runCli(['token', 'create', 'x', '--description'], { socketPath: '/nonexistent.sock' }, c.io)).toBe(1);
    expect(c.err.join('\n')).toContain('--description needs a value');
  });
});

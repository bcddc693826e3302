// A fresh, uniquely named network namespace per test file (ip netns add), with lo up, removed afterwards;
// whatever is left inside dies with it, so the host and other engineers' tests never see our objects.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface TestNetns {
  name: string;
  /** A short id unique to this run, for kernel names derived from it. */
  run: string;
  /** Runs a command inside the namespace and returns its stdout. */
  exec(cmd: string, args: string[], input?: string): string;
  remove(): void;
}

/** Why this file cannot run here, or undefined when it can (root and `ip netns` work). */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, taps, nftables)';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
  } catch (e) {
    return `ip netns or nft unusable: ${(e as Error).message}`;
  }
  return undefined;
}

export function createTestNetns(label: string): TestNetns {
  const run = `${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
  const name = `nvtest-${label}-${run}`;
  execFileSync('ip', ['netns', 'add', name]);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return {
    name,
    run,
    exec(cmd, args, input) {
      return execFileSync('ip', ['netns', 'exec', name, cmd, ...args], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
    },
    remove() {
      execFileSync('ip', ['netns', 'del', name]);
    },
  };
}

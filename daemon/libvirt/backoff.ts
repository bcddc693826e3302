// Reconnect delays: exponential, capped, jittered downwards so many clients do not retry in lockstep.
import type { BackoffOptions } from './types.js';

export interface Backoff {
  /** Delay before the next attempt (ms); each call counts one more failure. */
  next(): number;
  reset(): void;
}

export function createBackoff(opts: BackoffOptions = {}, random: () => number = Math.random): Backoff {
  const initial = opts.initialMs ?? 250;
  const max = opts.maxMs ?? 10_000;
  const factor = opts.factor ?? 2;
  const jitter = Math.min(Math.max(opts.jitter ?? 0.3, 0), 1);
  if (!(initial > 0) || !(max >= initial) || !(factor >= 1)) throw new RangeError('backoff: need 0 < initialMs <= maxMs and factor >= 1');
  let attempt = 0;
  return {
    next() {
      const base = Math.min(max, initial * factor ** attempt);
      attempt = Math.min(attempt + 1, 64);
      return Math.round(base * (1 - jitter * random()));
    },
    reset() {
      attempt = 0;
    },
  };
}

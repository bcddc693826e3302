// Per-server throttles with fixed state: a token bucket for packets and a limiter for log lines, so a
// flooding or hostile guest costs a bounded amount of CPU and log volume and nothing else.

export interface TokenBucketOptions {
  /** Sustained packets per second. */
  ratePerSec: number;
  /** Packets allowed in a burst after idling. */
  burst: number;
}

export class TokenBucket {
  private tokens: number;
  private last = -1;
  private readonly perMs: number;
  private readonly burst: number;

  constructor(opts: TokenBucketOptions) {
    this.perMs = opts.ratePerSec / 1000;
    this.burst = opts.burst;
    this.tokens = opts.burst;
  }

  /** Takes one token at time `nowMs` (monotonic or wall clock; a clock going back refills nothing). */
  take(nowMs: number): boolean {
    if (this.last < 0) this.last = nowMs;
    if (nowMs > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + (nowMs - this.last) * this.perMs);
      this.last = nowMs;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }
}

/**
 * Lets one line through per interval and counts the rest; the next line that passes carries the
 * count of what was suppressed in between.
 */
export class LogLimiter {
  private nextAt = -Infinity;
  private suppressed = 0;

  constructor(private readonly intervalMs: number) {}

  /** Returns the number suppressed since the last line if this one may be logged, else -1. */
  allow(nowMs: number): number {
    if (nowMs >= this.nextAt) {
      this.nextAt = nowMs + this.intervalMs;
      const n = this.suppressed;
      this.suppressed = 0;
      return n;
    }
    this.suppressed++;
    return -1;
  }
}

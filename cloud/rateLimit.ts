/**
 * A per-client token bucket: each client may send `burst` requests at once and `perSecond` on average.
 * Generous by default: the device sends one small request per cloud-routed token.
 */
export interface RateLimitOptions {
  /** sustained requests per second */
  perSecond: number;
  /** requests allowed at once */
  burst: number;
}

export const DEFAULT_RATE_LIMIT: RateLimitOptions = { perSecond: 500, burst: 1000 };

/** Buckets kept before full (= unused) ones are dropped, so many clients cannot grow the map forever. */
const PRUNE_ABOVE = 10_000;

interface Bucket {
  tokens: number;
  updated: number;
}

export class TokenBucketLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly opts: RateLimitOptions,
    private readonly now: () => number = Date.now,
  ) {
    if (!(opts.perSecond > 0) || !(opts.burst >= 1)) throw new RangeError("rateLimit needs perSecond > 0 and burst >= 1");
  }

  /** Takes one request from `key`'s bucket: 0 when allowed, otherwise the ms until one is available. */
  take(key: string): number {
    const now = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= PRUNE_ABOVE) this.prune();
      b = { tokens: this.opts.burst, updated: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(this.opts.burst, b.tokens + ((now - b.updated) / 1000) * this.opts.perSecond);
    b.updated = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) / this.opts.perSecond) * 1000);
  }

  /** Drops buckets that have refilled completely: forgetting them changes nothing. */
  prune(): void {
    const now = this.now();
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.updated) / 1000) * this.opts.perSecond >= this.opts.burst) this.buckets.delete(key);
    }
  }
}

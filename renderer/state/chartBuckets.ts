/**
 * The confidence chart's data: one bucket per few pixels, so a long answer is drawn as its minimum
 * and mean per bucket instead of a barcode. Pure (unit-tested).
 */
import type { Origin } from "../../shared/events";

export interface ChartToken {
  confidence: number;
  tau: number;
  origin: Origin;
}

export interface Bucket {
  /** first token index in the bucket, and one past the last */
  from: number;
  to: number;
  min: number;
  mean: number;
  /** τ of the bucket's last token (τ may change mid-answer) */
  tau: number;
  cloud: number;
  fallback: number;
  /** the token with the lowest score: what a click on the bucket pins */
  lowest: number;
}

/** Buckets of consecutive tokens, at most `maxBuckets` of them (one token each when they fit). */
export function bucketTokens(tokens: readonly ChartToken[], maxBuckets: number): Bucket[] {
  const n = tokens.length;
  const count = Math.max(1, Math.min(n, Math.floor(maxBuckets)));
  const out: Bucket[] = [];
  for (let b = 0; b < count && n > 0; b++) {
    const from = Math.floor((b * n) / count);
    const to = Math.floor(((b + 1) * n) / count);
    let min = Infinity;
    let sum = 0;
    let lowest = from;
    let cloud = 0;
    let fallback = 0;
    for (let i = from; i < to; i++) {
      const t = tokens[i];
      sum += t.confidence;
      if (t.confidence < min) [min, lowest] = [t.confidence, i];
      if (t.origin === "cloud") cloud++;
      else if (t.origin === "fallback") fallback++;
    }
    out.push({ from, to, min, mean: sum / (to - from), tau: tokens[to - 1].tau, cloud, fallback, lowest });
  }
  return out;
}

/** The bucket holding token `index`. */
export function bucketOf(buckets: readonly Bucket[], index: number): number {
  let lo = 0;
  let hi = buckets.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (buckets[mid].from <= index) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

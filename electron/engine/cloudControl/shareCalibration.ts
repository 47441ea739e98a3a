/**
 * A target cloud share: "about N% of positions from the cloud" instead of a bare threshold τ.
 *
 * The router's recent scores for a model pair are kept in a bounded window (`ScoreWindow`, across
 * answers, persisted by `CalibrationStore`); the τ that routes N% of them is their N-th percentile
 * (a position goes to the cloud when its score is below τ, shared/router.ts). Within an answer a
 * `ShareSteer` corrects that quantile by how far the answer's own share has drifted from N%, so the
 * realised share of an answer stays near N% even when its text scores unlike the recent ones (the
 * research's deferral-budget / recall-target thresholds turned into a control).
 */
import { routesToCloud } from "../../../shared/router.js";

/** Scores kept per model pair: enough for a stable 5th percentile, small enough to sort per token. */
export const WINDOW_SIZE = 1024;

/** Recent router scores in arrival order (a ring) and sorted (for quantiles), bounded to `capacity`. */
export class ScoreWindow {
  private readonly ring: number[] = [];
  private next = 0;
  /** the same scores, ascending */
  readonly sorted: number[] = [];

  constructor(
    readonly capacity = WINDOW_SIZE,
    scores: readonly number[] = [],
  ) {
    for (const s of scores.slice(-capacity)) this.add(s);
  }

  get size(): number {
    return this.ring.length;
  }

  add(score: number): void {
    if (!Number.isFinite(score)) return;
    const s = Math.min(1, Math.max(0, score));
    if (this.ring.length < this.capacity) this.ring.push(s);
    else {
      const old = this.ring[this.next]!;
      this.sorted.splice(lowerBound(this.sorted, old), 1);
      this.ring[this.next] = s;
      this.next = (this.next + 1) % this.capacity;
    }
    this.sorted.splice(lowerBound(this.sorted, s), 0, s);
  }

  /** The scores oldest first (what is persisted). */
  inOrder(): number[] {
    return [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }
}

/** The τ that sends about `share` of these scores to the cloud (score < τ); null without scores. */
export function tauForShare(sorted: readonly number[], share: number): number | null {
  const n = sorted.length;
  if (n === 0) return null;
  const m = Math.round(Math.min(1, Math.max(0, share)) * n);
  if (m <= 0) return 0;
  if (m >= n) return 1;
  // between the m-th and (m+1)-th smallest: exactly m of them are below it (unless tied)
  return (sorted[m - 1]! + sorted[m]!) / 2;
}

/** The share of these scores a given τ sends to the cloud (what "≈x% at this τ" shows); null without scores. */
export function shareAtTau(sorted: readonly number[], tau: number): number | null {
  if (sorted.length === 0) return null;
  return lowerBound(sorted, tau) / sorted.length;
}

/**
 * How strongly the steer corrects an answer's drift: the quantile asked for rises by target/… per
 * token the answer is behind. With DRIFT_TOKENS = 4, an answer one routed position short asks for
 * the next position at a quantile 1/4 higher; four short, it routes the next position whatever it scores.
 */
export const DRIFT_TOKENS = 4;

/**
 * One answer's τ for a target share: the window's quantile at the target, corrected by the answer's
 * drift (routed positions short of, or beyond, target × positions so far). Every scored position is
 * added to the window, so the calibration follows the text as it goes and is kept for the next answer.
 */
export class ShareSteer {
  private positions = 0;
  private routed = 0;

  constructor(
    private readonly window: ScoreWindow,
    readonly target: number,
  ) {
    if (!(target >= 0 && target <= 1)) throw new RangeError(`The target cloud share must be in [0, 1], got ${target}`);
  }

  /** τ for the next position. */
  tau(): number {
    if (this.target === 0) return 0;
    if (this.target === 1) return 1;
    const drift = this.target * (this.positions + 1) - this.routed; // > 0: behind
    const q = Math.min(1, Math.max(0, this.target + drift / DRIFT_TOKENS));
    // no scores yet (a new pair's first token): route it when the target says one is due
    return tauForShare(this.window.sorted, q) ?? (drift >= 0.5 ? 1 : 0);
  }

  /** A position of the answer was decided (with the τ it was decided at). */
  observe(event: { confidence: number; tau: number }): void {
    this.positions++;
    if (routesToCloud(event.confidence, event.tau)) this.routed++;
    this.window.add(event.confidence);
  }

  get realised(): { positions: number; routed: number; share: number } {
    return { positions: this.positions, routed: this.routed, share: this.positions ? this.routed / this.positions : 0 };
  }
}

/** Index of the first element ≥ x in an ascending array. */
function lowerBound(a: readonly number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

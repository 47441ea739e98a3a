/**
 * Router maths: a router scores its confidence that the SLM's own token is acceptable; the token goes
 * to the cloud when that confidence is below the user's threshold τ.
 *
 *   τ = 0  → nothing is below it        → every token local
 *   τ = 1  → every confidence is below 1 → every token from the cloud (confidences are clamped below 1)
 *   τ grows → the set {confidence < τ} only grows → the cloud share never decreases.
 */

/** Features of one SLM step that routers may read. Cheap ones are always there; others on request. */
export interface RouterFeatures {
  /** probability of the SLM's greedy token (full softmax, temperature 0); NaN when not computed */
  top1Prob: number;
  /** probabilities of the top candidates, highest first, when computed */
  topProbs?: readonly number[];
  /** post-final-norm last-layer hidden state of the SLM at this position, when computed */
  hidden?: Float32Array | Float64Array;
  /** index of this token in the answer (0 = first answer token); lets test and bench routers pick
   * positions deterministically however often a position is scored (speculation scores some twice) */
  position?: number;
}

/** What a router needs the SLM step to compute. The engine computes only what is asked. */
export interface FeatureNeeds {
  top1Prob: boolean;
  topK: number;
  hidden: boolean;
}

export interface Router {
  /** shown in the UI and the CLI: which router is active */
  readonly name: string;
  readonly needs: FeatureNeeds;
  /** confidence in [0, 1] that the SLM's token is acceptable */
  score(features: RouterFeatures): number;
  /**
   * How a cloud's SLM replica can run this same router (RouteRequest): "confidence" needs nothing,
   * "mlp" uploads the network (`network()`: a router file's JSON without its training record).
   * Absent: the router cannot be replicated (the device then asks one routed position per call).
   */
  readonly replica?: { kind: "confidence" } | { kind: "mlp"; network(): unknown };
}

/**
 * Largest confidence a router may report. Keeping it strictly below 1 makes τ = 1 mean "everything to
 * the cloud" without a special case, as the contract demands.
 */
export const MAX_CONFIDENCE = 1 - 1e-9;

export function clampConfidence(c: number): number {
  if (!Number.isFinite(c)) return 0; // an unusable score is no confidence at all: ask the cloud
  return Math.min(MAX_CONFIDENCE, Math.max(0, c));
}

/** The routing decision. τ = 0 never routes (confidence ≥ 0), τ = 1 always routes (confidence < 1). */
export function routesToCloud(confidence: number, tau: number): boolean {
  return clampConfidence(confidence) < tau;
}

export function validateTau(tau: number): number {
  if (!Number.isFinite(tau) || tau < 0 || tau > 1) throw new RangeError(`τ must be in [0, 1], got ${tau}`);
  return tau;
}

/** First router: the SLM's top-1 probability. Needs no training. */
export class ConfidenceRouter implements Router {
  readonly name = "confidence (SLM top-1 probability)";
  readonly needs: FeatureNeeds = { top1Prob: true, topK: 0, hidden: false };
  readonly replica = { kind: "confidence" } as const;
  score(f: RouterFeatures): number {
    return clampConfidence(f.top1Prob);
  }
}

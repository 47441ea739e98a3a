/**
 * Router input features, computed from one SLM step (temperature 0, same step that picks the token).
 *
 *   hidden   the SLM's post-final-norm last hidden state (h values) — CITER's only input
 *   top1     probability of the greedy token (cheap: node-llama-cpp's `confidence`)
 *   margin   top-1 minus top-2 probability          } need the top-k candidates, which node-llama-cpp
 *   entropy  entropy estimate over the top-k + rest } 3.21 only gives through the full probability map
 *                                                    (free on a 512-token vocabulary, ~+70 ms/step on
 *                                                    Qwen's 152k: docs/FACTS.md) — hence configurable.
 *
 * The vector layout is fixed by the spec and stored in the router file, so a router always reads its
 * features the way it was trained.
 */
import { UsageError } from "../shared/errors.js";
import type { FeatureNeeds, RouterFeatures } from "../shared/router.js";

export interface FeatureSpec {
  hidden: boolean;
  top1: boolean;
  /** margin + top-k entropy; needs topK ≥ 2 */
  dist: boolean;
  /** candidates read for margin/entropy */
  topK: number;
}

export const DEFAULT_FEATURES: FeatureSpec = { hidden: true, top1: true, dist: true, topK: 8 };

/** "hidden,top1,dist" → spec (the CLI's --features). */
export function parseFeatureSpec(s: string, topK = DEFAULT_FEATURES.topK): FeatureSpec {
  const parts = new Set(
    s
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean),
  );
  for (const p of parts)
    if (!["hidden", "top1", "dist"].includes(p)) throw new UsageError(`Unknown feature "${p}" (use hidden, top1, dist)`);
  const spec = { hidden: parts.has("hidden"), top1: parts.has("top1"), dist: parts.has("dist"), topK };
  if (!spec.hidden && !spec.top1 && !spec.dist) throw new UsageError("No features selected");
  return spec;
}

export function featureSpecName(s: FeatureSpec): string {
  return [s.hidden && "hidden", s.top1 && "top1", s.dist && `dist@${s.topK}`].filter(Boolean).join("+");
}

export function featureDim(s: FeatureSpec, hiddenSize: number): number {
  return (s.hidden ? hiddenSize : 0) + (s.top1 ? 1 : 0) + (s.dist ? 2 : 0);
}

/** What the SLM must compute per step for this spec. */
export function featureNeeds(s: FeatureSpec): FeatureNeeds {
  return { top1Prob: s.top1 || s.dist, topK: s.dist ? Math.max(2, s.topK) : 0, hidden: s.hidden };
}

/**
 * Entropy (nats) of the distribution seen through its top-k: the k known probabilities plus the
 * remaining mass as one bucket. A lower bound on the true entropy, monotone in how spread out it is.
 */
export function topKEntropy(probs: readonly number[]): number {
  let h = 0;
  let sum = 0;
  for (const p of probs) {
    if (p > 0) h -= p * Math.log(p);
    sum += p;
  }
  const rest = 1 - sum;
  if (rest > 1e-12) h -= rest * Math.log(rest);
  return h;
}

/** The feature vector of one step, in the spec's layout. Throws when a needed feature is missing. */
export function featureVector(f: RouterFeatures, s: FeatureSpec, hiddenSize: number, out?: Float32Array): Float32Array {
  const v = out ?? new Float32Array(featureDim(s, hiddenSize));
  let o = 0;
  if (s.hidden) {
    if (!f.hidden || f.hidden.length !== hiddenSize) {
      throw new Error(`The router needs the SLM's hidden state (${hiddenSize} values), got ${f.hidden?.length ?? "none"}`);
    }
    for (let i = 0; i < hiddenSize; i++) v[o++] = f.hidden[i]!;
  }
  const top1 = Number.isFinite(f.top1Prob) ? f.top1Prob : (f.topProbs?.[0] ?? NaN);
  if (s.top1) {
    if (!Number.isFinite(top1)) throw new Error("The router needs the SLM's top-1 probability");
    v[o++] = top1;
  }
  if (s.dist) {
    const tp = f.topProbs;
    if (!tp || tp.length < 2) throw new Error(`The router needs the SLM's top-${s.topK} probabilities`);
    const k = tp.slice(0, s.topK);
    v[o++] = k[0]! - k[1]!;
    v[o] = topKEntropy(k);
  }
  return v;
}

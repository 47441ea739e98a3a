/**
 * The distilled confidence router: a small MLP reads the SLM's hidden state and predicts the SLM's own
 * top-1 probability — the confidence router's score — without touching the logits.
 *
 * Why: through node-llama-cpp 3.21 the top-1 probability costs a sort of the whole vocabulary per token
 * (+12–15 ms on Qwen's 152k vocabulary, ~40% of a CPU step), while the hidden state is free (docs/FACTS.md).
 * The probability is a function of the hidden state (softmax(W·h) at the greedy token), so a network on
 * h can learn it; it then scores in ~0.1–0.4 ms.
 *
 * Why it can be made anywhere: the teacher is the SLM itself. Training needs neither the LLM nor labels,
 * only (hidden state, top-1 probability) pairs, which every step of the confidence router already
 * computes. So a distilled router can be made for any SLM on the machine that runs it: by
 * `npm run router:distill` over a text, or by the app from the user's own answers (SelfDistiller in
 * electron/engine/selfDistill.ts).
 *
 * How good it is, is measured, not assumed: `fidelity` compares its routing decisions with the
 * confidence router's on held-out sequences, and the router is used only when they agree enough.
 */
import type { LocalModel } from "../../inference/localModel.js";
import type { FeatureNeeds, RouterFeatures } from "../../shared/router.js";
import type { FeatureSpec } from "../features.js";
import { routerSizes } from "../mlp.js";
import { bindingOf, DISTILLED_TARGET, encodeRouterFile, type Fidelity, type RouterFileJson, type TrainReport } from "../file.js";
import { LearnedRouter } from "../learnedRouter.js";
import { splitByGroup, trainRouterInSlices, type TrainData } from "./train.js";

export const DISTILLED_FEATURES: FeatureSpec = { hidden: true, top1: false, dist: false, topK: 0 };
/** What each collection step computes: the teacher's score and the student's input. */
export const DISTILL_NEEDS: FeatureNeeds = { top1Prob: true, topK: 0, hidden: true };
/** the student: small enough to train in seconds in plain TypeScript and to score in well under a ms */
export const distilledSizes = (hiddenSize: number): number[] => routerSizes(hiddenSize, hiddenSize);

/** loss weight 1/(p + this): positions the SLM is unsure of count more */
const TAIL_WEIGHT = 0.05;

/** Cloud shares at which the routed sets of the two routers are compared. */
export const FIDELITY_SHARES = [0.05, 0.07, 0.1, 0.2] as const;
/**
 * Below this overlap of routed sets at a 10% share the distilled router is not used: it would send the
 * cloud different positions than the confidence router it stands in for.
 */
export const MIN_OVERLAP_AT_10 = 0.6;

/**
 * (hidden state, top-1 probability) pairs, grouped by sequence (the split keeps sequences whole). The
 * hidden states go straight into one row-major buffer, grown by doubling, which training reads as is:
 * no allocation per token while recording, and no second copy of them to train.
 */
export class ConfidenceSamples {
  private X = new Float32Array(0);
  readonly top1: number[] = [];
  readonly groups: number[] = [];

  constructor(readonly hiddenSize: number) {}

  get size(): number {
    return this.top1.length;
  }

  /** Records one step; returns false (and records nothing) when a feature is missing or unusable. */
  add(f: RouterFeatures, group: number): boolean {
    if (!f.hidden || f.hidden.length !== this.hiddenSize || !Number.isFinite(f.top1Prob)) return false;
    const d = this.hiddenSize;
    const at = this.size * d;
    if (at + d > this.X.length) {
      const grown = new Float32Array(Math.max(d * 256, this.X.length * 2));
      grown.set(this.X);
      this.X = grown;
    }
    this.X.set(f.hidden, at);
    this.top1.push(Math.min(1, Math.max(0, f.top1Prob)));
    this.groups.push(group);
    return true;
  }

  trainData(): TrainData {
    const n = this.size;
    return {
      X: this.X.subarray(0, n * this.hiddenSize),
      y: Float32Array.from(this.top1),
      groups: Int32Array.from(this.groups),
      n,
      d: this.hiddenSize,
    };
  }
}

/**
 * Collects pairs from the SLM: along each sequence, teacher-forced from `from` (text the user would
 * write or read), then `generate` tokens of the SLM's own greedy continuation (text it writes itself,
 * which is what the router scores in use). One token at a time: the hidden state exists only for the
 * last position of a decode.
 */
export async function collectConfidenceSamples(
  slm: LocalModel,
  sequences: readonly (readonly number[])[],
  opts: { from: number; generate: number; maxSamples?: number; log?: (s: string) => void },
): Promise<ConfidenceSamples> {
  const set = new ConfidenceSamples(slm.hiddenSize);
  const max = opts.maxSamples ?? Infinity;
  let group = 0;
  for (const [k, seq] of sequences.entries()) {
    if (set.size >= max || seq.length <= opts.from) continue;
    let step = await slm.begin(seq.slice(0, opts.from), DISTILL_NEEDS);
    set.add(step, group);
    for (let i = opts.from; i < seq.length && set.size < max; i++) {
      step = await slm.advance(seq[i]!, DISTILL_NEEDS);
      set.add(step, group);
    }
    for (let g = 0; g < opts.generate && set.size < max && !slm.isEndOfGeneration(step.tokenId); g++) {
      step = await slm.advance(step.tokenId, DISTILL_NEEDS);
      set.add(step, group);
    }
    group++;
    if (opts.log && (k + 1) % 10 === 0) opts.log(`  ${k + 1}/${sequences.length} sequences, ${set.size} positions`);
  }
  return set;
}

function ranks(xs: readonly number[]): Float64Array {
  const idx = xs.map((_, i) => i).sort((a, b) => xs[a]! - xs[b]!);
  const r = new Float64Array(xs.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && xs[idx[j + 1]!] === xs[idx[i]!]) j++;
    for (let k = i; k <= j; k++) r[idx[k]!] = (i + j) / 2;
    i = j + 1;
  }
  return r;
}

export function spearman(a: readonly number[], b: readonly number[]): number {
  const ra = ranks(a);
  const rb = ranks(b);
  const n = a.length;
  const mean = (n - 1) / 2;
  let num = 0;
  let da = 0;
  let db = 0;
  for (let i = 0; i < n; i++) {
    num += (ra[i]! - mean) * (rb[i]! - mean);
    da += (ra[i]! - mean) ** 2;
    db += (rb[i]! - mean) ** 2;
  }
  return da > 0 && db > 0 ? num / Math.sqrt(da * db) : 0;
}

/** The positions with the `k` lowest scores (what a router routes at a share of k/n). */
function lowest(scores: readonly number[], k: number): Set<number> {
  return new Set(
    scores
      .map((_, i) => i)
      .sort((a, b) => scores[a]! - scores[b]! || a - b)
      .slice(0, k),
  );
}

/** How closely `predicted` routes like `exact` (both: confidence per position, lower = to the cloud). */
export function fidelity(exact: readonly number[], predicted: readonly number[], taus: readonly number[] = [0.1, 0.3, 0.5]): Fidelity {
  if (exact.length !== predicted.length) throw new Error("fidelity: score lists differ in length");
  const n = exact.length;
  let mae = 0;
  for (let i = 0; i < n; i++) mae += Math.abs(exact[i]! - predicted[i]!);
  const overlap = FIDELITY_SHARES.map((share) => {
    const k = Math.max(1, Math.round(n * share));
    const e = lowest(exact, k);
    let both = 0;
    for (const i of lowest(predicted, k)) if (e.has(i)) both++;
    return { share, overlap: both / k };
  });
  const agreement = taus.map((tau) => {
    let same = 0;
    for (let i = 0; i < n; i++) if (exact[i]! < tau === predicted[i]! < tau) same++;
    return { tau, agreement: same / Math.max(1, n) };
  });
  return { positions: n, spearman: spearman(exact, predicted), meanAbsError: n ? mae / n : NaN, overlap, agreement };
}

export const overlapAt = (f: Fidelity, share: number): number => f.overlap.find((o) => o.share === share)?.overlap ?? NaN;

export interface Distilled {
  router: LearnedRouter;
  json: RouterFileJson;
  fidelity: Fidelity;
  /** whether it routes closely enough like the confidence router to stand in for it */
  usable: boolean;
  report: TrainReport;
}

/**
 * Trains the distilled router on `samples` and measures it on the held-out sequences (20%, whole
 * sequences). Runs in slices so the caller's event loop keeps going.
 */
export async function distillRouter(
  slm: Pick<LocalModel, "identity" | "hiddenSize" | "vocabSize">,
  samples: ConfidenceSamples,
  opts: {
    seed?: number;
    signal?: AbortSignal;
    /** awaited between training slices (the app: until the answer being written has ended) */
    idle?: () => Promise<void>;
    log?: (s: string) => void;
    source?: string;
    /** the routed-set overlap at a 10% share it must reach to be usable (default MIN_OVERLAP_AT_10) */
    minOverlap?: number;
  } = {},
): Promise<Distilled> {
  const seed = opts.seed ?? 1;
  const data = samples.trainData();
  // the router acts on the low-confidence tail (a few % of positions): weight the loss toward it
  // (measured on stories260K, 22k positions: routed-set overlap at 5% 49% → 54%, at 7% 53% → 58%)
  data.weights = Float64Array.from(samples.top1, (p) => 1 / (p + TAIL_WEIGHT));
  if (new Set(data.groups).size < 2) throw new Error("Distillation needs samples from at least two sequences (one is held out)");
  const sizes = distilledSizes(slm.hiddenSize);
  // soft targets (the probability itself), no class balancing: this is regression through BCE
  const { params, report } = await trainRouterInSlices(data, {
    hiddenSize: slm.hiddenSize,
    sizes,
    seed,
    balance: false,
    signal: opts.signal,
    idle: opts.idle,
    log: opts.log,
  });
  const binding = bindingOf(slm);
  const router = new LearnedRouter(params, DISTILLED_FEATURES, binding, null, "distilled");
  const { val } = splitByGroup(data.groups, 0.2, seed);
  const predicted = val.map((r) => router.scoreVector(data.X.subarray(r * data.d, (r + 1) * data.d)));
  const fid = fidelity(
    val.map((r) => samples.top1[r]!),
    predicted,
  );
  const json = encodeRouterFile({
    slm: { ...binding, vocabSize: slm.vocabSize },
    features: DISTILLED_FEATURES,
    params,
    training: {
      ...report,
      target: DISTILLED_TARGET,
      labels: opts.source ?? "self-distilled",
      createdAt: new Date().toISOString(),
      fidelity: fid,
    },
  });
  return { router, json, fidelity: fid, usable: overlapAt(fid, 0.1) >= (opts.minOverlap ?? MIN_OVERLAP_AT_10), report };
}

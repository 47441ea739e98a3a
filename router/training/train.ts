/**
 * Router training: Bradley–Terry preference between "keep the SLM's token" and "take the LLM's"
 * reduces to binary cross-entropy on P(SLM token acceptable) (CITER). Adam, 80/20 split by sequence
 * (positions of one sequence are correlated: splitting by position would leak), early stopping on the
 * validation loss with the best epoch restored, class weights when one class is rare. Seeded: the same
 * data and seed give the same weights.
 */
import type { TrainReport } from "../file.js";
import { initMlp, routerSizes, type MlpParams } from "../mlp.js";
import { bce, columnStats, MlpTrainer } from "./mlpTrainer.js";
import { Rng } from "../../shared/prng.js";

export interface TrainData {
  /** row-major features, n × d */
  X: Float32Array;
  /** 1 = SLM token acceptable, 0 = needs the LLM; soft targets in [0, 1] are allowed */
  y: Uint8Array | Float32Array;
  /** sequence id per row: the split keeps sequences whole */
  groups: Int32Array;
  n: number;
  d: number;
  /** per-row weight of the loss (default 1) */
  weights?: Float64Array;
}

export interface TrainOptions {
  /** the SLM's hidden size: the default network is routerSizes(d, hiddenSize) */
  hiddenSize: number;
  seed?: number;
  lr?: number;
  batchSize?: number;
  maxEpochs?: number;
  patience?: number;
  valFraction?: number;
  dropout?: number;
  weightDecay?: number;
  /** "auto": weight classes when the minority is below 30% of rows */
  balance?: boolean | "auto";
  log?: (line: string) => void;
  /** explicit layer widths (tests); default routerSizes(d, hiddenSize) */
  sizes?: number[];
}

export function splitByGroup(groups: Int32Array, valFraction: number, seed: number): { train: number[]; val: number[] } {
  const ids = [...new Set(groups)].sort((a, b) => a - b);
  new Rng(seed ^ 0x5bd1e995).shuffle(ids);
  const nVal = Math.max(1, Math.round(ids.length * valFraction));
  const valIds = new Set(ids.slice(0, nVal));
  const train: number[] = [];
  const val: number[] = [];
  groups.forEach((g, i) => (valIds.has(g) ? val : train).push(i));
  if (train.length === 0) throw new Error("Too little data to train: the training split is empty");
  return { train, val };
}

/** Area under the ROC curve (rank statistic); 0.5 when a class is missing. */
export function auc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let pos = 0;
  let rankSum = 0;
  // average ranks over ties
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && scores[idx[j + 1]!] === scores[idx[i]!]) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++)
      if (labels[idx[k]!]) {
        pos++;
        rankSum += r;
      }
    i = j + 1;
  }
  const neg = idx.length - pos;
  if (pos === 0 || neg === 0) return 0.5;
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}

export interface TrainResult {
  params: MlpParams;
  report: TrainReport;
}

export function trainRouter(data: TrainData, opts: TrainOptions): TrainResult {
  const steps = trainRouterSteps(data, opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * trainRouter off the critical path: the same steps, handing the event loop back every ~`sliceMs` so a
 * process that also streams tokens (the app's main process) stays responsive while it trains.
 */
export async function trainRouterInSlices(
  data: TrainData,
  opts: TrainOptions & {
    sliceMs?: number;
    signal?: AbortSignal;
    /** awaited between slices: the app pauses training while it answers */ idle?: () => Promise<void>;
  },
): Promise<TrainResult> {
  const steps = trainRouterSteps(data, opts);
  let since = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() - since >= (opts.sliceMs ?? 15)) {
      await new Promise((resolve) => setImmediate(resolve));
      await opts.idle?.();
      opts.signal?.throwIfAborted();
      since = performance.now();
    }
  }
}

/** The training loop, one minibatch per step (a generator, so it can run in slices). */
export function* trainRouterSteps(data: TrainData, opts: TrainOptions): Generator<void, TrainResult, void> {
  const seed = opts.seed ?? 1;
  const { lr = 1e-3, batchSize = 64, maxEpochs = 60, patience = 6, valFraction = 0.2, dropout = 0.1, weightDecay = 1e-4 } = opts;
  const { train, val } = splitByGroup(data.groups, valFraction, seed);
  const sizes = opts.sizes ?? routerSizes(data.d, opts.hiddenSize);
  if (sizes[0] !== data.d) throw new Error(`Network input ${sizes[0]} ≠ feature width ${data.d}`);
  const params = initMlp(sizes, seed);
  const stats = columnStats(data.X, data.n, data.d, train);
  params.mean = stats.mean;
  params.std = stats.std;

  // class weights: each class contributes half the loss when balancing
  let pos = 0;
  for (const r of train) pos += data.y[r]! >= 0.5 ? 1 : 0;
  const posShare = pos / train.length;
  const balanced = opts.balance === true || ((opts.balance ?? "auto") === "auto" && Math.min(posShare, 1 - posShare) < 0.3);
  const w = new Float64Array(data.n).fill(1);
  if (balanced && pos > 0 && pos < train.length) {
    for (let i = 0; i < data.n; i++) w[i] = data.y[i]! >= 0.5 ? 0.5 / posShare : 0.5 / (1 - posShare);
  }
  if (data.weights) for (let i = 0; i < data.n; i++) w[i]! *= data.weights[i]!;

  const rng = new Rng(seed ^ 0x9e3779b9);
  const trainer = new MlpTrainer(params, { lr, dropout, weightDecay }, rng);
  const evalRows = val.length > 0 ? val : train;
  // in chunks of a minibatch, yielding between them like the training steps
  const valLossOf = function* (): Generator<void, { loss: number; probs: Float64Array }, void> {
    const probs = new Float64Array(evalRows.length);
    for (let s = 0; s < evalRows.length; s += batchSize) {
      probs.set(trainer.predict(data.X, evalRows.slice(s, s + batchSize)), s);
      yield;
    }
    let l = 0;
    evalRows.forEach((r, k) => (l += bce(probs[k]!, data.y[r]!)));
    return { loss: l / evalRows.length, probs };
  };

  const trainLoss: number[] = [];
  const valLoss: number[] = [];
  let best: { loss: number; epoch: number; params: MlpParams; probs: Float64Array } = {
    loss: Infinity,
    epoch: -1,
    params: trainer.snapshot(),
    probs: new Float64Array(),
  };
  const order = [...train];
  for (let epoch = 0; epoch < maxEpochs; epoch++) {
    rng.shuffle(order);
    let sum = 0;
    let batches = 0;
    for (let s = 0; s < order.length; s += batchSize) {
      sum += trainer.step(data.X, data.y, w, order.slice(s, s + batchSize));
      batches++;
      yield;
    }
    trainLoss.push(sum / batches);
    const v = yield* valLossOf();
    valLoss.push(v.loss);
    opts.log?.(`epoch ${epoch + 1}: train loss ${trainLoss[epoch]!.toFixed(4)} · val loss ${v.loss.toFixed(4)}`);
    if (v.loss < best.loss - 1e-5) best = { loss: v.loss, epoch, params: trainer.snapshot(), probs: v.probs };
    else if (epoch - best.epoch >= patience) break;
  }
  const yVal = evalRows.map((r) => (data.y[r]! >= 0.5 ? 1 : 0));
  let correct = 0;
  best.probs.forEach((p, k) => (correct += (p >= 0.5 ? 1 : 0) === yVal[k] ? 1 : 0));
  return {
    params: best.params,
    report: {
      seed,
      rows: { train: train.length, val: val.length },
      positiveShare: posShare,
      balanced,
      epochs: trainLoss.length,
      bestEpoch: best.epoch + 1,
      trainLoss,
      valLoss,
      valAuc: auc(best.probs, yVal),
      valAccuracy: correct / Math.max(1, yVal.length),
    },
  };
}

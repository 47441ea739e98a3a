/**
 * The router network, in plain TypeScript: x → standardise → [Linear → ReLU]* → Linear → sigmoid.
 * CITER's shape is h → 2h → h → 1 on the SLM's hidden state (h = the SLM's hidden size); ours caps the
 * layers at 128 → 64 (`routerSizes`), because on Qwen2.5-0.5B (h = 896) CITER's 3.2M multiply-adds cost
 * +4–7 ms a token on a CPU (bench figure a) and 123k fit the ~10–50k labelled positions better. BatchNorm is
 * replaced by a fixed input standardisation (mean/std from the training split), which is what a
 * folded BatchNorm amounts to at inference; dropout is applied during training only.
 *
 * No ML dependency: the networks are small (h = 64 for stories260K: ~17k weights; h = 896 for Qwen2.5-
 * 0.5B: ~3.2M) and one forward pass per token is a few microseconds to a millisecond.
 */
import { Rng } from "../shared/prng.js";

export interface MlpParams {
  /** layer widths including input and the single output, e.g. [67, 128, 64, 1] */
  sizes: number[];
  /** per layer l: weights (sizes[l+1] × sizes[l], row-major) */
  weights: Float32Array[];
  biases: Float32Array[];
  /** input standardisation */
  mean: Float32Array;
  std: Float32Array;
}

/** The default network: inputs → 2w → w → 1 with w = min(h, 64) (identical to CITER's below h = 64). */
export function routerSizes(inputDim: number, hiddenSize: number): number[] {
  const w = Math.min(hiddenSize, 64);
  return [inputDim, 2 * w, w, 1];
}

/** CITER's own shape, h → 2h → h → 1 (`router:train --sizes 2h,h`). */
export function citerSizes(inputDim: number, hiddenSize: number): number[] {
  return [inputDim, 2 * hiddenSize, hiddenSize, 1];
}

/** He initialisation (ReLU layers), seeded. */
export function initMlp(sizes: number[], seed: number): MlpParams {
  const rng = new Rng(seed);
  const weights: Float32Array[] = [];
  const biases: Float32Array[] = [];
  for (let l = 0; l + 1 < sizes.length; l++) {
    const nIn = sizes[l]!;
    const nOut = sizes[l + 1]!;
    const w = new Float32Array(nIn * nOut);
    const scale = Math.sqrt(2 / nIn);
    for (let i = 0; i < w.length; i++) w[i] = rng.normal() * scale;
    weights.push(w);
    biases.push(new Float32Array(nOut));
  }
  return { sizes, weights, biases, mean: new Float32Array(sizes[0]!), std: new Float32Array(sizes[0]!).fill(1) };
}

export const sigmoid = (z: number): number => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));

/**
 * The logit for one input (inference). Float32 activations and an inner loop unrolled by four with
 * separate accumulators: on a Qwen2.5-0.5B-sized router (899→1792→896→1, 3.2M multiply-adds) this
 * halves the time per token against the plain loop, keeping the router small next to an SLM step.
 */
export function mlpLogit(p: MlpParams, x: ArrayLike<number>): number {
  const n0 = p.sizes[0]!;
  if (x.length !== n0) throw new Error(`Router input has ${x.length} values, the network expects ${n0}`);
  let a = new Float32Array(n0);
  for (let i = 0; i < n0; i++) a[i] = (x[i]! - p.mean[i]!) / p.std[i]!;
  const L = p.weights.length;
  for (let l = 0; l < L; l++) {
    const nIn = p.sizes[l]!;
    const nOut = p.sizes[l + 1]!;
    const w = p.weights[l]!;
    const b = p.biases[l]!;
    const z = new Float32Array(nOut);
    const n4 = nIn - (nIn % 4);
    for (let o = 0; o < nOut; o++) {
      const row = o * nIn;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let i = 0;
      for (; i < n4; i += 4) {
        s0 += w[row + i]! * a[i]!;
        s1 += w[row + i + 1]! * a[i + 1]!;
        s2 += w[row + i + 2]! * a[i + 2]!;
        s3 += w[row + i + 3]! * a[i + 3]!;
      }
      for (; i < nIn; i++) s0 += w[row + i]! * a[i]!;
      const s = b[o]! + s0 + s1 + s2 + s3;
      z[o] = l + 1 < L && s < 0 ? 0 : s; // ReLU on hidden layers
    }
    a = z;
  }
  return a[0]!;
}

/** Mean and standard deviation per column of row-major data (n × d); std floored to avoid /0. */
export function columnStats(X: Float32Array, n: number, d: number, rows?: readonly number[]): { mean: Float32Array; std: Float32Array } {
  const idx = rows ?? Array.from({ length: n }, (_, i) => i);
  const mean = new Float64Array(d);
  const sq = new Float64Array(d);
  for (const r of idx) for (let j = 0; j < d; j++) mean[j] += X[r * d + j]!;
  for (let j = 0; j < d; j++) mean[j] /= Math.max(1, idx.length);
  for (const r of idx) for (let j = 0; j < d; j++) sq[j] += (X[r * d + j]! - mean[j]!) ** 2;
  const std = new Float32Array(d);
  for (let j = 0; j < d; j++) std[j] = Math.max(1e-6, Math.sqrt(sq[j]! / Math.max(1, idx.length)));
  return { mean: Float32Array.from(mean), std };
}

/**
 * Training-time network state: float64 master weights, gradients and Adam moments.
 * Kept separate from MlpParams so inference stays allocation-light and float32.
 */
export class MlpTrainer {
  readonly W: Float64Array[];
  readonly B: Float64Array[];
  private gW: Float64Array[];
  private gB: Float64Array[];
  private mW: Float64Array[];
  private vW: Float64Array[];
  private mB: Float64Array[];
  private vB: Float64Array[];
  private t = 0;
  private acts: Float64Array[];
  private masks: Uint8Array[];
  private deltas: Float64Array[];

  constructor(
    readonly p: MlpParams,
    readonly opt: { lr: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number; dropout?: number },
    private readonly rng: Rng,
  ) {
    this.W = p.weights.map((w) => Float64Array.from(w));
    this.B = p.biases.map((b) => Float64Array.from(b));
    const zeros = (xs: Float64Array[]) => xs.map((x) => new Float64Array(x.length));
    this.gW = zeros(this.W);
    this.gB = zeros(this.B);
    this.mW = zeros(this.W);
    this.vW = zeros(this.W);
    this.mB = zeros(this.B);
    this.vB = zeros(this.B);
    this.acts = p.sizes.map((n) => new Float64Array(n));
    this.masks = p.sizes.map((n) => new Uint8Array(n).fill(1));
    this.deltas = p.sizes.map((n) => new Float64Array(n));
  }

  /** Forward pass on standardised input (stored activations for backward); returns the logit. */
  private forward(x: Float32Array, off: number, train: boolean): number {
    const p = this.p;
    const a0 = this.acts[0]!;
    const n0 = p.sizes[0]!;
    for (let i = 0; i < n0; i++) a0[i] = (x[off + i]! - p.mean[i]!) / p.std[i]!;
    const L = this.W.length;
    const drop = train ? (this.opt.dropout ?? 0) : 0;
    for (let l = 0; l < L; l++) {
      const nIn = p.sizes[l]!;
      const nOut = p.sizes[l + 1]!;
      const w = this.W[l]!;
      const b = this.B[l]!;
      const a = this.acts[l]!;
      const z = this.acts[l + 1]!;
      const mask = this.masks[l + 1]!;
      const hiddenLayer = l + 1 < L;
      for (let o = 0; o < nOut; o++) {
        let s = b[o]!;
        const row = o * nIn;
        for (let i = 0; i < nIn; i++) s += w[row + i]! * a[i]!;
        if (hiddenLayer) {
          if (s < 0) s = 0;
          if (drop > 0) {
            const keep = this.rng.next() >= drop;
            mask[o] = keep ? 1 : 0;
            s = keep ? s / (1 - drop) : 0;
          } else mask[o] = 1;
        }
        z[o] = s;
      }
    }
    return this.acts[L]![0]!;
  }

  /** Accumulates the gradient of weight·BCE(sigmoid(logit), y); returns the unweighted loss. */
  private backward(dLogit: number): void {
    const p = this.p;
    const L = this.W.length;
    this.deltas[L]![0] = dLogit;
    for (let l = L - 1; l >= 0; l--) {
      const nIn = p.sizes[l]!;
      const nOut = p.sizes[l + 1]!;
      const w = this.W[l]!;
      const gw = this.gW[l]!;
      const gb = this.gB[l]!;
      const a = this.acts[l]!;
      const d = this.deltas[l + 1]!;
      const dPrev = this.deltas[l]!;
      if (l > 0) dPrev.fill(0);
      for (let o = 0; o < nOut; o++) {
        const g = d[o]!;
        if (g === 0) continue;
        gb[o] += g;
        const row = o * nIn;
        for (let i = 0; i < nIn; i++) {
          gw[row + i] += g * a[i]!;
          if (l > 0) dPrev[i] += g * w[row + i]!;
        }
      }
      if (l > 0) {
        // back through ReLU (+ dropout scaling) of layer l's output
        const drop = this.opt.dropout ?? 0;
        const act = this.acts[l]!;
        const mask = this.masks[l]!;
        for (let i = 0; i < nIn; i++) dPrev[i] = act[i]! > 0 && mask[i] ? dPrev[i]! * (drop > 0 ? 1 / (1 - drop) : 1) : 0;
      }
    }
  }

  /** One Adam step on a minibatch; returns the mean weighted loss. */
  step(X: Float32Array, y: ArrayLike<number>, w: ArrayLike<number>, rows: readonly number[]): number {
    const d = this.p.sizes[0]!;
    for (const g of this.gW) g.fill(0);
    for (const g of this.gB) g.fill(0);
    let loss = 0;
    let wsum = 0;
    for (const r of rows) {
      const z = this.forward(X, r * d, true);
      const q = sigmoid(z);
      const wt = w[r]!;
      loss += wt * bce(q, y[r]!);
      wsum += wt;
      this.backward(wt * (q - y[r]!));
    }
    const scale = 1 / Math.max(wsum, 1e-12);
    this.t++;
    const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0 } = this.opt;
    const c1 = 1 - beta1 ** this.t;
    const c2 = 1 - beta2 ** this.t;
    const update = (param: Float64Array, grad: Float64Array, m: Float64Array, v: Float64Array, decay: number) => {
      for (let i = 0; i < param.length; i++) {
        const g = grad[i]! * scale + decay * param[i]!;
        m[i] = beta1 * m[i]! + (1 - beta1) * g;
        v[i] = beta2 * v[i]! + (1 - beta2) * g * g;
        param[i] -= (lr * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + eps);
      }
    };
    for (let l = 0; l < this.W.length; l++) {
      update(this.W[l]!, this.gW[l]!, this.mW[l]!, this.vW[l]!, weightDecay);
      update(this.B[l]!, this.gB[l]!, this.mB[l]!, this.vB[l]!, 0);
    }
    return loss * scale;
  }

  /** Probability of class 1 for stored rows (no dropout). */
  predict(X: Float32Array, rows: readonly number[]): Float64Array {
    const d = this.p.sizes[0]!;
    const out = new Float64Array(rows.length);
    rows.forEach((r, k) => (out[k] = sigmoid(this.forward(X, r * d, false))));
    return out;
  }

  /** The current weights as inference parameters. */
  snapshot(): MlpParams {
    return {
      sizes: [...this.p.sizes],
      weights: this.W.map((w) => Float32Array.from(w)),
      biases: this.B.map((b) => Float32Array.from(b)),
      mean: Float32Array.from(this.p.mean),
      std: Float32Array.from(this.p.std),
    };
  }
}

export function bce(q: number, y: number): number {
  const e = 1e-7;
  return -(y * Math.log(Math.max(q, e)) + (1 - y) * Math.log(Math.max(1 - q, e)));
}

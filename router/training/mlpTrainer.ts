/**
 * Training the router network (`../mlp.ts`): column statistics for the input standardisation, the
 * loss, and the trainer (float64 master weights, backpropagation, Adam, dropout). Only the training
 * tools and the app's self-distillation load this; scoring a token needs `../mlp.ts` alone.
 */
import type { Rng } from "../../shared/prng.js";
import { sigmoid, type MlpParams } from "../mlp.js";

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

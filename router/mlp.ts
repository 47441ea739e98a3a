/**
 * The router network, in plain TypeScript: x → standardise → [Linear → ReLU]* → Linear → sigmoid.
 * CITER's shape is h → 2h → h → 1 on the SLM's hidden state (h = the SLM's hidden size); ours caps the
 * layers at 128 → 64 (`routerSizes`), because on Qwen2.5-0.5B (h = 896) CITER's 3.2M multiply-adds cost
 * +4–7 ms a token on a CPU (bench figure a) and 123k fit the ~10–50k labelled positions better. BatchNorm is
 * replaced by a fixed input standardisation (mean/std from the training split), which is what a
 * folded BatchNorm amounts to at inference; dropout is applied during training only
 * (`training/mlpTrainer.ts`: scoring a token loads this file alone).
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

/** Training the router network on small synthetic problems (no models needed). */
import { describe, expect, it } from "vitest";
import { initMlp, mlpLogit, sigmoid } from "../../router/mlp.js";
import { MlpTrainer } from "../../router/training/mlpTrainer.js";
import { Rng } from "../../shared/prng.js";
import { auc, splitByGroup, trainRouter, type TrainData } from "../../router/training/train.js";

/** n points in d dims; label from `f`; each point its own group. */
function synth(n: number, d: number, seed: number, f: (x: number[]) => boolean): TrainData {
  const rng = new Rng(seed);
  const X = new Float32Array(n * d);
  const y = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const x = Array.from({ length: d }, () => rng.normal());
    X.set(x, i * d);
    y[i] = f(x) ? 1 : 0;
  }
  return { X, y, groups: Int32Array.from({ length: n }, (_, i) => i), n, d };
}

describe("router MLP training", () => {
  it("the loss falls on a tiny noisy problem", () => {
    const rng = new Rng(3);
    const data = synth(400, 4, 11, (x) => x[0]! + 0.5 * x[1]! + 0.8 * rng.normal() > 0);
    const { report } = trainRouter(data, { hiddenSize: 8, seed: 5, maxEpochs: 15, patience: 100, dropout: 0 });
    expect(report.trainLoss.length).toBe(15);
    expect(report.trainLoss.at(-1)!).toBeLessThan(report.trainLoss[0]! * 0.8);
    expect(Math.min(...report.valLoss)).toBeLessThan(report.valLoss[0]!);
  });

  it("learns a separable (non-linear) case", () => {
    // inside vs outside a circle: not linearly separable, needs the hidden layers
    const data = synth(1200, 2, 21, (x) => x[0]! * x[0]! + x[1]! * x[1]! < 1.2);
    const { params, report } = trainRouter(data, { hiddenSize: 16, seed: 1, maxEpochs: 80, lr: 3e-3, dropout: 0 });
    expect(report.valAccuracy).toBeGreaterThan(0.93);
    expect(report.valAuc).toBeGreaterThan(0.97);
    // inference path (float32 params) agrees with training-time predictions
    expect(sigmoid(mlpLogit(params, [0, 0]))).toBeGreaterThan(0.9);
    expect(sigmoid(mlpLogit(params, [2.5, 2.5]))).toBeLessThan(0.1);
  });

  it("is reproducible: same seed, same weights; another seed, other weights", () => {
    const data = synth(200, 3, 2, (x) => x[2]! > 0.3);
    const o = { hiddenSize: 4, maxEpochs: 5, patience: 100 };
    const a = trainRouter(data, { ...o, seed: 7 }).params;
    const b = trainRouter(data, { ...o, seed: 7 }).params;
    const c = trainRouter(data, { ...o, seed: 8 }).params;
    expect(Buffer.from(a.weights[0]!.buffer).equals(Buffer.from(b.weights[0]!.buffer))).toBe(true);
    expect(Buffer.from(a.weights[0]!.buffer).equals(Buffer.from(c.weights[0]!.buffer))).toBe(false);
  });

  it("weights the classes when one is rare, and still ranks it", () => {
    const data = synth(1000, 2, 4, (x) => x[0]! > 1.3); // ~10% positives
    const { report } = trainRouter(data, { hiddenSize: 8, seed: 2, maxEpochs: 30, dropout: 0 });
    expect(report.balanced).toBe(true);
    expect(report.positiveShare).toBeLessThan(0.2);
    expect(report.valAuc).toBeGreaterThan(0.95);
  });

  it("backpropagation matches a numerical gradient", () => {
    const p = initMlp([3, 5, 4, 1], 9);
    p.biases.forEach((b) => b.fill(0.1)); // keep ReLUs away from their kink
    const X = Float32Array.from([0.3, -1.2, 0.8]);
    const loss = (w00: number) => {
      const q = { ...p, weights: p.weights.map((w, l) => (l === 0 ? Float32Array.from(w, (v, i) => (i === 0 ? w00 : v)) : w)) };
      const z = mlpLogit(q, X);
      return Math.log(1 + Math.exp(-z)); // BCE with y = 1
    };
    const h = 1e-3;
    const w0 = p.weights[0]![0]!;
    const numeric = (loss(w0 + h) - loss(w0 - h)) / (2 * h);
    // one Adam step with a tiny lr moves w00 by -lr·sign(grad): check the sign and that grad ≠ 0
    const t = new MlpTrainer(p, { lr: 1e-6 }, new Rng(1));
    t.step(X, [1], [1], [0]);
    const moved = t.W[0]![0]! - w0;
    expect(Math.abs(numeric)).toBeGreaterThan(1e-6);
    expect(Math.sign(moved)).toBe(-Math.sign(numeric));
  });

  it("splits by sequence, never inside one, 80/20", () => {
    const groups = Int32Array.from({ length: 1000 }, (_, i) => Math.floor(i / 10));
    const { train, val } = splitByGroup(groups, 0.2, 1);
    expect(val.length).toBe(200);
    const tg = new Set(train.map((i) => groups[i]));
    for (const i of val) expect(tg.has(groups[i]!)).toBe(false);
  });

  it("auc: 1 for a perfect ranking, 0.5 for ties", () => {
    expect(auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])).toBe(1);
    expect(auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1])).toBe(0.5);
    expect(auc([0.9, 0.1], [0, 1])).toBe(0);
  });
});

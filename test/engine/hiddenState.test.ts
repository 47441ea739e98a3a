/**
 * The undocumented hidden-state accessor (electron/engine/hiddenState.ts). Fails loudly if a
 * node-llama-cpp upgrade removes it, and proves it returns the state the output layer reads:
 * W_out · h reproduces the model's next-token choice and probability.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GgmlType, readGguf, readTensorData } from "../../inference/gguf.js";
import { LocalModel } from "../../inference/localModel.js";
import { hasStories, noteMissingShared, stories260K } from "../helpers/shared.js";

describe("SLM hidden state", () => {
  let slm: LocalModel | undefined;
  beforeAll(async () => {
    if (!hasStories) return noteMissingShared("hidden-state check against the output matrix");
    slm = await LocalModel.load(stories260K, { hiddenState: true, contextSize: 256 });
  });
  afterAll(async () => slm?.dispose());

  it.skipIf(!hasStories)("is the post-norm last-layer state: W_out · h gives the greedy token and its probability", async () => {
    const gguf = readGguf(stories260K);
    const out = gguf.tensor("output.weight")!;
    expect(out.type).toBe(GgmlType.F32);
    const [nEmbd, nVocab] = out.shape;
    const raw = readTensorData(gguf, out);
    const W = new Float32Array(raw.buffer, raw.byteOffset, nEmbd * nVocab);

    const needs = { top1Prob: true, topK: 0, hidden: true };
    let step = await slm!.begin(slm!.tokenizeText("Once upon a time"), needs);
    const seen = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const h = step.hidden!;
      expect(h).toBeInstanceOf(Float64Array);
      expect(h.length).toBe(slm!.hiddenSize);
      seen.add(Array.from(h.slice(0, 4)).join(","));
      const logits = new Float64Array(nVocab);
      for (let r = 0; r < nVocab; r++) {
        let s = 0;
        for (let c = 0; c < nEmbd; c++) s += W[r * nEmbd + c] * h[c];
        logits[r] = s;
      }
      let arg = 0;
      for (let r = 1; r < nVocab; r++) if (logits[r] > logits[arg]) arg = r;
      const max = logits[arg];
      let z = 0;
      for (const l of logits) z += Math.exp(l - max);
      expect(arg).toBe(step.tokenId);
      expect(1 / z).toBeCloseTo(step.top1Prob, 3);
      step = await slm!.advance(step.tokenId, needs);
    }
    expect(seen.size).toBeGreaterThan(10); // a new state at every position
  });

  it.skipIf(!hasStories)("is absent unless the context was created for it", async () => {
    const plain = await LocalModel.load(stories260K, { contextSize: 128 });
    try {
      const step = await plain.begin(plain.tokenizeText("Once"), { top1Prob: true, topK: 0, hidden: true });
      expect(step.hidden).toBeUndefined();
    } finally {
      await plain.dispose();
    }
  });
});

import { describe, expect, it } from "vitest";
import { ConfidenceRouter } from "../../shared/router.js";
import { decide, decideStep, keptFeatures, stepFeatures } from "../../shared/routing.js";

const step = {
  tokenId: 5,
  top1Prob: 0.4,
  top: [
    { tokenId: 5, prob: 0.4 },
    { tokenId: 9, prob: 0.3 },
  ],
  hidden: Float64Array.from([0.1, 0.2]),
};

describe("the routing decision, defined once", () => {
  it("a step's features: top-1, top-k probabilities, hidden state and the answer position", () => {
    const f = stepFeatures(step, 3);
    expect(f).toEqual({ top1Prob: 0.4, topProbs: [0.4, 0.3], hidden: step.hidden, position: 3 });
    expect(f.hidden).toBe(step.hidden); // read in place, not copied
    expect(stepFeatures({ top1Prob: Number.NaN }, 0)).toEqual({
      top1Prob: Number.NaN,
      topProbs: undefined,
      hidden: undefined,
      position: 0,
    });
  });

  it("kept features copy the hidden state to float32, the rest alike", () => {
    const k = keptFeatures(step, 3);
    expect(k.hidden).toBeInstanceOf(Float32Array);
    expect(k.hidden).not.toBe(step.hidden);
    expect(Array.from(k.hidden!)).toEqual(Array.from(Float32Array.from(step.hidden)));
    expect({ ...k, hidden: undefined }).toEqual({ ...stepFeatures(step, 3), hidden: undefined });
  });

  it("the decision: the router's score against τ, cloud when below", () => {
    const r = new ConfidenceRouter();
    expect(decideStep(r, step, 0, 0.5)).toEqual({ confidence: 0.4, tau: 0.5, toCloud: true });
    expect(decideStep(r, step, 0, 0.4)).toEqual({ confidence: 0.4, tau: 0.4, toCloud: false });
    expect(decide(r, { top1Prob: 0.9 }, 0).toCloud).toBe(false); // τ = 0: never
    expect(decide(r, { top1Prob: 1 }, 1).toCloud).toBe(true); // τ = 1: always
  });
});

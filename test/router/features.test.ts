/** Feature vectors: layout, the entropy estimate, and clear errors for missing inputs. */
import { describe, expect, it } from "vitest";
import { featureDim, featureNeeds, featureVector, parseFeatureSpec, topKEntropy } from "../../router/features.js";

describe("router features", () => {
  const hidden = Float64Array.from([1, 2, 3, 4]);
  it("lays out hidden, top-1, margin, entropy in that order", () => {
    const spec = { hidden: true, top1: true, dist: true, topK: 3 };
    const v = featureVector({ top1Prob: 0.6, topProbs: [0.6, 0.3, 0.05, 0.05], hidden }, spec, 4);
    expect(v.length).toBe(featureDim(spec, 4));
    expect(Array.from(v.slice(0, 5))).toEqual([1, 2, 3, 4, Math.fround(0.6)]);
    expect(v[5]).toBeCloseTo(0.3, 6);
    expect(v[6]).toBeCloseTo(topKEntropy([0.6, 0.3, 0.05]), 6);
  });
  it("entropy over the top-k counts the rest as one bucket; 0 for a certain token", () => {
    expect(topKEntropy([1])).toBe(0);
    expect(topKEntropy([0.5, 0.5])).toBeCloseTo(Math.log(2), 12);
    expect(topKEntropy([0.5])).toBeCloseTo(Math.log(2), 12);
    expect(topKEntropy([0.25, 0.25, 0.25])).toBeGreaterThan(topKEntropy([0.7, 0.1, 0.1]));
  });
  it("asks the SLM only for what the spec needs", () => {
    expect(featureNeeds(parseFeatureSpec("hidden"))).toEqual({ top1Prob: false, topK: 0, hidden: true });
    expect(featureNeeds(parseFeatureSpec("top1,dist", 8))).toEqual({ top1Prob: true, topK: 8, hidden: false });
    expect(() => parseFeatureSpec("hidden,logits")).toThrow(/Unknown feature "logits"/);
  });
  it("fails clearly when a needed feature is missing or the wrong size", () => {
    const spec = parseFeatureSpec("hidden,top1,dist");
    expect(() => featureVector({ top1Prob: 0.5, topProbs: [0.5, 0.2] }, spec, 4)).toThrow(/hidden state \(4 values\), got none/);
    expect(() => featureVector({ top1Prob: 0.5, topProbs: [0.5, 0.2], hidden: new Float64Array(3) }, spec, 4)).toThrow(/got 3/);
    expect(() => featureVector({ top1Prob: 0.5, hidden }, spec, 4)).toThrow(/top-8 probabilities/);
  });
});

import { describe, expect, it } from "vitest";
import { ConfidenceRouter, MAX_CONFIDENCE, clampConfidence, routesToCloud, validateTau } from "../../shared/router.js";
import { countOrigins } from "../../shared/events.js";

describe("router maths", () => {
  const confidences = [0, 1e-12, 0.01, 0.3, 0.5, 0.5000001, 0.99, MAX_CONFIDENCE, 1, 1.5, Number.NaN];

  it("τ = 0 routes nothing, τ = 1 routes everything", () => {
    for (const c of confidences) {
      expect(routesToCloud(c, 0)).toBe(false);
      expect(routesToCloud(c, 1)).toBe(true);
    }
  });

  it("the set of routed confidences only grows with τ", () => {
    const taus = Array.from({ length: 101 }, (_, i) => i / 100);
    for (const c of confidences) {
      let prev = false;
      for (const t of taus) {
        const r = routesToCloud(c, t);
        if (prev) expect(r).toBe(true);
        prev = r;
      }
    }
  });

  it("clamps confidences into [0, 1) and treats NaN as no confidence", () => {
    expect(clampConfidence(2)).toBe(MAX_CONFIDENCE);
    expect(clampConfidence(-1)).toBe(0);
    expect(clampConfidence(Number.NaN)).toBe(0);
  });

  it("rejects τ outside [0, 1]", () => {
    expect(() => validateTau(-0.1)).toThrow(RangeError);
    expect(() => validateTau(1.1)).toThrow(RangeError);
    expect(() => validateTau(Number.NaN)).toThrow(RangeError);
    expect(validateTau(0.4)).toBe(0.4);
  });

  it("the confidence router scores the SLM's top-1 probability", () => {
    const r = new ConfidenceRouter();
    expect(r.needs.top1Prob).toBe(true);
    expect(r.score({ top1Prob: 0.42 })).toBe(0.42);
  });

  it("counts origins and cloud calls", () => {
    expect(
      countOrigins([
        { origin: "local", cloudLatencyMs: null },
        { origin: "cloud", cloudLatencyMs: 12 },
        { origin: "fallback", cloudLatencyMs: 1500 },
        { origin: "fallback", cloudLatencyMs: null },
      ]),
    ).toEqual({ tokens: 4, cloudTokens: 1, fallbackTokens: 2, cloudCalls: 2 });
  });
});

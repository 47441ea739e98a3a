/** The label rules, the oracle's definition and τ calibration (pure). */
import { describe, expect, it } from "vitest";
import { tauForShare } from "../../router/training/collect.js";
import { labelPosition, OracleBudget, oracleAgreement } from "../../router/training/labels.js";
import { routesToCloud } from "../../shared/router.js";

describe("CITER label rules", () => {
  it("SLM greedy == reference → acceptable (even when the LLM differs)", () => {
    expect(labelPosition({ slmTok: 5, llmTok: 7, refTok: 5 })).toEqual({ label: 1, rule: "slm-matches" });
  });
  it("else LLM greedy == reference → needs the LLM", () => {
    expect(labelPosition({ slmTok: 5, llmTok: 7, refTok: 7 })).toEqual({ label: 0, rule: "llm-matches" });
  });
  it("both differ, checkable: the rollouts decide; neither correct → needs the LLM", () => {
    expect(labelPosition({ slmTok: 1, llmTok: 2, refTok: 3, rollout: { slmCorrect: true, llmCorrect: false } })).toEqual({
      label: 1,
      rule: "rollout",
    });
    expect(labelPosition({ slmTok: 1, llmTok: 2, refTok: 3, rollout: { slmCorrect: true, llmCorrect: true } }).label).toBe(1);
    expect(labelPosition({ slmTok: 1, llmTok: 2, refTok: 3, rollout: { slmCorrect: false, llmCorrect: true } }).label).toBe(0);
    expect(labelPosition({ slmTok: 1, llmTok: 2, refTok: 3, rollout: { slmCorrect: false, llmCorrect: false } }).label).toBe(0);
  });
  it("both differ, not checkable: the LLM judges the SLM's token against the reference", () => {
    const probs: Record<number, number> = { 1: 0.3, 2: 0.5, 3: 0.2 };
    expect(labelPosition({ slmTok: 1, llmTok: 2, refTok: 3, llmProb: (t) => probs[t]! })).toEqual({ label: 1, rule: "llm-judge" });
    expect(labelPosition({ slmTok: 3, llmTok: 2, refTok: 1, llmProb: (t) => probs[t]! })).toEqual({ label: 0, rule: "llm-judge" });
  });
  it("both differ with nothing to decide by: a clear error", () => {
    expect(() => labelPosition({ slmTok: 1, llmTok: 2, refTok: 3 })).toThrow(/neither a rollout nor LLM probabilities/);
  });
});

describe("the oracle", () => {
  it("routes only where the greedy tokens differ, within the running budget", () => {
    const b = new OracleBudget(0.25);
    const decisions = Array.from({ length: 100 }, () => b.route(1, 2)); // always disagreeing
    const routed = decisions.filter(Boolean).length;
    expect(routed).toBe(25);
    for (let i = 1; i <= 100; i++) expect(decisions.slice(0, i).filter(Boolean).length).toBeLessThanOrEqual(0.25 * i + 1e-9);
    const agreeing = new OracleBudget(1);
    expect(Array.from({ length: 10 }, () => agreeing.route(3, 3)).some(Boolean)).toBe(false);
  });
  it("teacher-forced: agreement = agreeing + routed disagreements, capped by the budget", () => {
    const dis = [true, false, true, false, false, true, false, false, false, false]; // 30% disagree
    expect(oracleAgreement(dis, 0.1)).toEqual({ agreement: 0.8, routed: 1 });
    expect(oracleAgreement(dis, 0.3)).toEqual({ agreement: 1, routed: 3 });
    expect(oracleAgreement(dis, 0.5)).toEqual({ agreement: 1, routed: 3 }); // never routes an agreeing position
    expect(oracleAgreement(dis, 0).agreement).toBe(0.7);
  });
});

describe("τ for a cloud share", () => {
  it("routes (score < τ) the requested share of positions", () => {
    const scores = Array.from({ length: 200 }, (_, i) => ((i * 37) % 200) / 200);
    for (const s of [0.025, 0.1, 0.3]) {
      const tau = tauForShare(scores, s);
      const share = scores.filter((c) => routesToCloud(c, tau)).length / scores.length;
      expect(share).toBeCloseTo(s, 2);
    }
    expect(tauForShare(scores, 0)).toBe(0);
    expect(tauForShare(scores, 1)).toBe(1);
  });
});

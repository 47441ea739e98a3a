import { describe, expect, it } from "vitest";
import { answerFigures, formatBytes, formatPercent, routedShareAt } from "../../renderer/state/answerStats.js";

describe("answer figures", () => {
  const tokens = [0.1, 0.3, 0.6, 0.9].map((confidence, index) => ({
    index,
    tokenId: index,
    text: "x",
    origin: (confidence < 0.5 ? "cloud" : "local") as "cloud" | "local",
    confidence,
    tau: 0.5,
    cloudLatencyMs: confidence < 0.5 ? 2 : null,
    slmTokenId: index,
  }));

  it("counts origins and the cloud share", () => {
    const f = answerFigures({ id: "a", role: "assistant", content: "", createdAt: 0, tokens });
    expect(f).toMatchObject({ tokens: 4, cloudTokens: 2, cloudCalls: 2, cloudShare: 0.5, tokensPerSecond: null });
  });

  it("the share τ would route is monotone in τ, 0 at τ = 0 and 1 at τ = 1", () => {
    let prev = -1;
    for (let tau = 0; tau <= 1.0001; tau += 0.05) {
      const s = routedShareAt(tokens, tau);
      expect(s).toBeGreaterThanOrEqual(prev);
      prev = s;
    }
    expect(routedShareAt(tokens, 0)).toBe(0);
    expect(routedShareAt(tokens, 1)).toBe(1);
    expect(routedShareAt([], 0.5)).toBe(0);
  });

  it("formats", () => {
    expect(formatPercent(0.5)).toBe("50%");
    expect(formatPercent(0.034)).toBe("3.4%");
    expect(formatBytes(900)).toBe("900 B");
    expect(formatBytes(3 * 1024)).toBe("3.0 KB");
  });
});

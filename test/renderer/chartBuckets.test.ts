import { describe, expect, it } from "vitest";
import { bucketOf, bucketTokens, type ChartToken } from "../../renderer/state/chartBuckets.js";

const tok = (confidence: number, origin: ChartToken["origin"] = "local", tau = 0.5): ChartToken => ({ confidence, tau, origin });

describe("chart buckets", () => {
  it("one bucket per token when they fit", () => {
    const b = bucketTokens([tok(0.9), tok(0.2, "cloud"), tok(0.4, "fallback")], 100);
    expect(b.map((x) => [x.from, x.to, x.min, x.mean, x.cloud, x.fallback, x.lowest])).toEqual([
      [0, 1, 0.9, 0.9, 0, 0, 0],
      [1, 2, 0.2, 0.2, 1, 0, 1],
      [2, 3, 0.4, 0.4, 0, 1, 2],
    ]);
  });

  it("a long answer: every token in exactly one bucket; min, mean, marks and the lowest token per bucket", () => {
    const tokens = Array.from({ length: 900 }, (_, i) => tok((i % 10) / 10, i % 7 === 0 ? "cloud" : "local", i < 450 ? 0.3 : 0.6));
    const b = bucketTokens(tokens, 200);
    expect(b).toHaveLength(200);
    expect(b[0].from).toBe(0);
    expect(b[b.length - 1].to).toBe(900);
    for (let i = 1; i < b.length; i++) expect(b[i].from).toBe(b[i - 1].to);
    expect(b.reduce((s, x) => s + x.cloud, 0)).toBe(tokens.filter((t) => t.origin === "cloud").length);
    for (const x of b) {
      const slice = tokens.slice(x.from, x.to).map((t) => t.confidence);
      expect(x.min).toBe(Math.min(...slice));
      expect(x.mean).toBeCloseTo(slice.reduce((s, c) => s + c, 0) / slice.length, 10);
      expect(tokens[x.lowest].confidence).toBe(x.min);
    }
    expect(b[0].tau).toBe(0.3);
    expect(b[199].tau).toBe(0.6);
    expect(bucketOf(b, 0)).toBe(0);
    expect(bucketOf(b, 899)).toBe(199);
    for (const i of [5, 450, 777]) expect(b[bucketOf(b, i)].from <= i && i < b[bucketOf(b, i)].to).toBe(true);
  });

  it("no tokens: no buckets", () => {
    expect(bucketTokens([], 50)).toEqual([]);
  });
});

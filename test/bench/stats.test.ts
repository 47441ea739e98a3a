import { describe, expect, it } from "vitest";
import { everyKth, median, percentile } from "../../bench/stats.js";

describe("bench statistics", () => {
  it("median and nearest-rank percentiles", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(Number.isNaN(median([]))).toBe(true);
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile(xs, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
  });
  it("everyKth routes exactly one token in k", () => {
    const f = everyKth(14);
    const scores = Array.from({ length: 140 }, (_, i) => f(i));
    expect(scores.filter((s) => s === 0).length).toBe(10);
    expect(scores[13]).toBe(0);
    expect(scores[0]).toBe(1);
    expect(f(13)).toBe(0); // a position scored again (speculation) gets the same score
  });
});

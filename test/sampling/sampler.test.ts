import { describe, expect, it } from "vitest";
import { Rng } from "../../shared/prng.js";
import {
  DEFAULT_CHAT_SAMPLING,
  SAMPLING_PRESETS,
  penaltyWindow,
  presetConfig,
  presetOf,
  resolveSampling,
  sampleToken,
  samplingConfigSchema,
  uniformAt,
  type SamplingParams,
  type WeightedToken,
} from "../../shared/sampling.js";

const T1: SamplingParams = { ...SAMPLING_PRESETS.precise, temperature: 1 }; // temperature 1, no truncation, no penalty

/** Pearson's chi-square of observed counts against expected probabilities. */
function chiSquare(counts: number[], probs: number[], n: number): number {
  return counts.reduce((s, c, i) => s + (c - n * probs[i]!) ** 2 / (n * probs[i]!), 0);
}
// chi-square critical values at p = 0.001
const CRIT_0_001: Record<number, number> = { 4: 18.47, 9: 27.88, 19: 43.82 };

describe("uniformAt: the random number of (seed, position)", () => {
  it("is in [0, 1), depends only on its arguments, and differs across seeds and positions", () => {
    const xs = Array.from({ length: 1000 }, (_, i) => uniformAt(7, i));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(xs).toEqual(Array.from({ length: 1000 }, (_, i) => uniformAt(7, i)));
    expect(new Set(xs).size).toBe(1000);
    expect(uniformAt(8, 5)).not.toBe(uniformAt(7, 5));
    expect(uniformAt(0xffffffff, 0)).toBeLessThan(1);
    expect(() => uniformAt(1, -1)).toThrow(RangeError);
    expect(() => uniformAt(1, 1.5)).toThrow(RangeError);
  });

  it("is uniform over positions and over seeds (chi-square, 20 bins)", () => {
    const n = 20_000;
    const bins = (f: (i: number) => number) => {
      const c = new Array<number>(20).fill(0);
      for (let i = 0; i < n; i++) c[Math.floor(f(i) * 20)]!++;
      return c;
    };
    const even = new Array<number>(20).fill(1 / 20);
    expect(
      chiSquare(
        bins((i) => uniformAt(12345, i)),
        even,
        n,
      ),
    ).toBeLessThan(CRIT_0_001[19]!);
    expect(
      chiSquare(
        bins((i) => uniformAt(i, 17)),
        even,
        n,
      ),
    ).toBeLessThan(CRIT_0_001[19]!);
    // neighbouring positions are not correlated
    let sxy = 0;
    for (let i = 0; i < n; i++) sxy += (uniformAt(3, i) - 0.5) * (uniformAt(3, i + 1) - 0.5);
    expect(Math.abs(sxy / n / (1 / 12))).toBeLessThan(0.03);
  });
});

describe("sampleToken", () => {
  const cands: WeightedToken[] = [
    { tokenId: 10, weight: 0.5 },
    { tokenId: 11, weight: 0.25 },
    { tokenId: 12, weight: 0.15 },
    { tokenId: 13, weight: 0.07 },
    { tokenId: 14, weight: 0.03 },
  ];

  it("at temperature 1 with no truncation draws each token as often as its probability (chi-square, fixed seeds)", () => {
    const n = 20_000;
    const counts = new Array<number>(5).fill(0);
    for (let seed = 0; seed < n; seed++) counts[sampleToken(cands, T1, uniformAt(seed, 42)).tokenId - 10]!++;
    const probs = cands.map((c) => c.weight);
    expect(chiSquare(counts, probs, n)).toBeLessThan(CRIT_0_001[4]!);
    // the statistic has power: the same counts are far from a slightly different distribution
    expect(chiSquare(counts, [0.45, 0.3, 0.15, 0.07, 0.03], n)).toBeGreaterThan(10 * CRIT_0_001[4]!);
  });

  it("is greedy at temperature 0 and with top-k 1, whatever the number", () => {
    for (const u of [0, 0.3, 0.999999]) {
      expect(sampleToken(cands, SAMPLING_PRESETS.precise, u).tokenId).toBe(10);
      expect(sampleToken(cands, { ...T1, topK: 1 }, u).tokenId).toBe(10);
    }
  });

  it("does not depend on the candidates' order or scale, and breaks ties by token id", () => {
    const rng = new Rng(1);
    for (let i = 0; i < 200; i++) {
      const u = rng.next();
      const base = sampleToken(cands, T1, u).tokenId;
      const shuffled = rng.shuffle(cands.map((c) => ({ ...c, weight: c.weight * 7.5 })));
      expect(sampleToken(shuffled, T1, u).tokenId).toBe(base);
    }
    const tie = [
      { tokenId: 9, weight: 1 },
      { tokenId: 3, weight: 1 },
    ];
    expect(sampleToken(tie, SAMPLING_PRESETS.precise, 0.9).tokenId).toBe(3);
    expect(sampleToken([...tie].reverse(), T1, 0.2).tokenId).toBe(3);
  });

  it("truncates with top-k, top-p and min-p before the draw", () => {
    const seen = (p: SamplingParams) => {
      const ids = new Set<number>();
      for (let s = 0; s < 2000; s++) ids.add(sampleToken(cands, p, uniformAt(s, 0)).tokenId);
      return [...ids].sort();
    };
    expect(seen({ ...T1, topK: 2 })).toEqual([10, 11]);
    expect(seen({ ...T1, topP: 0.75 })).toEqual([10, 11]); // 0.5 + 0.25 reaches 0.75
    expect(seen({ ...T1, topP: 0.76 })).toEqual([10, 11, 12]);
    expect(seen({ ...T1, minP: 0.3 })).toEqual([10, 11, 12]); // 0.15 ≥ 0.3 × 0.5
    expect(seen(T1)).toEqual([10, 11, 12, 13, 14]);
    expect(sampleToken(cands, { ...T1, topK: 2 }, 0.5).kept).toBe(2);
  });

  it("sharpens with a lower temperature and flattens with a higher one", () => {
    const share = (temperature: number) => {
      let top = 0;
      for (let s = 0; s < 4000; s++) if (sampleToken(cands, { ...T1, temperature }, uniformAt(s, 1)).tokenId === 10) top++;
      return top / 4000;
    };
    const [cold, warm, hot] = [share(0.3), share(1), share(2)];
    expect(cold).toBeGreaterThan(0.85);
    expect(Math.abs(warm - 0.5)).toBeLessThan(0.03);
    expect(hot).toBeLessThan(0.4);
    // the reported probability is the drawn token's in the tempered distribution
    const p = sampleToken(cands, { ...T1, temperature: 0.5 }, 0).prob;
    const z = cands.reduce((s, c) => s + c.weight ** 2, 0);
    expect(p).toBeCloseTo(0.25 / z, 10);
  });

  it("refuses an empty or all-zero candidate list", () => {
    expect(() => sampleToken([], T1, 0.5)).toThrow(RangeError);
    expect(() => sampleToken([{ tokenId: 1, weight: 0 }], T1, 0.5)).toThrow(RangeError);
  });
});

describe("sampling settings", () => {
  it("presets validate, name themselves, and a config without a seed draws a new one per answer", () => {
    for (const name of ["precise", "balanced", "creative"] as const) {
      expect(samplingConfigSchema.safeParse(presetConfig(name)).success).toBe(true);
      expect(presetOf(SAMPLING_PRESETS[name])).toBe(name);
    }
    expect(presetOf({ ...SAMPLING_PRESETS.balanced, temperature: 0.71 })).toBe("custom");
    expect(DEFAULT_CHAT_SAMPLING.preset).toBe("balanced");
    expect(SAMPLING_PRESETS.balanced).toMatchObject({ temperature: 0.7, topP: 0.8, topK: 20, repeatPenalty: 1.05 });
    let next = 100;
    expect(resolveSampling(DEFAULT_CHAT_SAMPLING, () => next++).seed).toBe(100);
    expect(resolveSampling(DEFAULT_CHAT_SAMPLING, () => next++).seed).toBe(101);
    expect(resolveSampling(presetConfig("creative", 9)).seed).toBe(9);
    const drawn = new Set(Array.from({ length: 20 }, () => resolveSampling(DEFAULT_CHAT_SAMPLING).seed));
    expect(drawn.size).toBeGreaterThan(15);
  });

  it("rejects out-of-range parameters with the field named", () => {
    const bad = samplingConfigSchema.safeParse({ ...DEFAULT_CHAT_SAMPLING, topP: 0 });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(["topP"]);
    expect(() => resolveSampling({ ...DEFAULT_CHAT_SAMPLING, temperature: -1 })).toThrow();
    expect(samplingConfigSchema.safeParse({ ...DEFAULT_CHAT_SAMPLING, seed: 2 ** 32 }).success).toBe(false);
  });

  it("penalties look at the last repeatLastN committed tokens only", () => {
    expect(penaltyWindow([1, 2, 3, 4, 5], { ...T1, repeatLastN: 3 })).toEqual([3, 4, 5]);
    expect(penaltyWindow([1, 2], { ...T1, repeatLastN: 3 })).toEqual([1, 2]);
    expect(penaltyWindow([1, 2], { ...T1, repeatLastN: 0 })).toEqual([]);
  });
});

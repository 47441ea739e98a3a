/**
 * Eval with sampling: the flags (eval/samplingArgs.ts), the mean and spread over seeds
 * (eval/harness.ts freeRunning), and the sampled free-running decoding itself (router/training/pair.ts
 * runRouted) on the real stories260K pair: Tandem's draw at each position, from the model that writes it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalModel } from "../../inference/localModel.js";
import { runRouted } from "../../router/training/pair.js";
import { UsageError } from "../../shared/errors.js";
import { SAMPLING_PRESETS, sampleToken, uniformAt, type SamplingSettings } from "../../shared/sampling.js";
import { evalSampling, samplingLabel } from "../../eval/samplingArgs.js";
import { freeRunning } from "../../eval/harness.js";
import { hasStories, noteMissingShared } from "../helpers/shared.js";
import { storiesPair } from "../helpers/pair.js";

describe("eval's sampling flags", () => {
  it("greedy by default (Precise) and at temperature 0: no sampling, whatever --seeds says", () => {
    expect(evalSampling({}, 1)).toBeUndefined();
    expect(evalSampling({ temperature: "0", seeds: "5" }, 1)).toBeUndefined();
    expect(evalSampling({ preset: "precise" }, 1)).toBeUndefined();
  });

  it("a temperature or a preset samples, penalties off, seeds counted from --seed", () => {
    const s = evalSampling({ temperature: "0.7", seeds: "4" }, 10)!;
    expect(s.params).toEqual({ ...SAMPLING_PRESETS.precise, temperature: 0.7 });
    expect(s.seeds).toEqual([10, 11, 12, 13]);
    const b = evalSampling({ preset: "balanced", "top-p": "0.9" }, 1)!;
    expect(b.params).toEqual({ ...SAMPLING_PRESETS.balanced, topP: 0.9, repeatPenalty: 1 });
    expect(b.seeds).toEqual([1, 2, 3]);
    expect(samplingLabel(b)).toBe("sampled: temperature 0.7, top-k 20, top-p 0.9, min-p 0, no penalties · 3 seeds (1–3)");
  });

  it("a bad flag is a UsageError naming it", () => {
    const bad: [Record<string, string>, RegExp][] = [
      [{ temperature: "hot" }, /--temperature must be a number/],
      [{ temperature: "9" }, /--temperature/],
      [{ temperature: "1", "top-p": "0" }, /--top-p/],
      [{ temperature: "1", "top-k": "2.5" }, /--top-k/],
      [{ preset: "wild" }, /--preset must be one of precise, balanced, creative/],
      [{ temperature: "1", seeds: "0" }, /--seeds must be an integer from 1 to 100/],
      [{ temperature: "1", seeds: "" }, /--seeds must be a number/],
    ];
    for (const [flags, msg] of bad) {
      const err = (() => {
        try {
          evalSampling(flags, 1);
        } catch (e) {
          return e;
        }
      })();
      expect(err, JSON.stringify(flags)).toBeInstanceOf(UsageError);
      expect((err as Error).message).toMatch(msg);
    }
  });
});

describe("a row's free-running values over seeds", () => {
  const run = (logprob: number, share = 0.1, accuracy: number | null = null) => ({ share, logprob, accuracy, calls: 2, tps: 100 });

  it("one run (greedy): the run's own values, no spread", () => {
    const f = freeRunning([run(-2, 0.2, 0.5)], [run(-3)], [run(-1)]);
    expect(f).toEqual({ freeCloudShare: 0.2, meanLogprob: -2, logprobGapClosed: 0.5, accuracy: 0.5, cloudCalls: 2, tokensPerSecond: 100 });
  });

  it("several seeds: means, each seed's gap against its own ends, and sample standard deviations", () => {
    const f = freeRunning([run(-2, 0.1), run(-1.5, 0.3)], [run(-3), run(-2)], [run(-1), run(-1)]);
    // seed 1: (−2 − −3)/(−1 − −3) = 0.5; seed 2: (−1.5 − −2)/(−1 − −2) = 0.5
    expect(f.logprobGapClosed).toBeCloseTo(0.5, 12);
    expect(f.spread!.logprobGapClosed).toBeCloseTo(0, 12);
    expect(f.meanLogprob).toBeCloseTo(-1.75, 12);
    expect(f.spread!.meanLogprob).toBeCloseTo(Math.SQRT1_2 * 0.5, 12);
    expect(f.freeCloudShare).toBeCloseTo(0.2, 12);
    expect(f.spread).toMatchObject({ seeds: 2, accuracy: null });
  });
});

noteMissingShared("eval's sampled free-running decoding");
describe.skipIf(!hasStories)("sampled free-running decoding (stories260K pair)", () => {
  let slm: LocalModel;
  let llm: LocalModel;
  let prompt: number[];
  const needs = { top1Prob: true, topK: 0, hidden: false };
  const warm = (seed: number): SamplingSettings => ({ ...SAMPLING_PRESETS.precise, temperature: 1, topK: 40, seed });

  beforeAll(async () => {
    const files = (await storiesPair())!;
    slm = await LocalModel.load(files.slm, { contextSize: 512 });
    llm = await LocalModel.load(files.llm, { contextSize: 512 });
    prompt = slm.tokenizeText("once upon a time, there was a");
  });
  afterAll(async () => {
    await slm?.dispose();
    await llm?.dispose();
  });

  const decode = (route: boolean, sampling?: SamplingSettings) =>
    runRouted(slm, llm, prompt, () => route, { maxTokens: 24, slmNeeds: needs, score: true, sampling });

  /** The model alone, drawing with Tandem's sampler at each position from its full distribution. */
  async function alone(model: LocalModel, s: SamplingSettings, n: number): Promise<number[]> {
    const all = { top1Prob: false, topK: model.vocabSize, hidden: false };
    let step = await model.begin(prompt, all);
    const out: number[] = [];
    while (out.length < n) {
      const cands = step.top!.map((c) => ({ tokenId: c.tokenId, weight: c.prob }));
      const t = sampleToken(cands, s, uniformAt(s.seed, prompt.length + out.length)).tokenId;
      out.push(t);
      if (out.length < n) step = await model.advance(t, all);
    }
    return out;
  }

  it("never routed it is the SLM sampling alone, always routed the LLM alone (same seed and settings)", async () => {
    const local = (await decode(false, warm(5))).map((s) => s.chosen);
    expect(local.length).toBeGreaterThan(8);
    expect(await alone(slm, warm(5), local.length)).toEqual(local);
    const cloud = (await decode(true, warm(5))).map((s) => s.chosen);
    expect(await alone(llm, warm(5), cloud.length)).toEqual(cloud);
  });

  it("the same seed gives the same tokens, other seeds others; temperature 0 is the greedy decoding", async () => {
    const a = (await decode(false, warm(5))).map((s) => s.chosen);
    expect((await decode(false, warm(5))).map((s) => s.chosen)).toEqual(a);
    const others = new Set<string>();
    for (const seed of [6, 7, 8]) others.add((await decode(false, warm(seed))).map((s) => s.chosen).join(","));
    others.delete(a.join(","));
    expect(others.size).toBeGreaterThan(1);
    const greedy = await decode(false);
    expect((await decode(false, { ...warm(5), temperature: 0 })).map((s) => s.chosen)).toEqual(greedy.map((s) => s.chosen));
    expect(greedy.every((s) => s.chosen === s.slmTok)).toBe(true);
  });

  it("the router reads the features it asked for, not the whole distribution sampling reads", async () => {
    const seen: (number | undefined)[] = [];
    await runRouted(
      slm,
      llm,
      prompt,
      (p) => {
        seen.push(p.features.topProbs?.length);
        return false;
      },
      { maxTokens: 4, slmNeeds: { top1Prob: true, topK: 3, hidden: false }, score: false, sampling: warm(1) },
    );
    expect(seen).toEqual([3, 3, 3, 3]);
  });

  it("refuses penalties (they need the logits)", async () => {
    await expect(decode(false, { ...warm(1), repeatPenalty: 1.1 })).rejects.toThrow(/without penalties/);
  });
});

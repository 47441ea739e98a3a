/**
 * The device's SLM sampling (inference/localModel.ts over inference/sampling.ts), with real inference:
 * the fast path (llama.cpp's own chain: penalties, then top-k, at temperature 1) gives the candidates
 * the whole penalised vocabulary gives; the penalties look at the window of the committed history; a
 * step draws what the SLM sampling alone (a plain loop: test/sampling/plainSampling.ts) draws; and at
 * temperature 1 without truncation the first token's frequencies over many seeds are the model's
 * probabilities (chi-square, with a check that a slightly wrong distribution fails it).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Token } from "node-llama-cpp";
import { LocalModel, type StepNeeds } from "../../inference/localModel.js";
import { samplerOptions } from "../../inference/sampling.js";
import { SAMPLING_PRESETS, type SamplingSettings } from "../../shared/sampling.js";
import { randomQwenPair, storiesPair, type PairFiles } from "../helpers/pair.js";
import { hasStories } from "../helpers/shared.js";
import { chiSquareTest } from "./chiSquare.js";
import { distributionAfter, sampleAlone } from "./plainSampling.js";

const PENALISED: SamplingSettings = {
  temperature: 0.9,
  topK: 30,
  topP: 0.95,
  minP: 0.01,
  repeatPenalty: 1.3,
  repeatLastN: 16,
  presencePenalty: 0.2,
  frequencyPenalty: 0.1,
  seed: 0,
};
const FAST: StepNeeds = { top1Prob: false, topK: 0, hidden: false };
const FULL: StepNeeds = { top1Prob: true, topK: 0, hidden: false };

describe("the SLM's sampling", () => {
  let files: PairFiles;
  let slm: LocalModel;
  let prompt: number[];

  beforeAll(async () => {
    files = (hasStories ? await storiesPair() : null) ?? (await randomQwenPair());
    slm = await LocalModel.load(files.slm, { contextSize: 512 });
    prompt = slm.tokenizeText("Once upon a time, there was a little girl named Lily. She");
  }, 120_000);
  afterAll(async () => {
    await slm?.dispose();
  });

  async function answerOf(needs: StepNeeds, n: number): Promise<number[]> {
    const out: number[] = [];
    let step = await slm.begin(prompt, needs);
    for (let i = 0; i < n && !slm.isEndOfGeneration(step.tokenId); i++) {
      out.push(step.tokenId);
      step = await slm.advance(step.tokenId, needs);
    }
    return out;
  }

  it("llama.cpp's chain (penalties, then top-k, temperature 1) returns the penalised top k with the whole vocabulary's relative weights", async () => {
    const history = [...prompt, ...prompt.slice(3, 9)]; // repeated tokens in the window
    const full = await distributionAfter(slm.model, history, PENALISED);
    const ctx = await slm.model.createContext({ contextSize: 256, sequences: 1, threads: 1 });
    try {
      const seq = ctx.getSequence();
      const ids = history as Token[];
      const options = samplerOptions(PENALISED, "fast", () => history);
      const out = await seq.controlledEvaluate([...ids.slice(0, -1), [ids.at(-1)!, { generateNext: { probabilities: true, options } }]]);
      const fast = [...out[ids.length - 1]!.next!.probabilities!];
      expect(fast.length).toBe(PENALISED.topK);
      expect(fast.map(([t]) => t)).toEqual(full.slice(0, PENALISED.topK).map((c) => c.tokenId));
      for (const [i, [, p]] of fast.entries()) expect(p / fast[0]![1]).toBeCloseTo(full[i]!.weight / full[0]!.weight, 5);
      // and the penalties changed the distribution (else this checks nothing about them)
      const plain = await distributionAfter(slm.model, history);
      expect(plain.slice(0, 10).map((c) => c.tokenId)).not.toEqual(full.slice(0, 10).map((c) => c.tokenId));
    } finally {
      await ctx.dispose();
    }
  });

  it("the penalties look at the last repeatLastN tokens only (a presence penalty scales a window token's weight by e^-p)", async () => {
    const s: SamplingSettings = { ...SAMPLING_PRESETS.precise, temperature: 1, presencePenalty: 0.7, repeatLastN: 4, seed: 0 };
    const history = prompt;
    const window = new Set(history.slice(-4));
    const before = new Set(history.slice(0, -4).filter((t) => !window.has(t)));
    const plain = new Map((await distributionAfter(slm.model, history)).map((c) => [c.tokenId, c.weight]));
    const pen = new Map((await distributionAfter(slm.model, history, s)).map((c) => [c.tokenId, c.weight]));
    const outside = [...plain.keys()].find((t) => !window.has(t))!;
    const ratio = (t: number) => pen.get(t)! / pen.get(outside)! / (plain.get(t)! / plain.get(outside)!);
    for (const t of window) expect(ratio(t)).toBeCloseTo(Math.exp(-0.7), 4);
    for (const t of before) expect(ratio(t)).toBeCloseTo(1, 4);
  });

  it("the fast path and the full path draw the same tokens, seed after seed", async () => {
    for (let seed = 0; seed < 6; seed++) {
      const s = { ...PENALISED, seed };
      expect(await answerOf({ ...FAST, sampling: s }, 24)).toEqual(await answerOf({ ...FULL, sampling: s }, 24));
    }
  });

  it("a step draws what the SLM sampling alone draws (penalties over prompt and answer, the keyed number at each position)", async () => {
    for (const s of [
      { ...SAMPLING_PRESETS.balanced, seed: 11 },
      { ...SAMPLING_PRESETS.creative, seed: 12 },
      { ...PENALISED, seed: 13 },
    ]) {
      const alone = await sampleAlone(slm.model, prompt, s, 24);
      expect(await answerOf({ ...FAST, sampling: s }, 24)).toEqual(alone);
      expect(await answerOf({ ...FULL, sampling: s }, 24)).toEqual(alone);
    }
  }, 60_000);

  it("different seeds give different answers; greedy settings give the greedy answer", async () => {
    const a = await answerOf({ ...FAST, sampling: { ...SAMPLING_PRESETS.balanced, seed: 1 } }, 24);
    const b = await answerOf({ ...FAST, sampling: { ...SAMPLING_PRESETS.balanced, seed: 2 } }, 24);
    expect(a).not.toEqual(b);
    expect(await answerOf({ ...FULL, sampling: { ...SAMPLING_PRESETS.precise, seed: 5 } }, 24)).toEqual(await answerOf(FULL, 24));
  });

  it("at temperature 1 without truncation, the first token's frequencies over 3000 seeds are the model's probabilities (chi-square)", async () => {
    const t1: SamplingSettings = { ...SAMPLING_PRESETS.precise, temperature: 1, seed: 0 };
    const probs = await distributionAfter(slm.model, prompt);
    const counts = new Map<number, number>();
    const n = 3000;
    for (let seed = 0; seed < n; seed++) {
      const step = await slm.begin(prompt, { ...FULL, sampling: { ...t1, seed } });
      counts.set(step.tokenId, (counts.get(step.tokenId) ?? 0) + 1);
    }
    const { passes, wrongFails, right, wrong } = chiSquareTest(counts, probs, n);
    console.log(`local chi-square: ${right.stat.toFixed(1)} (df ${right.df}); against temperature 1.1: ${wrong.stat.toFixed(1)}`);
    expect(passes).toBe(true);
    expect(wrongFails).toBe(true);
  }, 120_000);
});

/**
 * Sampling with routing, real inference and a real cloud token server: at τ = 0 a sampled answer is
 * the SLM sampling alone and at τ = 1 the LLM sampling alone (each a plain loop: plainSampling.ts),
 * with the same seed and settings; different seeds give different answers; greedy settings keep
 * today's invariants; and a cloud position's token, over many seeds at temperature 1 without
 * truncation, comes as often as the LLM's probability says (chi-square, through the server).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TokenEvent } from "../../shared/events.js";
import { ConfidenceRouter, type Router } from "../../shared/router.js";
import { SAMPLING_PRESETS, type SamplingSettings } from "../../shared/sampling.js";
import type { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import { CollaborativeDecoder } from "../../electron/engine/decoder.js";
import { referenceDecode } from "../../electron/engine/decoding/reference.js";
import { LocalModel } from "../../inference/localModel.js";
import { getTandemLlama } from "../../inference/llama.js";
import { randomQwenPair, startPair, storiesPair, type PairFiles, type RunningPair } from "../helpers/pair.js";
import { hasStories } from "../helpers/shared.js";
import { chiSquareTest } from "./chiSquare.js";
import { distributionAfter, sampleAlone } from "./plainSampling.js";

const MAX = 32;
const BALANCED: SamplingSettings = { ...SAMPLING_PRESETS.balanced, seed: 77 };
/** A router that reads nothing: the SLM's steps take the fast path (llama.cpp's top-k), as the app's default router does. */
const scoreOnly = (score: number): Router => ({ name: `constant ${score}`, needs: { top1Prob: false, topK: 0, hidden: false }, score: () => score });

describe("sampling with routing", () => {
  let files: PairFiles;
  let pair: RunningPair;
  let cloud: TandemCloudClient;
  let llm: LocalModel;
  let prompt: number[];

  beforeAll(async () => {
    files = (hasStories ? await storiesPair() : null) ?? (await randomQwenPair());
    pair = await startPair(files);
    cloud = await pair.client({ backoffMs: 0, deadlineMs: 5000 });
    llm = await LocalModel.load(files.llm, { contextSize: 512 });
    prompt = pair.slm.tokenizeText("Once upon a time, there was a little dog");
    await getTandemLlama();
  }, 120_000);
  afterAll(async () => {
    await llm?.dispose();
    await pair?.close();
  });

  async function decode(router: Router, tau: number, sampling: SamplingSettings | undefined, how: "decoder" | "reference" = "decoder") {
    const events: TokenEvent[] = [];
    const it =
      how === "reference"
        ? referenceDecode(pair.slm, router, cloud, prompt, { tau, maxTokens: MAX, sampling })
        : new CollaborativeDecoder(pair.slm, router, cloud).generate(prompt, { tau, maxTokens: MAX, sampling });
    for await (const e of it) events.push(e);
    return events;
  }
  const tokens = (es: TokenEvent[]) => es.map((e) => e.tokenId);

  it.each([
    ["the confidence router (full path)", () => new ConfidenceRouter()],
    ["a router reading nothing (fast path)", () => scoreOnly(0.5)],
  ])("τ = 0: the SLM sampling alone; τ = 1: the LLM sampling alone, same seed and settings — %s", async (_name, router) => {
    const slmAlone = await sampleAlone(pair.slm.model, prompt, BALANCED, MAX);
    const llmAlone = await sampleAlone(llm.model, prompt, BALANCED, MAX);
    expect(slmAlone).not.toEqual(llmAlone);
    for (const how of ["decoder", "reference"] as const) {
      const local = await decode(router(), 0, BALANCED, how);
      expect(tokens(local)).toEqual(slmAlone);
      expect(local.every((e) => e.origin === "local" && e.slmProb! > 0 && e.slmProb! <= 1)).toBe(true);
      const remote = await decode(router(), 1, BALANCED, how);
      expect(tokens(remote)).toEqual(llmAlone);
      expect(remote.every((e) => e.origin === "cloud")).toBe(true);
    }
  }, 120_000);

  it("different seeds give different answers; the same seed the same, and the summary carries the settings", async () => {
    const router = new ConfidenceRouter();
    const a = new CollaborativeDecoder(pair.slm, router, cloud).generate(prompt, { tau: 0.6, maxTokens: MAX, sampling: BALANCED });
    const ea: TokenEvent[] = [];
    for await (const e of a) ea.push(e);
    expect((await a.summary).sampling).toEqual(BALANCED);
    const b = await decode(router, 0.6, { ...BALANCED, seed: 78 });
    expect(tokens(b)).not.toEqual(tokens(ea));
    expect(tokens(await decode(router, 0.6, BALANCED))).toEqual(tokens(ea));
    expect(ea.some((e) => e.origin === "cloud") && ea.some((e) => e.origin === "local")).toBe(true);
  }, 60_000);

  it("greedy settings (Precise) keep today's answers: the same tokens and origins as no settings at τ = 0, 0.6 and 1", async () => {
    const router = new ConfidenceRouter();
    const precise = { ...SAMPLING_PRESETS.precise, seed: 9 };
    for (const tau of [0, 0.6, 1]) {
      const before = await decode(router, tau, undefined);
      const now = await decode(router, tau, precise);
      expect(now.map((e) => `${e.tokenId}:${e.origin}`)).toEqual(before.map((e) => `${e.tokenId}:${e.origin}`));
    }
    // τ = 0: the SLM's standalone greedy decoding
    const greedy: number[] = [];
    let step = await pair.slm.begin(prompt, router.needs);
    for (let i = 0; i < MAX && !pair.slm.isEndOfGeneration(step.tokenId); i++) {
      greedy.push(step.tokenId);
      step = await pair.slm.advance(step.tokenId, router.needs);
    }
    expect(tokens(await decode(router, 0, precise))).toEqual(greedy);
  }, 60_000);

  it("a cloud position at temperature 1 without truncation: the token's frequencies over 2500 seeds are the LLM's probabilities (chi-square, through the server)", async () => {
    const t1: SamplingSettings = { ...SAMPLING_PRESETS.precise, temperature: 1, seed: 0 };
    // a position where the LLM hesitates between many tokens: the test can tell distributions apart there
    const open = pair.slm.tokenizeText("Once upon a time, there was a little girl named Lily. She");
    const probs = await distributionAfter(llm.model, open);
    const counts = new Map<number, number>();
    const n = 2500;
    for (let seed = 0; seed < n; seed++) {
      const c = await cloud.next(open, undefined, { sampling: { ...t1, seed } });
      counts.set(c.tokenId, (counts.get(c.tokenId) ?? 0) + 1);
    }
    const { passes, wrongFails, right, wrong } = chiSquareTest(counts, probs, n);
    console.log(`cloud chi-square: ${right.stat.toFixed(1)} (df ${right.df}); against temperature 1.1: ${wrong.stat.toFixed(1)}`);
    expect(passes).toBe(true);
    expect(wrongFails).toBe(true);
  }, 300_000);
});

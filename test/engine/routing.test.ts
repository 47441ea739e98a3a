/**
 * The routed decoder end to end with real inference and a real HTTP cloud server:
 * τ = 0 is the SLM's own greedy decoding, τ = 1 the LLM's, and in between every token is the greedy
 * choice of the model its origin names.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TokenEvent } from "../../shared/events.js";
import { ConfidenceRouter } from "../../shared/router.js";
import { CollaborativeDecoder, type GenerateOptions } from "../../electron/engine/decoder.js";
import { randomQwenPair, startPair, storiesPair, type PairFiles, type RunningPair } from "../helpers/pair.js";
import { hasStories, noteMissingShared } from "../helpers/shared.js";
import { standaloneGreedy, teacherForcedGreedy } from "../helpers/standalone.js";

const PROMPTS = ["Once upon a time", "The little dog", "Tom and Sue went to the park. They"];

async function collect(dec: CollaborativeDecoder, prompt: number[], opts: GenerateOptions) {
  const events: TokenEvent[] = [];
  const answer = dec.generate(prompt, opts);
  for await (const e of answer) events.push(e);
  return { events, summary: await answer.summary };
}

function routingSuite(label: string, files: () => Promise<PairFiles | null>, maxTokens: number, available = true) {
  describe.skipIf(!available)(available ? label : `${label} (skipped: ../shared/models/stories260K.gguf not found)`, () => {
    let pair: RunningPair | undefined;
    let p: PairFiles | null = null;
    let dec: CollaborativeDecoder;

    beforeAll(async () => {
      p = await files();
      if (!p) throw new Error(`${label}: the fixture pair could not be made`);
      pair = await startPair(p);
      dec = new CollaborativeDecoder(pair.slm, new ConfidenceRouter(), await pair.client());
    });
    afterAll(async () => pair?.close());

    const prompt = (text: string) => pair!.slm.tokenizeText(text);

    it("τ = 0 gives the SLM's own greedy decoding, token for token, with no cloud call", async () => {
      for (const text of PROMPTS) {
        const { events, summary } = await collect(dec, prompt(text), { tau: 0, maxTokens });
        const reference = await standaloneGreedy(p!.slm, prompt(text), maxTokens);
        expect(events.map((e) => e.tokenId)).toEqual(reference);
        expect(events.every((e) => e.origin === "local")).toBe(true);
        expect(summary.cloudCalls).toBe(0);
      }
    });

    it("τ = 1 gives the LLM's own greedy decoding, token for token, every token from the cloud", async () => {
      for (const text of PROMPTS) {
        const { events } = await collect(dec, prompt(text), { tau: 1, maxTokens });
        const reference = await standaloneGreedy(p!.llm, prompt(text), maxTokens);
        expect(events.map((e) => e.tokenId)).toEqual(reference);
        expect(events.every((e) => e.origin === "cloud")).toBe(true);
      }
    });

    it("mixed τ: each token is the greedy choice of the model its origin names, given the same prefix", async () => {
      let cloud = 0;
      let local = 0;
      for (const text of PROMPTS) {
        const pr = prompt(text);
        // τ at the median SLM confidence of this prompt's own answer: both origins are bound to occur
        const solo = await collect(dec, pr, { tau: 0, maxTokens });
        const sorted = solo.events.map((e) => e.confidence).sort((a, b) => a - b);
        const tau = sorted[Math.floor(sorted.length / 2)];
        const { events } = await collect(dec, pr, { tau, maxTokens });
        const seq = [...pr, ...events.map((e) => e.tokenId)];
        const slmPreds = await teacherForcedGreedy(p!.slm, seq, pr.length);
        const llmPreds = await teacherForcedGreedy(p!.llm, seq, pr.length);
        events.forEach((e, i) => {
          const expected = e.origin === "cloud" ? llmPreds[i] : slmPreds[i];
          expect(e.tokenId, `token ${i} (${e.origin})`).toBe(expected);
          expect(e.slmTokenId).toBe(slmPreds[i]);
          if (e.origin === "cloud") cloud++;
          else local++;
        });
      }
      expect(cloud).toBeGreaterThan(0);
      expect(local).toBeGreaterThan(0);
    });

    it("the cloud share never decreases as τ grows (sweep over prompts)", async () => {
      const taus = [0, 0.25, 0.5, 0.75, 0.9, 1];
      const shares: number[] = [];
      for (const tau of taus) {
        let tokens = 0;
        let cloud = 0;
        for (const text of PROMPTS) {
          const { summary } = await collect(dec, prompt(text), { tau, maxTokens });
          tokens += summary.tokens;
          cloud += summary.cloudTokens;
        }
        shares.push(cloud / tokens);
      }
      for (let i = 1; i < shares.length; i++)
        expect(shares[i], `share at τ=${taus[i]} vs ${taus[i - 1]}: ${shares}`).toBeGreaterThanOrEqual(shares[i - 1]);
      expect(shares[0]).toBe(0);
      expect(shares.at(-1)).toBe(1);
    });

    it("τ can change between tokens of one answer", async () => {
      let n = 0;
      const { events } = await collect(dec, prompt(PROMPTS[0]), { tau: () => (n++ < 5 ? 0 : 1), maxTokens: 12 });
      expect(events.slice(0, 5).every((e) => e.origin === "local" && e.tau === 0)).toBe(true);
      expect(events.slice(5).every((e) => e.origin === "cloud" && e.tau === 1)).toBe(true);
    });
  });
}

if (!hasStories) noteMissingShared("routing on the stories260K pair");
routingSuite("routed decoding on the stories260K-derived pair", storiesPair, 40, hasStories);
routingSuite("routed decoding on random-weight models with the Qwen2 vocabulary", randomQwenPair, 16);

/**
 * Sampled answers from llama.cpp's own server (`llama-server`, `npm run llama-server:build`) through the
 * adapter: what docs/deploy-gpu.md "Sampling on an engine" relies on, checked on the real engine. With
 * top-k on, the server's `post_sampling_probs` are the top K after its penalties (the whole history in
 * the window, prompt included) at temperature 1, and the adapter's token is Tandem's draw among them;
 * with top-k off the server samples itself, seeded per position. Either way the same seed gives the
 * same tokens on every run, from a fresh adapter, with the positions asked all at once on two slots
 * (as pipelined calls do) or with a continuation asked for; other seeds give other tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureFixtures } from "../../models/fixtures.js";
import { modelIdentity } from "../../inference/modelFile.js";
import type { ModelIdentity } from "../../shared/protocol.js";
import { LlamaCppServerPeer, sampledLlamaCpp } from "../../electron/engine/cloud/adapters/llamaCppServer.js";
import { vocabularyProbe } from "../../electron/engine/cloud/adapters/index.js";
import { candidatesOrEngine } from "../../electron/engine/cloud/adapters/sampling.js";
import { SAMPLING_PRESETS, penaltyWindow, sampleToken, uniformAt, type SamplingSettings } from "../../shared/sampling.js";
import { hasStories, noteMissingShared } from "../helpers/shared.js";
import type { TokenEvent } from "../../shared/events.js";
import { ConfidenceRouter } from "../../shared/router.js";
import { CollaborativeDecoder } from "../../electron/engine/decoder.js";
import { LocalModel } from "../../inference/localModel.js";
import { sampleAlone } from "../sampling/plainSampling.js";
import { RealBackend } from "./engines.js";
import { hasLlamaServer, noteMissingLlamaServer, startLlamaServer, type LlamaServer } from "./llamaServerProcess.js";

noteMissingShared("sampled answers from llama-server");
noteMissingLlamaServer("sampled answers from llama-server");

const STEPS = 12;
const WARM: SamplingSettings = { ...SAMPLING_PRESETS.creative, temperature: 1.2, topK: 20, topP: 0.95, minP: 0.01, seed: 11 };
/** presence and frequency penalties over a window shorter than the history (its last 24 tokens, from the prompt at first) */
const PENALISED: SamplingSettings = { ...WARM, repeatPenalty: 1, presencePenalty: 0.7, frequencyPenalty: 0.4, repeatLastN: 24 };

describe.skipIf(!hasStories || !hasLlamaServer)("sampled answers from llama-server through the adapter", () => {
  let server: LlamaServer;
  let files: Awaited<ReturnType<typeof ensureFixtures>>;
  let reference: RealBackend;
  let device: ModelIdentity;
  let prompt: number[];

  beforeAll(async () => {
    files = await ensureFixtures();
    server = await startLlamaServer(files.storiesLlm!, { parallel: 2 });
    reference = await RealBackend.load(files.storiesLlm!);
    device = modelIdentity(reference.model);
    const bos = reference.model.tokens.bos;
    // repeats in the prompt, so that the penalties have something to count
    prompt = [
      ...(bos !== null ? [bos] : []),
      ...reference.model.tokenize(
        "Once upon a time, there was a little girl named Lily. The dog saw the cat. The cat saw the dog. The",
        false,
      ),
    ];
  });
  afterAll(async () => {
    await server?.close();
    await reference?.dispose();
  });

  async function peer(): Promise<LlamaCppServerPeer> {
    const p = new LlamaCppServerPeer({
      url: server.url,
      topK: 5,
      probe: vocabularyProbe((t) => reference.model.tokenize(t, false)),
      deadlineMs: 20_000,
    });
    await p.connect(device);
    return p;
  }

  async function answer(p: LlamaCppServerPeer, s: SamplingSettings, draft = 0): Promise<number[]> {
    const history = [...prompt];
    for (let i = 0; i < STEPS; i++) history.push((await p.next(history, undefined, { sampling: s, draft })).tokenId);
    return history.slice(prompt.length);
  }

  async function expectReproducible(s: SamplingSettings): Promise<number[]> {
    const p = await peer();
    const first = await answer(p, s);
    expect(await answer(p, s), "a second run").toEqual(first);
    expect(await answer(await peer(), s), "a fresh adapter").toEqual(first);
    const atOnce = await Promise.all(first.map((_, i) => p.next([...prompt, ...first.slice(0, i)], undefined, { sampling: s })));
    expect(
      atOnce.map((r) => r.tokenId),
      "every position asked at once (two slots)",
    ).toEqual(first);
    expect(await answer(p, s, 4), "a continuation asked for").toEqual(first);
    const others = new Set<string>();
    for (const seed of [12, 13, 14]) others.add((await answer(p, { ...s, seed })).join(","));
    others.delete(first.join(","));
    expect(others.size, "other seeds give other answers").toBeGreaterThan(1);
    return first;
  }

  /** The server's distribution after `history` before any sampler: every token's probability (stories260K has 512). */
  async function rawDistribution(history: readonly number[]): Promise<Map<number, number>> {
    const body = {
      prompt: history,
      n_predict: 1,
      n_probs: device.vocabSize,
      samplers: ["temperature"],
      temperature: 0,
      post_sampling_probs: false,
    };
    const r = (await (await fetch(`${server.url}/completion`, { method: "POST", body: JSON.stringify(body) })).json()) as {
      completion_probabilities: Array<{ top_logprobs: Array<{ id: number; logprob: number }> }>;
    };
    return new Map(r.completion_probabilities[0]!.top_logprobs.map((c) => [c.id, Math.exp(c.logprob)]));
  }

  it("top-k on: the same seed gives the same tokens however they are asked for; other seeds differ", async () => {
    await expectReproducible(WARM);
  });

  it("the candidates are the top K after presence/frequency penalties over the window, prompt included, and the token is Tandem's draw", async () => {
    const p = await peer();
    const tokens = await answer(p, PENALISED);
    let penalisedSeen = false;
    for (let i = 0; i < 6; i++) {
      const history = [...prompt, ...tokens.slice(0, i)];
      const raw = await rawDistribution(history);
      const counts = new Map<number, number>();
      for (const t of penaltyWindow(history, PENALISED)) counts.set(t, (counts.get(t) ?? 0) + 1);
      // llama.cpp's penalties on the logits: log-probabilities up to a constant, which they subtract from
      const scored = [...raw].map(([id, q]) => {
        const c = counts.get(id) ?? 0;
        return { tokenId: id, score: Math.log(q) - c * PENALISED.frequencyPenalty - (c > 0 ? PENALISED.presencePenalty : 0) };
      });
      scored.sort((a, b) => b.score - a.score);
      const top = scored.slice(0, PENALISED.topK);
      const expected = top.map((c) => ({ tokenId: c.tokenId, weight: Math.exp(c.score - top[0]!.score) }));
      // what the server returns for this position, asked as the adapter asks
      const plan = candidatesOrEngine(PENALISED, history.length, 1000);
      expect(plan.how).toBe("candidates");
      const body = { prompt: history, n_predict: 1, cache_prompt: true, ...sampledLlamaCpp({ plan, s: PENALISED }, 5) };
      const got = (await (await fetch(`${server.url}/completion`, { method: "POST", body: JSON.stringify(body) })).json()) as {
        completion_probabilities: Array<{ top_probs: Array<{ id: number; prob: number }> }>;
      };
      const cands = got.completion_probabilities[0]!.top_probs;
      expect(cands.map((c) => c.id).sort(), `position ${history.length}: the same top K`).toEqual(expected.map((c) => c.tokenId).sort());
      const total = expected.reduce((a, c) => a + c.weight, 0);
      for (const c of cands) expect(c.prob).toBeCloseTo(expected.find((x) => x.tokenId === c.id)!.weight / total, 4);
      penalisedSeen ||= cands.some((c) => counts.has(c.id));
      const want = sampleToken(expected, PENALISED, uniformAt(PENALISED.seed, history.length)).tokenId;
      expect(tokens[i], `position ${history.length}: Tandem's draw`).toBe(want);
    }
    // the comparison has power: some candidate was a token of the window, penalised
    expect(penalisedSeen).toBe(true);
  });

  it("the routed decoder at τ = 1, Balanced, through the adapter: the LLM sampling alone, with every client strategy", async () => {
    const slm = await LocalModel.load(files.storiesSlm!, { contextSize: 1024 });
    try {
      const p = await peer();
      const dec = new CollaborativeDecoder(slm, new ConfidenceRouter(), p);
      const balanced: SamplingSettings = { ...SAMPLING_PRESETS.balanced, seed: 2024 };
      const want = await sampleAlone(reference.model, prompt, balanced, 24);
      expect(want.length).toBeGreaterThan(5);
      const strategies = [{}, { pipeline: false }, { speculate: 0, continuation: 0, pipeline: false }, { continuation: 4, speculate: 8 }];
      for (const strategy of strategies) {
        const events: TokenEvent[] = [];
        for await (const e of dec.generate(prompt, { tau: 1, maxTokens: want.length, sampling: balanced, ...strategy })) events.push(e);
        expect(
          events.map((e) => e.tokenId),
          JSON.stringify(strategy),
        ).toEqual(want);
        expect(events.every((e) => e.origin === "cloud")).toBe(true);
      }
    } finally {
      await slm.dispose();
    }
  });

  it("top-k off: the server samples itself with a seed per position, reproducibly", async () => {
    await expectReproducible({ ...WARM, topK: 0 });
  });
});

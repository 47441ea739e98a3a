/**
 * Sampled answers through the serving-engine adapters (electron/engine/cloud/adapters/sampling.ts),
 * against the loopback engines of engines.ts (a real stories260K LLM behind each engine's shape, each
 * engine's sampler chain, seeds and reported probabilities modelled). What must hold: the same seed
 * gives the same tokens on every run and however the calls are issued (one after another, all at once
 * as pipelined calls are, with a continuation asked for); different seeds give different tokens; where
 * the engine returns its candidates the token is Tandem's own draw among them; where it cannot sample
 * reproducibly it refuses and greedy still works.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureFixtures } from "../../models/fixtures.js";
import { modelIdentity } from "../../inference/modelFile.js";
import type { ModelIdentity } from "../../shared/protocol.js";
import { CloudCallError, type CloudPeer } from "../../electron/engine/cloud/peer.js";
import { createCloudPeer, vocabularyProbe } from "../../electron/engine/cloud/adapters/index.js";
import { engineSeed, type SampledNextOptions } from "../../electron/engine/cloud/adapters/sampling.js";
import { SAMPLING_PRESETS, sampleToken, uniformAt, type SamplingSettings } from "../../shared/sampling.js";
import { hasStories, noteMissingShared } from "../helpers/shared.js";
import { RealBackend, startFakeEngine, type EngineKind, type FakeEngine, type FakeEngineOptions } from "./engines.js";

noteMissingShared("sampled answers through the engine adapters");
const STEPS = 10;
const PROMPT = "Tom and Sue went to the park. They";
/** warm enough that seeds part within a few tokens on the tiny model; top-k bounds the candidates */
const WARM: SamplingSettings = { ...SAMPLING_PRESETS.creative, temperature: 1.2, topK: 20, topP: 1, minP: 0, repeatPenalty: 1, seed: 7 };
/** top-k off: no engine can return the candidates */
const UNBOUNDED: SamplingSettings = { ...WARM, topK: 0 };

type Next = (history: readonly number[], opts?: SampledNextOptions) => Promise<{ tokenId: number; draft?: number[] }>;

describe.skipIf(!hasStories)("sampled answers through the engine adapters (real stories260K LLM)", () => {
  let backend: RealBackend;
  let device: ModelIdentity;
  let prompt: number[];
  const started: FakeEngine[] = [];

  beforeAll(async () => {
    const f = await ensureFixtures();
    backend = await RealBackend.load(f.storiesLlm!);
    device = modelIdentity(backend.model);
    const bos = backend.model.tokens.bos;
    prompt = [...(bos !== null ? [bos] : []), ...backend.model.tokenize(PROMPT, false)];
  });
  afterAll(async () => {
    for (const e of started) await e.close();
    await backend?.dispose();
  });

  async function connected(kind: EngineKind, engine: FakeEngineOptions = {}, adapter: Record<string, unknown> = {}) {
    const e = await startFakeEngine(kind, backend, engine);
    started.push(e);
    const peer: CloudPeer = createCloudPeer({
      kind,
      url: e.url,
      topK: 3,
      probe: vocabularyProbe((t) => backend.model.tokenize(t, false)),
      deadlineMs: 5000,
      backoffMs: 1,
      ...adapter,
    } as never);
    await peer.connect(device);
    return { e, peer, next: ((h, o) => peer.next(h, undefined, o)) as Next };
  }

  /** An answer of STEPS tokens, one call after another. */
  async function answer(next: Next, sampling: SamplingSettings, draft = 0): Promise<number[]> {
    const history = [...prompt];
    for (let i = 0; i < STEPS; i++) history.push((await next(history, { sampling, draft })).tokenId);
    return history.slice(prompt.length);
  }

  /** The same positions asked all at once, as pipelined calls and run-ahead do, after the given answer's prefixes. */
  async function allAtOnce(next: Next, sampling: SamplingSettings, tokens: number[]): Promise<number[]> {
    const replies = await Promise.all(tokens.map((_, i) => next([...prompt, ...tokens.slice(0, i)], { sampling })));
    return replies.map((r) => r.tokenId);
  }

  async function expectReproducible(next: Next, sampling: SamplingSettings): Promise<number[]> {
    const first = await answer(next, sampling);
    expect(await answer(next, sampling), "a second run").toEqual(first);
    expect(await allAtOnce(next, sampling, first), "every position asked at once").toEqual(first);
    expect(await answer(next, sampling, 4), "a continuation asked for").toEqual(first);
    const others = [];
    for (const seed of [8, 9, 10]) others.push((await answer(next, { ...sampling, seed })).join(","));
    expect(others.filter((o) => o !== first.join(",")).length, "other seeds give other answers").toBeGreaterThan(0);
    expect(new Set(others).size, "and differ among themselves").toBeGreaterThan(1);
    return first;
  }

  /** Tandem's draw at each position: top-k of the LLM's own distribution (no penalty here), sampleToken with uniformAt. */
  async function tandemDraws(sampling: SamplingSettings, tokens: number[]): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < tokens.length; i++) {
      const history = [...prompt, ...tokens.slice(0, i)];
      const p = await backend.predict(history, 1);
      const cands = [...p.logprobs].map(([tokenId, lp]) => ({ tokenId, weight: Math.exp(lp) }));
      out.push(sampleToken(cands, sampling, uniformAt(sampling.seed, history.length)).tokenId);
    }
    return out;
  }

  describe("llama.cpp", () => {
    it("top-k on: the server's penalised top-K at temperature 1, and Tandem's own draw among them, reproducible", async () => {
      const { e, next } = await connected("llama.cpp");
      const tokens = await expectReproducible(next, WARM);
      expect(await tandemDraws(WARM, tokens), "the tokens Tandem's server would draw").toEqual(tokens);
      const r = e.requests.at(-1)!;
      expect(r).toMatchObject({
        n_predict: 1,
        samplers: ["penalties", "top_k", "temperature"],
        temperature: 1,
        top_k: 20,
        n_probs: 20,
        post_sampling_probs: true,
        repeat_penalty: 1,
        repeat_last_n: WARM.repeatLastN,
      });
      expect(r.seed).toBe(engineSeed(10, (r.prompt as number[]).length));
    });

    it("the penalties reach the draw: a repetition penalty changes a Balanced answer, and it stays reproducible", async () => {
      const { next } = await connected("llama.cpp");
      const balanced = { ...SAMPLING_PRESETS.balanced, seed: 3 };
      const withPenalty = await answer(next, { ...balanced, repeatPenalty: 2 });
      expect(await answer(next, { ...balanced, repeatPenalty: 2 })).toEqual(withPenalty);
      expect(await answer(next, balanced)).not.toEqual(withPenalty);
    });

    it("top-k off: the server samples with Tandem's chain order and a seed per position, reproducibly", async () => {
      const { e, next } = await connected("llama.cpp");
      await expectReproducible(next, UNBOUNDED);
      const r = e.requests.at(-1)!;
      expect(r).toMatchObject({
        n_predict: 1,
        samplers: ["penalties", "top_k", "top_p", "min_p", "temperature"],
        temperature: 1.2,
        top_k: 0,
      });
      expect(r).toMatchObject({ post_sampling_probs: false, seed: engineSeed(10, (r.prompt as number[]).length) });
    });
  });

  describe("vLLM", () => {
    it("with --logprobs-mode processed_logprobs and top-k ≤ 20: Tandem's own draw among vLLM's candidates", async () => {
      const { e, next } = await connected("vllm", { logprobsMode: "processed_logprobs" }, { processedLogprobs: true });
      const tokens = await expectReproducible(next, WARM);
      expect(await tandemDraws(WARM, tokens)).toEqual(tokens);
      expect(e.requests.at(-1)).toMatchObject({ max_tokens: 1, temperature: 1, top_k: 20, logprobs: 20, top_p: 1, min_p: 0 });
    });

    it("raw log-probabilities, top-k over 20 or penalties vLLM applies otherwise: vLLM's own sampler, seeded per position", async () => {
      const raw = await connected("vllm");
      const penalised = { ...WARM, repeatPenalty: 1.1 };
      await expectReproducible(raw.next, penalised);
      const r = raw.e.requests.at(-1)!;
      expect(r).toMatchObject({ max_tokens: 1, temperature: 1.2, top_k: 20, repetition_penalty: 1.1 });
      expect(r.seed).toBe(engineSeed(10, (r.prompt as number[]).length));
      const processed = await connected("vllm", { logprobsMode: "processed_logprobs" }, { processedLogprobs: true });
      await processed.next([...prompt], { sampling: { ...WARM, topK: 40 } });
      await processed.next([...prompt], { sampling: { ...WARM, presencePenalty: 0.5 } });
      for (const q of processed.e.requests) expect(q).toMatchObject({ temperature: 1.2 }); // both sampled by vLLM
    });
  });

  describe("SGLang", () => {
    it("with --enable-deterministic-inference (read from /server_info): its own sampler, sampling_seed per position", async () => {
      const { e, next } = await connected("sglang", { deterministicInference: true });
      await expectReproducible(next, WARM);
      const r = e.requests.at(-1)!;
      expect(r.sampling_params).toMatchObject({ max_new_tokens: 1, temperature: 1.2, top_k: 20 });
      expect((r.sampling_params as { sampling_seed: number }).sampling_seed).toBe(engineSeed(10, (r.input_ids as number[]).length));
    });

    it("without it: a sampled position is refused (no request, no back-off), greedy still exact", async () => {
      for (const setup of [{ deterministicInference: false }, {}]) {
        const { e, peer, next } = await connected("sglang", setup, { backoffMs: 60_000 });
        const err = await next([...prompt], { sampling: WARM }).catch((x: unknown) => x);
        expect(err).toBeInstanceOf(CloudCallError);
        expect((err as CloudCallError).status).toBe(400);
        expect((err as CloudCallError).message).toMatch(/--enable-deterministic-inference/);
        expect(e.requests).toEqual([]);
        expect(peer.state).toBe("online"); // a refusal of the request, not the cloud's failure: no back-off
        const want = await backend.predict([...prompt], 1);
        await expect(next([...prompt], { sampling: { ...WARM, temperature: 0 } })).resolves.toMatchObject({ tokenId: want.token });
      }
    });

    it("stated by the user where the server cannot say (deterministicInference: true)", async () => {
      const { next } = await connected("sglang", { deterministicInference: true, serverInfo: false }, { deterministicInference: true });
      await expect(answer(next, WARM)).resolves.toHaveLength(STEPS);
    });
  });
});

/**
 * How an engine adapter answers a sampled position (docs/deploy-gpu.md "Sampling on an engine"). Each
 * request is for one position only, the one after its history, so every way of hiding the network
 * (blocking, background sync, run-ahead, pipelined calls) asks the same question at the same position
 * and gets the same answer; continuations are not asked for while sampling, since an engine would draw
 * their tokens from one random stream that Tandem cannot key by position.
 *
 *   candidates  the engine returns its top-K candidates after the penalties, at temperature 1 (llama.cpp
 *               with `post_sampling_probs`; vLLM with `--logprobs-mode processed_logprobs`), and the
 *               device draws from them exactly as Tandem's server does: top-p, min-p and temperature in
 *               `sampleToken`, with the number `uniformAt(seed, position)`. Tandem's own semantics.
 *   engine      the engine samples with its own sampler and a seed of its own for this position
 *               (`engineSeed`): reproducible with every client strategy on that engine, but the engine's
 *               sampler and random numbers, not the tokens Tandem's server would draw.
 * Greedy (temperature 0) is neither: the engine's greedy token, exact on every engine, continuations too.
 */
import type { TokenLogprob } from "../../../../shared/protocol.js";
import { sampleToken, uniformAt, type SamplingSettings, type WeightedToken } from "../../../../shared/sampling.js";
import { CloudCallError, type NextOptions } from "../peer.js";

/** What a peer's `next` is asked: `sampling` absent or at temperature 0 is greedy. */
export interface SampledNextOptions extends NextOptions {
  sampling?: SamplingSettings;
}

/** How an engine answers a sampled (not greedy) position. */
export type SamplingPlan = { how: "candidates"; k: number; seed: number } | { how: "engine"; seed: number };

/**
 * The engine's seed for the position after `position` tokens: 31 bits derived from the keyed number
 * of (seed, position). 31 bits, not 32: llama.cpp reads a seed through a signed 32-bit field and takes
 * 0xFFFFFFFF (-1) for "random", and SGLang keeps seeds in an int32 tensor.
 */
export function engineSeed(seed: number, position: number): number {
  return Math.floor(uniformAt(seed, position) * 2 ** 31);
}

/**
 * A sampled position's plan: the engine's candidates where top-k bounds them to at most `maxK` (what
 * the engine can return), its own sampler otherwise.
 */
export function candidatesOrEngine(s: SamplingSettings, position: number, maxK: number): SamplingPlan {
  const seed = engineSeed(s.seed, position);
  return s.topK > 0 && s.topK <= maxK ? { how: "candidates", k: s.topK, seed } : { how: "engine", seed };
}

/** The refusal of a sampled position an engine cannot answer reproducibly: the decoder falls back. */
export function cannotSample(kind: string, why: string): CloudCallError {
  return new CloudCallError("http", `${kind}: cannot sample reproducibly (${why}); greedy (the Precise preset) works`, 400);
}

/**
 * The device's draw among an engine's candidates (each a token and any positive multiple of its
 * probability), with the keyed number of (seed, position). Returns the token, its log-probability in
 * the distribution it was drawn from, and the candidates as log-probabilities (the first `topK`).
 */
export function drawAmong(
  raw: readonly { tokenId: unknown; weight: unknown }[],
  s: SamplingSettings,
  position: number,
  vocabSize: number,
  topK: number,
): { tokenId: number; logprob: number; top: TokenLogprob[] } {
  const cands: WeightedToken[] = [];
  for (const c of raw) {
    const { tokenId, weight } = c;
    if (typeof tokenId !== "number" || !Number.isInteger(tokenId) || tokenId < 0 || tokenId >= vocabSize)
      throw new CloudCallError("malformed", `the cloud returned candidate ${JSON.stringify(tokenId)}, outside the vocabulary`);
    if (typeof weight !== "number" || !(weight >= 0) || !Number.isFinite(weight))
      throw new CloudCallError("malformed", "the cloud returned an invalid candidate probability");
    if (weight > 0) cands.push({ tokenId, weight });
  }
  if (cands.length === 0) throw new CloudCallError("malformed", "the cloud returned no candidate to sample from");
  const drawn = sampleToken(cands, s, uniformAt(s.seed, position));
  const total = cands.reduce((a, c) => a + c.weight, 0);
  const top = [...cands]
    .sort((a, b) => b.weight - a.weight || a.tokenId - b.tokenId)
    .slice(0, topK)
    .map((c) => ({ tokenId: c.tokenId, logprob: Math.min(0, Math.log(c.weight / total)) }));
  return { tokenId: drawn.tokenId, logprob: Math.log(drawn.prob), top };
}

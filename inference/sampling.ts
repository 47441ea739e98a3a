/**
 * A sampled position's candidates from node-llama-cpp, and the draw on them: the one code path the
 * device's SLM (localModel.ts), the server's replica of it and the server's LLM (cloud/predictor.ts)
 * share, so each draws exactly what the others would at the same history (shared/sampling.ts says
 * what is drawn; docs/sampling.md why the candidates come out of llama.cpp's own sampler chain).
 *
 * Three ways to evaluate a position:
 *   greedy  temperature 0: llama.cpp's penalties (when on), then its greedy sampler — the token is
 *           node-llama-cpp's own; no candidates are needed;
 *   fast    temperature 1 and top-k K in llama.cpp's chain: penalties, then top-k, so the K
 *           probabilities it returns are the penalised top K (renormalised over them: the relative
 *           weights sampleToken reads are unchanged). The token llama.cpp draws itself is ignored;
 *   full    temperature 0 with the penalties and the probabilities of the whole vocabulary: what a
 *           router reading the top-1 probability or the top-k needs, and the candidates when top-k is off.
 */
import type { LlamaContextSequenceRepeatPenalty, Token } from "node-llama-cpp";
import {
  candidatesNeeded,
  hasPenalties,
  isGreedy,
  penaltyWindow,
  sampleToken,
  uniformAt,
  type SamplingParams,
  type SamplingSettings,
  type WeightedToken,
} from "../shared/sampling.js";

export type SamplePath = "greedy" | "fast" | "full";

/**
 * The seed of llama.cpp's own draw on the fast path: a constant, so node-llama-cpp keeps its sampler
 * chain (an absent seed is the time in seconds, and a new one rebuilds the chain). Its draw is ignored.
 */
const CHAIN_SEED = 1;

/** How a position is evaluated: from the settings and what else is read of the step (router features, candidates shown). */
export function samplePath(s: SamplingParams | undefined, wants: { top1Prob: boolean; topK: number }): SamplePath {
  if (!s || isGreedy(s)) return "greedy";
  return !wants.top1Prob && wants.topK === 0 && s.topK > 0 ? "fast" : "full";
}

/** node-llama-cpp's penalties option: the last `repeatLastN` tokens of `history()` (read when the position is sampled). */
export function repeatPenaltyOption(
  s: SamplingParams | undefined,
  history: () => readonly number[],
): LlamaContextSequenceRepeatPenalty | undefined {
  if (!s || !hasPenalties(s)) return undefined;
  return {
    punishTokens: () => penaltyWindow(history(), s) as Token[],
    maxPunishTokens: s.repeatLastN,
    penalty: s.repeatPenalty,
    presencePenalty: s.presencePenalty,
    frequencyPenalty: s.frequencyPenalty,
  };
}

/** node-llama-cpp's sampling options for `path` (the window's history is read at each sampled position). */
export function samplerOptions(s: SamplingParams | undefined, path: SamplePath, history: () => readonly number[]) {
  const repeatPenalty = repeatPenaltyOption(s, history);
  const penalties = repeatPenalty ? { repeatPenalty } : {};
  if (path === "fast") return { temperature: 1, topK: s!.topK, topP: 1, minP: 0, seed: CHAIN_SEED, ...penalties };
  return { temperature: 0, ...penalties };
}

/** Whether node-llama-cpp must return the probabilities (the candidates), besides any the caller wants. */
export function needsProbabilities(path: SamplePath): boolean {
  return path !== "greedy";
}

export interface Drawn {
  tokenId: number;
  /** the token's probability in the distribution it was drawn from (after penalties, truncation, temperature); absent for greedy */
  prob?: number;
}

/**
 * The token at `position` (the number of tokens before it, prompt included): node-llama-cpp's own on
 * the greedy path, else `sampleToken` on the candidates with the keyed number of (seed, position).
 */
export function drawToken(
  next: { token: number; probabilities?: ReadonlyMap<number, number> },
  s: SamplingSettings | undefined,
  path: SamplePath,
  position: number,
): Drawn {
  if (path === "greedy" || !s) return { tokenId: next.token };
  if (!next.probabilities) throw new Error("node-llama-cpp returned no probabilities to sample from");
  const drawn = sampleToken(candidatesOf(next.probabilities, candidatesNeeded(s)), s, uniformAt(s.seed, position));
  return { tokenId: drawn.tokenId, prob: drawn.prob };
}

/** The first `k` entries of node-llama-cpp's probability map (sorted, most likely first); every entry when k is 0. */
function candidatesOf(probabilities: ReadonlyMap<number, number>, k: number): WeightedToken[] {
  const out: WeightedToken[] = [];
  for (const [tokenId, weight] of probabilities) {
    if (k > 0 && out.length >= k) break;
    out.push({ tokenId, weight });
  }
  return out;
}

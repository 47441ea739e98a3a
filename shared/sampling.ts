/**
 * Sampling: the one definition of how a token is drawn from a model's next-token distribution. The
 * device (local positions), Tandem's cloud server (cloud positions and its replica of the device's SLM)
 * and the eval harness all draw through `sampleToken`, so the same prompt, settings, τ and seed give the
 * same tokens however the network is hidden.
 *
 * Semantics (docs/sampling.md):
 *  1. penalties (repetition, presence, frequency) apply first, to the model's logits, over the last
 *     `repeatLastN` tokens of the committed history — prompt and answer, whatever wrote them. They are
 *     llama.cpp's penalties sampler, run by node-llama-cpp inside the evaluation (the repetition penalty
 *     divides a positive logit and multiplies a negative one, so it needs the logits themselves);
 *  2. then top-k, top-p, min-p and temperature, in llama.cpp's order, here, on the penalised
 *     distribution's relative weights (each candidate's probability over the largest): every one of
 *     these steps is shift-invariant in the logits, so the top-k set node-llama-cpp returns cheaply
 *     gives exactly what the whole vocabulary would;
 *  3. one draw with `uniformAt(seed, position)`. The number depends on the seed and the position in the
 *     context alone, never on how many draws came before: a rollback, a pipelined call, a continuation
 *     or the server's replica draws the same number at the same position.
 * Temperature 0 is greedy (the penalised distribution's most likely token) and draws nothing.
 *
 * Environment-neutral: imported by the renderer (the sampling panel) as well as by Node.
 */
import { z } from "zod";

/** The sampling parameters of an answer, without its seed. */
export const samplingParamsSchema = z.object({
  /** 0: greedy */
  temperature: z.number().min(0).max(5),
  /** keep the k most likely tokens; 0: the whole vocabulary */
  topK: z.number().int().min(0).max(1000),
  /** keep the smallest set of most likely tokens whose probability reaches p; 1: off */
  topP: z.number().gt(0).max(1),
  /** drop tokens less likely than min-p × the most likely one; 0: off */
  minP: z.number().min(0).max(1),
  /** llama.cpp's repetition penalty on the tokens of the window; 1: off */
  repeatPenalty: z.number().min(1).max(2),
  /** the window: how many of the last committed tokens the penalties look at */
  repeatLastN: z.number().int().min(0).max(4096),
  /** subtracted from the logit of every token present in the window; 0: off */
  presencePenalty: z.number().min(-2).max(2),
  /** subtracted once per occurrence in the window; 0: off */
  frequencyPenalty: z.number().min(-2).max(2),
});
export type SamplingParams = z.infer<typeof samplingParamsSchema>;

/** Seeds are unsigned 32-bit integers (what llama.cpp, vLLM and SGLang take). */
export const seedSchema = z.number().int().min(0).max(0xffffffff);

/** What one answer was sampled with: enough to reproduce it. */
export const samplingSettingsSchema = samplingParamsSchema.extend({ seed: seedSchema });
export type SamplingSettings = z.infer<typeof samplingSettingsSchema>;

export const SAMPLING_PRESETS = {
  /** greedy: the most likely token every time (eval's default; Tandem's behaviour before sampling) */
  precise: {
    temperature: 0,
    topK: 0,
    topP: 1,
    minP: 0,
    repeatPenalty: 1,
    repeatLastN: 64,
    presencePenalty: 0,
    frequencyPenalty: 0,
  },
  /** Qwen2.5-Instruct's recommended settings (its generation_config.json): the chat default */
  balanced: {
    temperature: 0.7,
    topK: 20,
    topP: 0.8,
    minP: 0,
    repeatPenalty: 1.05,
    repeatLastN: 64,
    presencePenalty: 0,
    frequencyPenalty: 0,
  },
  /** more varied wording; min-p keeps the tail from producing nonsense at temperature 1 */
  creative: {
    temperature: 1,
    topK: 100,
    topP: 0.95,
    minP: 0.05,
    repeatPenalty: 1.1,
    repeatLastN: 64,
    presencePenalty: 0,
    frequencyPenalty: 0,
  },
} as const satisfies Record<string, SamplingParams>;
export type SamplingPreset = keyof typeof SAMPLING_PRESETS;
export const SAMPLING_PRESET_NAMES = Object.keys(SAMPLING_PRESETS) as SamplingPreset[];

/**
 * What a conversation (or the app's default) asks for: a preset or custom parameters, and a fixed seed
 * or none (null: each answer draws a new one, so Regenerate gives a different answer).
 */
export const samplingConfigSchema = samplingParamsSchema.extend({
  preset: z.enum(["precise", "balanced", "creative", "custom"]),
  seed: seedSchema.nullable(),
});
export type SamplingConfig = z.infer<typeof samplingConfigSchema>;
// the schema's preset names are exactly the presets' own and "custom" (a compile-time check)
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const presetNamesMatch: Same<SamplingConfig["preset"], SamplingPreset | "custom"> = true;
void presetNamesMatch;

export function presetConfig(preset: SamplingPreset, seed: number | null = null): SamplingConfig {
  return { ...SAMPLING_PRESETS[preset], preset, seed };
}

/** The chat's default: Balanced, a new seed per answer. */
export const DEFAULT_CHAT_SAMPLING: SamplingConfig = presetConfig("balanced");
/** Eval's default: greedy, so the tables compare routers, not luck. */
export const DEFAULT_EVAL_SAMPLING: SamplingConfig = presetConfig("precise", 0);

/** The preset these parameters are, or "custom". */
export function presetOf(p: SamplingParams): SamplingPreset | "custom" {
  for (const name of SAMPLING_PRESET_NAMES) {
    const preset: SamplingParams = SAMPLING_PRESETS[name];
    if ((Object.keys(preset) as (keyof SamplingParams)[]).every((k) => preset[k] === p[k])) return name;
  }
  return "custom";
}

/** A fresh seed for an answer whose config has none. */
export function drawSeed(): number {
  return globalThis.crypto.getRandomValues(new Uint32Array(1))[0]!;
}

/** The settings one answer is sampled with: the config's parameters and its seed, or a new one. */
export function resolveSampling(config: SamplingConfig, newSeed: () => number = drawSeed): SamplingSettings {
  const params = samplingParamsSchema.parse(config);
  return { ...params, seed: config.seed ?? newSeed() };
}

export function isGreedy(p: SamplingParams): boolean {
  return p.temperature === 0;
}

export function hasPenalties(p: SamplingParams): boolean {
  return p.repeatLastN > 0 && (p.repeatPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0);
}

/** The committed tokens the penalties look at: the last `repeatLastN` of the history. */
export function penaltyWindow(history: readonly number[], p: SamplingParams): number[] {
  return p.repeatLastN > 0 ? history.slice(Math.max(0, history.length - p.repeatLastN)) : [];
}

/**
 * How many of the most likely (penalised) tokens `sampleToken` needs to see: top-k's k, or the whole
 * vocabulary (0) when top-k is off. Greedy needs none beyond the argmax.
 */
export function candidatesNeeded(p: SamplingParams): number {
  return isGreedy(p) ? 1 : p.topK;
}

/** murmur3's 32-bit finaliser: every input bit moves every output bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The uniform number in [0, 1) drawn at `position` (a token's index in the context: prompt tokens
 * included) of an answer sampled with `seed`: a hash of the two, 53 random bits.
 */
export function uniformAt(seed: number, position: number): number {
  if (!Number.isInteger(position) || position < 0) throw new RangeError(`position ${position}`);
  const a = fmix32((seed >>> 0) ^ fmix32((position + 0x9e3779b9) >>> 0));
  const b = fmix32(a ^ fmix32((position ^ 0x6a09e667) >>> 0) ^ 0x5bd1e995);
  return (a * 2 ** 21 + (b >>> 11)) / 2 ** 53;
}

/** A candidate token and its weight: any positive multiple of its (penalised) probability at temperature 1. */
export interface WeightedToken {
  tokenId: number;
  weight: number;
}

export interface SampledToken {
  tokenId: number;
  /** its probability in the distribution the draw was made from (after truncation and temperature) */
  prob: number;
  /** how many candidates were left to draw from */
  kept: number;
}

/**
 * Draws a token from `candidates` (the model's most likely tokens after penalties, at least
 * `candidatesNeeded(p)` of them, or the whole vocabulary) with the uniform number `u`
 * (`uniformAt(seed, position)`). Pure: the same candidates, parameters and `u` give the same token.
 */
export function sampleToken(candidates: readonly WeightedToken[], p: SamplingParams, u: number): SampledToken {
  const sorted = candidates.filter((c) => c.weight > 0 && Number.isFinite(c.weight));
  if (sorted.length === 0) throw new RangeError("no candidate with a positive weight to sample from");
  // ties broken by token id: the order must not depend on how the candidates were fetched
  sorted.sort((x, y) => y.weight - x.weight || x.tokenId - y.tokenId);
  const top = sorted[0]!.weight;
  if (isGreedy(p)) return { tokenId: sorted[0]!.tokenId, prob: 1, kept: 1 };
  let kept = p.topK > 0 ? Math.min(p.topK, sorted.length) : sorted.length;
  kept = topPCut(sorted, kept, p.topP);
  if (p.minP > 0) while (kept > 1 && sorted[kept - 1]!.weight < p.minP * top) kept--;
  // temperature on the relative weights: (w / top)^(1/T) = exp((log w − log top) / T)
  const w = new Float64Array(kept);
  let total = 0;
  for (let i = 0; i < kept; i++) total += w[i] = Math.exp(Math.log(sorted[i]!.weight / top) / p.temperature);
  const target = u * total;
  let acc = 0;
  let pick = kept - 1; // rounding: a draw past the last sum lands on the last candidate
  for (let i = 0; i < kept; i++) {
    acc += w[i]!;
    if (target < acc) {
      pick = i;
      break;
    }
  }
  return { tokenId: sorted[pick]!.tokenId, prob: w[pick]! / total, kept };
}

/** top-p over the first `kept` (sorted) candidates: the smallest prefix whose probability reaches `topP`. */
function topPCut(sorted: readonly WeightedToken[], kept: number, topP: number): number {
  if (topP >= 1) return kept;
  let total = 0;
  for (let i = 0; i < kept; i++) total += sorted[i]!.weight;
  let acc = 0;
  for (let i = 0; i < kept; i++) {
    acc += sorted[i]!.weight;
    if (acc >= topP * total) return i + 1;
  }
  return kept;
}

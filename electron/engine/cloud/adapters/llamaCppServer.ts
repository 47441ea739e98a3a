/**
 * llama.cpp's own server (`llama-server`) as Tandem's cloud.
 *
 *   POST /completion {prompt: [token IDs], n_predict: 1 (+ draft), cache_prompt: true, id_slot?, n_probs: k,
 *                     return_tokens: true, ...GREEDY_LLAMA_CPP}
 *     → {tokens: [id], completion_probabilities: [{id, token, logprob, top_logprobs: [{id, token, logprob}]}],
 *        tokens_cached, tokens_evaluated, timings: {prompt_n, ...}}
 *
 * The slot's prompt cache (`cache_prompt`) keeps the KV of the longest common prefix, so each call
 * evaluates only the tokens after it (reported as `timings.prompt_n`). Pin a conversation to a slot with
 * `slot` (`id_slot`) when the server runs several slots, or calls of two conversations evict each
 * other's cache. Older servers answering with `probs` instead of `completion_probabilities` are refused
 * as malformed.
 *
 * Sampling: the server fills every field a request leaves out from its own defaults, and those come
 * from the GGUF's `general.sampling.*` keys when the file has them (common/common.cpp), e.g.
 * `general.sampling.penalty_repeat`. So every request sets every sampler explicitly
 * (GREEDY_LLAMA_CPP): the chain is the temperature sampler alone at 0 (the greedy token) and every
 * penalty is neutral besides. The reported probabilities are taken before the chain
 * (`post_sampling_probs: false`).
 *
 * Sampled positions (./sampling.ts), one token a request (`n_predict: 1`). The server feeds the whole
 * prompt to its penalties sampler (server-context.cpp `init_sampler` accepts every prompt token), so
 * its window is the last `repeat_last_n` tokens of the history, as Tandem's is. With top-k on, the
 * chain is `penalties → top_k` at temperature 1 and `post_sampling_probs: true, n_probs: K` returns the
 * K candidates renormalised among themselves (the `dist` sampler's softmax over the chain's output):
 * the device draws from them as Tandem's server does (Tandem's semantics; the server's own draw is
 * ignored). With top-k off (0) the K are unbounded, and the server samples itself with Tandem's order
 * (`penalties → top_k → top_p → min_p → temperature`, the distribution Tandem defines) and a seed for
 * that position: reproducible on this server, drawn with its random numbers.
 *
 * Context: `n_ctx` of a slot from `/v1/models` (`meta.n_ctx`); a longer prompt is answered 400
 * `exceed_context_size_error`, reported as a context overflow (base.ts).
 *
 * Vocabulary check at connect: `GET /v1/models` → `data[0].meta.n_vocab` is compared with the device's
 * vocabulary size (a difference only in `[PAD]` entries is allowed when the probe says where the
 * device's padding starts, see vocabulary.ts), and with a probe (`opts.probe`) `POST /tokenize
 * {content, add_special: false, parse_special: false}` must return the device's token IDs for the probe
 * text. Neither proves the vocabularies are identical (only a hash of every token string would; the
 * server exposes none): the probe check counts as verification, the size alone does not, and without a
 * probe the user must confirm (`assumeSameVocabulary`). `npm run cloud:check` runs a fuller set of
 * probes (vocabCheck.ts).
 */
import type { ModelIdentity } from "../../../../shared/protocol.js";
import { CloudCallError } from "../peer.js";
import { EngineAdapter, isObject, sameTokens, type AdapterOptions, type EngineStep, type SampledStep } from "./base.js";
import type { SamplingParams, SamplingSettings } from "../../../../shared/sampling.js";
import { candidatesOrEngine, type SamplingPlan } from "./sampling.js";

/**
 * Every sampling field of llama.cpp's /completion set to greedy and neutral (tools/server/server-schema.cpp
 * of the checked source): only the temperature sampler, at 0, picks the highest logit.
 */
export const GREEDY_LLAMA_CPP = {
  samplers: ["temperature"],
  temperature: 0,
  dynatemp_range: 0,
  top_k: 0,
  top_p: 1,
  min_p: 0,
  typical_p: 1,
  top_n_sigma: -1,
  xtc_probability: 0,
  repeat_penalty: 1,
  repeat_last_n: 0,
  presence_penalty: 0,
  frequency_penalty: 0,
  dry_multiplier: 0,
  mirostat: 0,
  logit_bias: [],
  ignore_eos: false,
  post_sampling_probs: false,
} as const;

/** Tandem's order of llama.cpp's samplers (shared/sampling.ts); the chain ends with llama.cpp's own draw. */
const TANDEM_SAMPLERS = ["penalties", "top_k", "top_p", "min_p", "temperature"];
/** Most candidates asked of the server (Tandem's top-k limit): a reply stays well within the 1 MiB bound. */
export const MAX_LLAMA_CPP_CANDIDATES = 1000;

const penalties = (s: SamplingParams) => ({
  repeat_penalty: s.repeatPenalty,
  repeat_last_n: s.repeatLastN,
  presence_penalty: s.presencePenalty,
  frequency_penalty: s.frequencyPenalty,
});

/** A sampled request's sampling fields: every field set, as for greedy (GREEDY_LLAMA_CPP). */
export function sampledLlamaCpp({ plan, s }: SampledStep, topK: number): Record<string, unknown> {
  const base = { ...GREEDY_LLAMA_CPP, ...penalties(s), seed: plan.seed, min_keep: 0 };
  if (plan.how === "candidates")
    return {
      ...base,
      samplers: ["penalties", "top_k", "temperature"],
      temperature: 1,
      top_k: plan.k,
      n_probs: plan.k,
      post_sampling_probs: true,
    };
  return {
    ...base,
    samplers: TANDEM_SAMPLERS,
    temperature: s.temperature,
    top_k: s.topK,
    top_p: s.topP,
    min_p: s.minP,
    n_probs: Math.max(1, topK),
  };
}

export interface LlamaCppServerOptions extends AdapterOptions {
  /** the server slot this conversation uses (`id_slot`); default: the server picks */
  slot?: number;
}

export class LlamaCppServerPeer extends EngineAdapter {
  readonly kind = "llama.cpp";

  constructor(private readonly o: LlamaCppServerOptions) {
    super(o);
  }

  protected async verify(device: ModelIdentity, signal: AbortSignal): Promise<ModelIdentity> {
    const verified: string[] = [];
    let name = "llama.cpp server";
    const models = await this.getJson("/v1/models", signal);
    const m = isObject(models) && Array.isArray(models.data) && isObject(models.data[0]) ? models.data[0] : undefined;
    if (m && typeof m.id === "string") name = m.id;
    const nVocab = m && isObject(m.meta) ? m.meta.n_vocab : undefined;
    const nCtx = m && isObject(m.meta) ? m.meta.n_ctx : undefined;
    if (typeof nCtx === "number" && Number.isInteger(nCtx) && nCtx > 0) this.contextLength = nCtx;
    if (typeof nVocab === "number" && nVocab !== device.vocabSize) {
      // Sizes that differ only in [PAD] entries (a Qwen2.5 0.5B device and a 32B server) are the same
      // vocabulary; below the device's real tokens they are not. Without knowing where the device's
      // padding starts, any difference is refused.
      const real = this.o.probe?.paddedFrom;
      if (real === undefined || nVocab < real) {
        throw this.mismatch(
          `the device has ${device.vocabSize} tokens${real !== undefined && real < device.vocabSize ? ` (${real} before padding)` : ""}, the server's model ${nVocab}`,
        );
      }
      verified.push(`sizes differ only in padding (device ${device.vocabSize}, server ${nVocab}, ${real} real tokens)`);
    }
    if (this.o.probe) {
      // parse_special: false, as the device tokenises text (special-token text stays text)
      const r = await this.postJson("/tokenize", { content: this.o.probe.text, add_special: false, parse_special: false }, signal);
      const tokens = isObject(r) ? r.tokens : undefined;
      if (!Array.isArray(tokens)) throw new CloudCallError("malformed", "llama.cpp /tokenize reply has no tokens");
      if (!sameTokens(tokens, this.o.probe.tokens)) throw this.mismatch("the probe text tokenises differently");
      verified.push(`probe text tokenised identically (${tokens.length} tokens)`);
    }
    this.requireConfirmation(
      verified,
      typeof nVocab === "number"
        ? "only the vocabulary size matched; no probe was given"
        : "the server reported no vocabulary size and no probe was given",
    );
    return { name, vocabHash: device.vocabHash, vocabSize: typeof nVocab === "number" ? nVocab : device.vocabSize };
  }

  protected samplingPlan(s: SamplingSettings, history: readonly number[]): SamplingPlan {
    return candidatesOrEngine(s, history.length, MAX_LLAMA_CPP_CANDIDATES);
  }

  protected async step(history: readonly number[], signal: AbortSignal, draft: number, sampled?: SampledStep): Promise<EngineStep> {
    const body: Record<string, unknown> = {
      prompt: history,
      n_predict: 1 + draft,
      cache_prompt: true,
      n_probs: Math.max(1, this.topK),
      return_tokens: true,
      ...(sampled ? sampledLlamaCpp(sampled, this.topK) : GREEDY_LLAMA_CPP),
    };
    if (this.o.slot !== undefined) body.id_slot = this.o.slot;
    const r = await this.postJson("/completion", body, signal);
    if (!isObject(r)) throw new CloudCallError("malformed", "llama.cpp reply is not an object");
    const probs = r.completion_probabilities;
    if (!Array.isArray(probs) || !isObject(probs[0]))
      throw new CloudCallError("malformed", "llama.cpp reply has no completion_probabilities");
    const p = probs[0];
    const tokens = r.tokens;
    if (Array.isArray(tokens) && tokens.length > 0 && tokens[0] !== p.id) {
      throw new CloudCallError("malformed", "llama.cpp reply: tokens and completion_probabilities disagree");
    }
    const timings = isObject(r.timings) ? r.timings : undefined;
    const evaluated = typeof timings?.prompt_n === "number" ? timings.prompt_n : undefined;
    if (sampled?.plan.how === "candidates") {
      // post_sampling_probs: probabilities, not log-probabilities, under top_probs
      if (!Array.isArray(p.top_probs)) throw new CloudCallError("malformed", "llama.cpp reply has no top_probs");
      const candidates = p.top_probs.map((c) =>
        isObject(c) ? { tokenId: c.id, weight: c.prob } : { tokenId: undefined, weight: undefined },
      );
      return { tokenId: p.id, logprob: undefined, top: [], evaluated, candidates };
    }
    const topRaw = Array.isArray(p.top_logprobs) ? p.top_logprobs : null;
    if (!topRaw) throw new CloudCallError("malformed", "llama.cpp reply has no top_logprobs");
    return {
      tokenId: p.id,
      logprob: p.logprob,
      top: topRaw.map((c) => (isObject(c) ? { tokenId: c.id, logprob: c.logprob } : { tokenId: undefined, logprob: undefined })),
      evaluated,
      msPerGeneratedToken: typeof timings?.predicted_per_token_ms === "number" ? timings.predicted_per_token_ms : undefined,
      // the continuation: the generated tokens after the first (it stops early at end of generation)
      draft:
        draft > 0 ? (Array.isArray(tokens) ? tokens.slice(1) : probs.slice(1).map((c) => (isObject(c) ? c.id : undefined))) : undefined,
    };
  }
}

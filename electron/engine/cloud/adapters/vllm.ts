/**
 * vLLM's OpenAI-compatible server as Tandem's cloud.
 *
 *   POST /v1/completions {model, prompt: [token IDs], max_tokens: 1, logprobs: k, return_token_ids: true,
 *                         return_tokens_as_token_ids: true, ...GREEDY_VLLM}
 *     → {choices: [{text, token_ids?, logprobs: {tokens: ["token_id:ID"], token_logprobs: [lp],
 *        top_logprobs: [{"token_id:ID": lp, ...}]}, finish_reason}],
 *        usage: {prompt_tokens, prompt_tokens_details?: {cached_tokens}}}
 *
 * Automatic prefix caching (on by default in vLLM V1) reuses full KV blocks of the common prefix, so a
 * call evaluates the delta plus at most one partial block. `usage.prompt_tokens_details.cached_tokens`
 * (reported when the server runs with --enable-prompt-tokens-details) gives the evaluated count.
 * `logprobs` is capped at 20 by the server by default (--max-logprobs). `choices[0].token_ids` comes
 * only with `return_token_ids`; the adapter asks for it and checks it against the log-probabilities'
 * tokens (a server too old to know the field leaves it out, and then only the logprobs are read).
 *
 * Sampling: vLLM fills every sampling field a request leaves unset from the model's
 * generation_config.json (`--generation-config auto`, its default; ModelConfig.get_diff_sampling_param:
 * repetition_penalty, temperature, top_k, top_p, min_p), e.g. Qwen2.5-Instruct's repetition_penalty
 * 1.05, and reports log-probabilities taken before the penalty. So every request sets every field
 * (GREEDY_VLLM); `--generation-config vllm` on the server is the belt to these braces.
 *
 * Sampled positions (./sampling.ts), one token a request (`max_tokens: 1`), each with its own `seed`
 * (a per-request generator). vLLM's penalties differ from llama.cpp's, which Tandem uses: the
 * repetition penalty covers the whole prompt (no window), presence and frequency count generated
 * tokens only (none with one token). Its log-probabilities are raw unless the server runs with
 * `--logprobs-mode processed_logprobs` (v1/sample/sampler.py): then they are taken after the
 * penalties, temperature, min-p and top-k/top-p (ops/topk_topp_sampler.py), so at temperature 1 with
 * top-k K (≤ 20, --max-logprobs) they are the penalised top K renormalised among themselves. With that
 * mode declared (`processedLogprobs`), top-k between 1 and 20 and penalties vLLM applies as Tandem does
 * (none, or only the repetition penalty with a window covering the whole history), the device draws
 * from those candidates: Tandem's semantics. Otherwise vLLM samples itself with the settings and the
 * position's seed: reproducible on this server, drawn with vLLM's sampler (temperature before top-p,
 * its penalties as above).
 *
 * Context: `max_model_len` from `/v1/models`; prompt plus max_tokens beyond it is answered 400 ("... the
 * model's context length is only N tokens ..."), reported as a context overflow (base.ts).
 *
 * Vocabulary check at connect: `GET /v1/models` gives the served model's name (and `max_model_len`),
 * not its vocabulary. With a probe (`opts.probe`), `POST /tokenize {model, prompt, add_special_tokens:
 * false}` must return the device's token IDs for the probe text: that counts as verification. vLLM
 * does not report the vocabulary size or a hash: the size and every token string cannot be verified;
 * without a probe (or if /tokenize is disabled) the user must confirm (`assumeSameVocabulary`).
 */
import type { ModelIdentity } from "../../../../shared/protocol.js";
import { CloudCallError } from "../peer.js";
import { EngineAdapter, isObject, sameTokens, type AdapterOptions, type EngineStep, type SampledStep } from "./base.js";
import { HttpError } from "../../../../shared/errors.js";
import { hasPenalties, type SamplingSettings } from "../../../../shared/sampling.js";
import { candidatesOrEngine, engineSeed, type SamplingPlan } from "./sampling.js";

/**
 * vLLM's CompletionRequest sampling fields that a generation config can fill, set to greedy and
 * neutral (entrypoints/openai/completion/protocol.py: `_DEFAULT_SAMPLING_PARAMS`); top_k -1 means "all"
 * in every version (0 only in newer ones).
 */
export const GREEDY_VLLM = {
  temperature: 0,
  top_p: 1,
  top_k: -1,
  min_p: 0,
  repetition_penalty: 1,
  presence_penalty: 0,
  frequency_penalty: 0,
  min_tokens: 0,
  ignore_eos: false,
} as const;

export interface VllmOptions extends AdapterOptions {
  /** served model name; default: the first of GET /v1/models */
  model?: string;
  /** the server runs with `--logprobs-mode processed_logprobs` (see the header): sampling can be Tandem's own */
  processedLogprobs?: boolean;
}

/** vLLM's default --max-logprobs: the most candidates a request may ask for. */
export const VLLM_MAX_CANDIDATES = 20;

/** A sampled request's sampling fields: every field set, as for greedy (GREEDY_VLLM). */
export function sampledVllm({ plan, s }: SampledStep, topK: number): Record<string, unknown> {
  const repetition = s.repeatLastN > 0 ? s.repeatPenalty : 1;
  if (plan.how === "candidates")
    return { ...GREEDY_VLLM, temperature: 1, top_k: plan.k, repetition_penalty: repetition, seed: plan.seed, logprobs: plan.k };
  return {
    ...GREEDY_VLLM,
    temperature: s.temperature,
    top_p: s.topP,
    top_k: s.topK > 0 ? s.topK : -1,
    min_p: s.minP,
    repetition_penalty: repetition,
    presence_penalty: s.presencePenalty,
    frequency_penalty: s.frequencyPenalty,
    seed: plan.seed,
    logprobs: Math.max(1, topK),
  };
}

/** The logprob vLLM's OpenAI server reports for -inf (a token outside the processed top-k). */
const VLLM_MIN_LOGPROB = -9999;

const TOKEN_ID = /^token_id:(\d+)$/;

function parseTokenId(s: unknown): number | undefined {
  if (typeof s !== "string") return undefined;
  const m = TOKEN_ID.exec(s);
  return m ? Number(m[1]) : undefined;
}

export class VllmPeer extends EngineAdapter {
  readonly kind = "vllm";
  private model: string | undefined;

  constructor(private readonly o: VllmOptions) {
    super(o);
    this.model = o.model;
  }

  protected async verify(device: ModelIdentity, signal: AbortSignal): Promise<ModelIdentity> {
    const models = await this.getJson("/v1/models", signal);
    const list = isObject(models) && Array.isArray(models.data) ? models.data.filter(isObject) : [];
    const served = list.map((m) => m.id).filter((id): id is string => typeof id === "string");
    if (served.length === 0) throw new CloudCallError("malformed", "vLLM /v1/models lists no model");
    if (this.model === undefined) this.model = served[0];
    else if (!served.includes(this.model))
      throw new CloudCallError("http", `vLLM does not serve ${this.model} (it serves ${served.join(", ")})`, 404);
    const maxLen = list.find((m) => m.id === this.model)?.max_model_len;
    if (typeof maxLen === "number" && Number.isInteger(maxLen) && maxLen > 0) this.contextLength = maxLen;
    const verified: string[] = [];
    let cannot = "vLLM reports neither the vocabulary size nor a hash, and no probe was given";
    if (this.o.probe) {
      try {
        const r = await this.postJson("/tokenize", { model: this.model, prompt: this.o.probe.text, add_special_tokens: false }, signal);
        const tokens = isObject(r) ? r.tokens : undefined;
        if (!Array.isArray(tokens)) throw new CloudCallError("malformed", "vLLM /tokenize reply has no tokens");
        if (!sameTokens(tokens, this.o.probe.tokens)) throw this.mismatch("the probe text tokenises differently");
        verified.push(`probe text tokenised identically (${tokens.length} tokens)`);
      } catch (err) {
        if (!(err instanceof HttpError && err.status === 404)) throw err;
        cannot = "the server has no /tokenize endpoint";
      }
    }
    this.requireConfirmation(verified, cannot);
    return { name: this.model!, vocabHash: device.vocabHash, vocabSize: device.vocabSize };
  }

  protected samplingPlan(s: SamplingSettings, history: readonly number[]): SamplingPlan {
    // penalties vLLM applies as Tandem does: none, or a repetition penalty whose window is the whole history
    const samePenalties = !hasPenalties(s) || (s.presencePenalty === 0 && s.frequencyPenalty === 0 && s.repeatLastN >= history.length);
    if (this.o.processedLogprobs && samePenalties) return candidatesOrEngine(s, history.length, VLLM_MAX_CANDIDATES);
    return { how: "engine", seed: engineSeed(s.seed, history.length) };
  }

  protected async step(history: readonly number[], signal: AbortSignal, draft: number, sampled?: SampledStep): Promise<EngineStep> {
    const r = await this.postJson(
      "/v1/completions",
      {
        model: this.model,
        prompt: history,
        max_tokens: 1 + draft,
        logprobs: Math.max(1, this.topK),
        return_tokens_as_token_ids: true,
        return_token_ids: true,
        ...(sampled ? sampledVllm(sampled, this.topK) : GREEDY_VLLM),
      },
      signal,
    );
    const choice = isObject(r) && Array.isArray(r.choices) && isObject(r.choices[0]) ? r.choices[0] : undefined;
    const lp = choice && isObject(choice.logprobs) ? choice.logprobs : undefined;
    if (!lp || !Array.isArray(lp.tokens) || !Array.isArray(lp.token_logprobs) || !Array.isArray(lp.top_logprobs)) {
      throw new CloudCallError("malformed", "vLLM reply has no choices[0].logprobs");
    }
    const tokenId = parseTokenId(lp.tokens[0]);
    if (tokenId === undefined)
      throw new CloudCallError(
        "malformed",
        `vLLM reply token ${JSON.stringify(lp.tokens[0])} is not "token_id:N" (is return_tokens_as_token_ids supported?)`,
      );
    const ids = choice!.token_ids;
    if (
      Array.isArray(ids) &&
      (ids.length !== (lp.tokens as unknown[]).length || ids.some((t, i) => t !== parseTokenId((lp.tokens as unknown[])[i])))
    ) {
      throw new CloudCallError("malformed", "vLLM reply: token_ids and logprobs disagree");
    }
    const topMap = lp.top_logprobs[0];
    if (!isObject(topMap)) throw new CloudCallError("malformed", "vLLM reply has no top_logprobs");
    if (sampled?.plan.how === "candidates") {
      const candidates = Object.entries(topMap).map(([k, v]) => ({
        tokenId: parseTokenId(k) as unknown,
        weight: typeof v === "number" ? (v > VLLM_MIN_LOGPROB ? Math.exp(v) : 0) : v,
      }));
      return { tokenId, logprob: undefined, top: [], candidates };
    }
    const top = Object.entries(topMap)
      .map(([k, v]) => ({ tokenId: parseTokenId(k) as unknown, logprob: v }))
      .sort((a, b) => (typeof a.logprob === "number" && typeof b.logprob === "number" ? b.logprob - a.logprob : 0));
    const usage = isObject(r) && isObject(r.usage) ? r.usage : undefined;
    const details = usage && isObject(usage.prompt_tokens_details) ? usage.prompt_tokens_details : undefined;
    const evaluated =
      typeof usage?.prompt_tokens === "number" && typeof details?.cached_tokens === "number"
        ? usage.prompt_tokens - details.cached_tokens
        : undefined;
    // the continuation: the generated tokens after the first (it stops early at end of generation)
    const continuation =
      draft === 0
        ? undefined
        : Array.isArray(choice!.token_ids)
          ? choice!.token_ids.slice(1)
          : lp.tokens.slice(1).map((t) => parseTokenId(t));
    return { tokenId, logprob: lp.token_logprobs[0], top, evaluated, draft: continuation };
  }
}

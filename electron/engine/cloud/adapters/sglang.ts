/**
 * SGLang's native server as Tandem's cloud.
 *
 *   POST /generate {input_ids: [token IDs], sampling_params: {max_new_tokens: 1, ...GREEDY_SGLANG},
 *                   return_logprob: true, top_logprobs_num: k, logprob_start_len: -1}
 *     → {text, output_ids?: [id], meta_info: {prompt_tokens, cached_tokens,
 *        output_token_logprobs: [[logprob, id, text|null]], output_top_logprobs: [[[logprob, id, text|null], ...]],
 *        finish_reason}}
 *
 * The radix cache shares KV across requests automatically: a call evaluates the tokens after the
 * longest cached prefix (`prompt_tokens - cached_tokens`). `logprob_start_len: -1` asks for no prompt
 * log-probabilities (they would cost a pass over the whole prompt's logits).
 *
 * Sampling: the server merges `--preferred-sampling-params` under each request's `sampling_params`
 * (TokenizerManager: `{**preferred, **request}`) and newer versions fill unset fields from the model's
 * generation config, so every request sets every field (GREEDY_SGLANG). Its penalties count the
 * output tokens only: they change a continuation, not a single token.
 *
 * Sampled positions (./sampling.ts): SGLang returns log-probabilities but not its candidates after
 * the sampling chain, so it always samples itself, one token a request (`max_new_tokens: 1`), with the
 * settings and `sampling_seed` derived for the position. `sampling_seed` is read only by a server
 * started with `--enable-deterministic-inference` (SamplingBatchInfo keeps the seeds only then; the
 * draw is a Gumbel-max keyed by the seed and the position); any other server draws from its global
 * generator and a sampled answer could not be reproduced, so there the adapter refuses sampled
 * positions (they fall back to the device's token) and greedy stays exact. The connect check reads
 * the flag from `/server_info` (`/get_server_info` on older servers); `deterministicInference` states
 * it where those are unavailable. Penalties: none reach a single token (see above).
 *
 * Context: a request beyond the context length is answered 400 ("The input (M tokens) is longer than
 * the model's context length (N tokens)"), reported as a context overflow (base.ts); the length is
 * learned from that message.
 *
 * Vocabulary check at connect: `GET /model_info` (`/get_model_info` on servers that have only the
 * older name) gives `model_path` and `tokenizer_path` (names only). With a probe (`opts.probe`), `POST /tokenize {prompt, add_special_tokens: false}` (listed
 * among SGLang's native APIs in recent versions, https://docs.sglang.io/basic_usage/native_api.html)
 * must return the device's token IDs for the probe text: that counts as verification. Older servers
 * answer 404 there; SGLang reports no vocabulary size or hash, so then the user must confirm
 * (`assumeSameVocabulary`). Returned token IDs are still checked against the device's vocabulary size
 * on every call.
 */
import type { ModelIdentity } from "../../../../shared/protocol.js";
import { CloudCallError } from "../peer.js";
import { EngineAdapter, isObject, sameTokens, type AdapterOptions, type EngineStep, type SampledStep } from "./base.js";
import { HttpError } from "../../../../shared/errors.js";
import type { SamplingSettings } from "../../../../shared/sampling.js";
import { cannotSample, engineSeed, type SamplingPlan } from "./sampling.js";

export interface SglangOptions extends AdapterOptions {
  /** the server runs with --enable-deterministic-inference (default: what /server_info says) */
  deterministicInference?: boolean;
}

/** SGLang's SamplingParams fields that can change the greedy token, set to greedy and neutral. */
export const GREEDY_SGLANG = {
  temperature: 0,
  top_p: 1,
  top_k: -1,
  min_p: 0,
  repetition_penalty: 1,
  presence_penalty: 0,
  frequency_penalty: 0,
  min_new_tokens: 0,
  ignore_eos: false,
} as const;

/** A sampled request's sampling parameters: every field set, as for greedy (GREEDY_SGLANG). */
export function sampledSglang({ plan, s }: SampledStep): Record<string, unknown> {
  return {
    ...GREEDY_SGLANG,
    temperature: s.temperature,
    top_p: s.topP,
    top_k: s.topK > 0 ? s.topK : -1,
    min_p: s.minP,
    repetition_penalty: s.repeatLastN > 0 ? s.repeatPenalty : 1,
    presence_penalty: s.presencePenalty,
    frequency_penalty: s.frequencyPenalty,
    sampling_seed: plan.seed,
  };
}

export class SglangPeer extends EngineAdapter {
  readonly kind = "sglang";
  /** whether the server reads `sampling_seed` (--enable-deterministic-inference), as stated or read at connect */
  private deterministic: boolean | undefined;

  constructor(private readonly o: SglangOptions) {
    super(o);
    this.deterministic = o.deterministicInference;
  }

  protected samplingPlan(s: SamplingSettings, history: readonly number[]): SamplingPlan {
    if (!this.deterministic)
      throw cannotSample(
        this.kind,
        this.deterministic === false
          ? "the server runs without --enable-deterministic-inference, so it ignores sampling_seed"
          : "the server did not say it runs with --enable-deterministic-inference, without which it ignores sampling_seed",
      );
    return { how: "engine", seed: engineSeed(s.seed, history.length) };
  }

  /** `enable_deterministic_inference` of the server's arguments, when it reports them. */
  private async readDeterministic(signal: AbortSignal): Promise<boolean | undefined> {
    for (const path of ["/server_info", "/get_server_info"]) {
      try {
        const info = await this.getJson(path, signal);
        const flag = isObject(info) ? info.enable_deterministic_inference : undefined;
        return typeof flag === "boolean" ? flag : undefined;
      } catch (err) {
        if (!(err instanceof HttpError && err.status === 404)) return undefined;
      }
    }
    return undefined;
  }

  protected async verify(device: ModelIdentity, signal: AbortSignal): Promise<ModelIdentity> {
    const info = await this.modelInfo(signal);
    if (!isObject(info) || typeof info.model_path !== "string")
      throw new CloudCallError("malformed", "SGLang /model_info reply has no model_path");
    const tok = typeof info.tokenizer_path === "string" ? info.tokenizer_path : info.model_path;
    const verified: string[] = [];
    let cannot = `SGLang reports only the tokenizer path (${tok}) and no probe was given`;
    if (this.o.probe) {
      try {
        const r = await this.postJson("/tokenize", { prompt: this.o.probe.text, add_special_tokens: false }, signal);
        const tokens = isObject(r) ? r.tokens : undefined;
        if (!Array.isArray(tokens)) throw new CloudCallError("malformed", "SGLang /tokenize reply has no tokens");
        if (!sameTokens(tokens, this.o.probe.tokens)) throw this.mismatch("the probe text tokenises differently");
        verified.push(`probe text tokenised identically (${tokens.length} tokens)`);
      } catch (err) {
        if (!(err instanceof HttpError && err.status === 404)) throw err;
        cannot = `this SGLang has no /tokenize endpoint and reports only the tokenizer path (${tok})`;
      }
    }
    this.requireConfirmation(verified, cannot);
    this.deterministic ??= await this.readDeterministic(signal);
    return { name: info.model_path, vocabHash: device.vocabHash, vocabSize: device.vocabSize };
  }

  /** `/model_info`, or on a server that does not know it (404) its older name `/get_model_info`. */
  private async modelInfo(signal: AbortSignal): Promise<unknown> {
    try {
      return await this.getJson("/model_info", signal);
    } catch (err) {
      if (!(err instanceof HttpError && err.status === 404)) throw err;
      return this.getJson("/get_model_info", signal);
    }
  }

  protected async step(history: readonly number[], signal: AbortSignal, draft: number, sampled?: SampledStep): Promise<EngineStep> {
    const r = await this.postJson(
      "/generate",
      {
        input_ids: history,
        sampling_params: { max_new_tokens: 1 + draft, ...(sampled ? sampledSglang(sampled) : GREEDY_SGLANG) },
        return_logprob: true,
        top_logprobs_num: Math.max(1, this.topK),
        logprob_start_len: -1,
      },
      signal,
    );
    const meta = isObject(r) && isObject(r.meta_info) ? r.meta_info : undefined;
    const out = meta && Array.isArray(meta.output_token_logprobs) ? meta.output_token_logprobs[0] : undefined;
    if (!Array.isArray(out) || out.length < 2) throw new CloudCallError("malformed", "SGLang reply has no meta_info.output_token_logprobs");
    const [logprob, tokenId] = out as unknown[];
    const ids = isObject(r) ? r.output_ids : undefined;
    if (Array.isArray(ids) && ids.length > 0 && ids[0] !== tokenId)
      throw new CloudCallError("malformed", "SGLang reply: output_ids and logprobs disagree");
    const topRaw = Array.isArray(meta!.output_top_logprobs) ? meta!.output_top_logprobs[0] : undefined;
    if (!Array.isArray(topRaw)) throw new CloudCallError("malformed", "SGLang reply has no output_top_logprobs");
    const top = topRaw.map((c) =>
      Array.isArray(c) ? { tokenId: c[1] as unknown, logprob: c[0] as unknown } : { tokenId: undefined, logprob: undefined },
    );
    const evaluated =
      typeof meta!.prompt_tokens === "number" && typeof meta!.cached_tokens === "number"
        ? meta!.prompt_tokens - meta!.cached_tokens
        : undefined;
    // the continuation: the generated tokens after the first (it stops early at end of generation)
    const continuation =
      draft === 0
        ? undefined
        : Array.isArray(ids)
          ? ids.slice(1)
          : (meta!.output_token_logprobs as unknown[]).slice(1).map((o) => (Array.isArray(o) ? o[1] : undefined));
    return { tokenId, logprob, top, evaluated, draft: continuation };
  }
}

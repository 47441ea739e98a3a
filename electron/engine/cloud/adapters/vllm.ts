/**
 * vLLM's OpenAI-compatible server as Tandem's cloud.
 *
 *   POST /v1/completions {model, prompt: [token IDs], max_tokens: 1, temperature: 0, logprobs: k,
 *                         return_tokens_as_token_ids: true}
 *     → {choices: [{text, token_ids?, logprobs: {tokens: ["token_id:ID"], token_logprobs: [lp],
 *        top_logprobs: [{"token_id:ID": lp, ...}]}, finish_reason}],
 *        usage: {prompt_tokens, prompt_tokens_details?: {cached_tokens}}}
 *
 * Automatic prefix caching (on by default in vLLM V1) reuses full KV blocks of the common prefix, so a
 * call evaluates the delta plus at most one partial block. `usage.prompt_tokens_details.cached_tokens`
 * (reported when the server runs with --enable-prompt-tokens-details) gives the evaluated count.
 * `logprobs` is capped at 20 by the server by default (--max-logprobs).
 *
 * Vocabulary check at connect: `GET /v1/models` gives the served model's name (and `max_model_len`),
 * not its vocabulary. With a probe (`opts.probe`), `POST /tokenize {model, prompt, add_special_tokens:
 * false}` must return the device's token IDs for the probe text: that counts as verification. vLLM
 * does not report the vocabulary size or a hash: the size and every token string cannot be verified;
 * without a probe (or if /tokenize is disabled) the user must confirm (`assumeSameVocabulary`).
 */
import type { ModelIdentity } from "../../../../shared/protocol.js";
import { CloudCallError } from "../peer.js";
import { EngineAdapter, EngineHttpError, isObject, sameTokens, type AdapterOptions, type EngineStep } from "./base.js";

export interface VllmOptions extends AdapterOptions {
  /** served model name; default: the first of GET /v1/models */
  model?: string;
}

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
    else if (!served.includes(this.model)) throw new CloudCallError("http", `vLLM does not serve ${this.model} (it serves ${served.join(", ")})`, 404);
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
        if (!(err instanceof EngineHttpError && err.status === 404)) throw err;
        cannot = "the server has no /tokenize endpoint";
      }
    }
    this.requireConfirmation(verified, cannot);
    return { name: this.model!, vocabHash: device.vocabHash, vocabSize: device.vocabSize };
  }

  protected async step(history: readonly number[], signal: AbortSignal, draft: number): Promise<EngineStep> {
    const r = await this.postJson(
      "/v1/completions",
      {
        model: this.model,
        prompt: history,
        max_tokens: 1 + draft,
        temperature: 0,
        logprobs: Math.max(1, this.topK),
        return_tokens_as_token_ids: true,
      },
      signal,
    );
    const choice = isObject(r) && Array.isArray(r.choices) && isObject(r.choices[0]) ? r.choices[0] : undefined;
    const lp = choice && isObject(choice.logprobs) ? choice.logprobs : undefined;
    if (!lp || !Array.isArray(lp.tokens) || !Array.isArray(lp.token_logprobs) || !Array.isArray(lp.top_logprobs)) {
      throw new CloudCallError("malformed", "vLLM reply has no choices[0].logprobs");
    }
    const tokenId = parseTokenId(lp.tokens[0]);
    if (tokenId === undefined) throw new CloudCallError("malformed", `vLLM reply token ${JSON.stringify(lp.tokens[0])} is not "token_id:N" (is return_tokens_as_token_ids supported?)`);
    if (Array.isArray(choice!.token_ids) && choice!.token_ids.length > 0 && choice!.token_ids[0] !== tokenId) {
      throw new CloudCallError("malformed", "vLLM reply: token_ids and logprobs disagree");
    }
    const topMap = lp.top_logprobs[0];
    if (!isObject(topMap)) throw new CloudCallError("malformed", "vLLM reply has no top_logprobs");
    const top = Object.entries(topMap)
      .map(([k, v]) => ({ tokenId: parseTokenId(k) as unknown, logprob: v }))
      .sort((a, b) => (typeof a.logprob === "number" && typeof b.logprob === "number" ? b.logprob - a.logprob : 0));
    const usage = isObject(r) && isObject(r.usage) ? r.usage : undefined;
    const details = usage && isObject(usage.prompt_tokens_details) ? usage.prompt_tokens_details : undefined;
    const evaluated =
      typeof usage?.prompt_tokens === "number" && typeof details?.cached_tokens === "number" ? usage.prompt_tokens - details.cached_tokens : undefined;
    // the continuation: the generated tokens after the first (it stops early at end of generation)
    const continuation =
      draft === 0 ? undefined : Array.isArray(choice!.token_ids) ? choice!.token_ids.slice(1) : lp.tokens.slice(1).map((t) => parseTokenId(t));
    return { tokenId, logprob: lp.token_logprobs[0], top, evaluated, draft: continuation };
  }
}

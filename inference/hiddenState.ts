/**
 * The one place that touches node-llama-cpp's undocumented hidden-state accessor.
 *
 * A context created with the internal option `_embeddings: true` keeps llama.cpp's output embeddings,
 * and `context._ctx.getEmbedding(n, size)` returns the post-final-norm last-layer hidden state of the
 * last output row of the most recent decode (docs/FACTS.md). It is not in the typings and may disappear in
 * a node-llama-cpp upgrade: test/engine/hiddenState.test.ts fails loudly if it does, and checks the
 * vector really is the state the output layer reads (W_out · h reproduces the model's logits).
 */
import type { LlamaContext, LlamaContextOptions } from "node-llama-cpp";
import { TandemError } from "../shared/errors.js";

export class HiddenStateUnavailableError extends TandemError {
  constructor(detail: string) {
    super("hidden_state_unavailable", `The SLM's hidden state is unavailable in this node-llama-cpp build: ${detail}`);
    this.name = "HiddenStateUnavailableError";
  }
}

/** Context options that make the hidden state readable. */
export function hiddenStateContextOptions(): Partial<LlamaContextOptions> {
  // `_embeddings` is an internal option of LlamaContextOptions, absent from the public typings
  return { _embeddings: true } as Partial<LlamaContextOptions>;
}

interface NativeContextWithEmbedding {
  getEmbedding(inputTokensLength: number, maxVectorSize?: number): Float64Array;
}

/** The hidden state after the most recent decode of `context` (one sequence per context). */
export function readLastHiddenState(context: LlamaContext, size: number): Float64Array {
  // `_ctx` is the native AddonContext behind LlamaContext; internal, hence the narrow local type
  const native = (context as unknown as { _ctx?: Partial<NativeContextWithEmbedding> })._ctx;
  if (!native || typeof native.getEmbedding !== "function") {
    throw new HiddenStateUnavailableError("LlamaContext._ctx.getEmbedding is missing");
  }
  const v = native.getEmbedding(1, size);
  if (!(v instanceof Float64Array) || v.length !== size) {
    throw new HiddenStateUnavailableError(`expected ${size} values, got ${v?.length}`);
  }
  return v;
}

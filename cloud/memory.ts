/**
 * KV-cache memory accounting for the cloud token server.
 *
 * Each token a session holds occupies one KV cell in every attention layer: a key and a value vector
 * of (head dimension × KV heads) elements each, stored as F16 (node-llama-cpp's default cache type,
 * which the server does not change). So
 *
 *     bytes per token = Σ over layers (key_length + value_length) × head_count_kv(layer) × 2
 *
 * e.g. stories260K: 5 layers × (8 + 8) × 4 × 2 = 640 B; Qwen2.5-7B: 28 × (128 + 128) × 4 × 2 = 56 KiB;
 * Qwen2.5-32B: 64 × 256 × 8 × 2 = 256 KiB.
 *
 * What is allocated, and when: node-llama-cpp 3.21.1 creates the context with `kv_unified` off, so
 * llama.cpp allocates one stream of `contextSize` cells per sequence up front and clears it (every
 * page is touched) — `maxSessions × contextSize × bytesPerToken` is resident from the start, whatever
 * the sessions hold. The budget (`--max-kv-mb`) is therefore enforced where the memory is taken: before
 * the context is created. What a session *uses* (tokens held × bytes per token) is reported for
 * operators; it cannot exceed the allocation because a session never holds more than contextSize - 1
 * tokens (context_overflow).
 */
import type { LlamaModel } from "node-llama-cpp";

/** llama.cpp's LLAMA_MAX_SEQ (src/llama-cparams.h): a context cannot have more sequences. */
export const MAX_SEQUENCES = 256;

/** Bytes per element of the KV cache types node-llama-cpp can be asked for (GgmlType values). */
const KV_TYPE_BYTES: Readonly<Record<number, number>> = {
  0: 4, // F32
  1: 2, // F16
  30: 2, // BF16
  8: 34 / 32, // Q8_0: blocks of 32 values in 34 bytes
  2: 18 / 32, // Q4_0
  3: 20 / 32, // Q4_1
  6: 22 / 32, // Q5_0
  7: 24 / 32, // Q5_1
};

/** The part of GGUF architecture metadata the KV size depends on (typed per architecture upstream). */
interface AttentionDims {
  block_count?: number;
  embedding_length?: number;
  attention?: {
    head_count?: number | number[];
    head_count_kv?: number | number[];
    key_length?: number;
    value_length?: number;
  };
}

export interface KvLayout {
  layers: number;
  /** key + value bytes one token takes across all layers */
  bytesPerToken: number;
}

/** KV bytes per held token, from the model's GGUF dimensions (see the file comment). */
export function kvLayout(model: LlamaModel): KvLayout {
  // architectureMetadata is a union typed per architecture; these fields are common to all attention models
  const dims = model.fileInfo.architectureMetadata as AttentionDims;
  const layers = dims.block_count ?? 0;
  const headCount = perLayer(dims.attention?.head_count, 0);
  const headCountKv = dims.attention?.head_count_kv;
  const elementBytes = KV_TYPE_BYTES[model.defaultContextKvCacheKeyType] ?? 2;
  let elements = 0;
  for (let layer = 0; layer < layers; layer++) {
    const nHead = headCount(layer);
    const nHeadKv = perLayer(headCountKv, nHead)(layer);
    const headDim = nHead > 0 ? (dims.embedding_length ?? 0) / nHead : 0;
    const keyLength = dims.attention?.key_length ?? headDim;
    const valueLength = dims.attention?.value_length ?? headDim;
    elements += (keyLength + valueLength) * nHeadKv;
  }
  const bytesPerToken = Math.ceil(elements * elementBytes);
  if (!(bytesPerToken > 0)) {
    throw new Error(
      `Cannot size the KV cache of ${model.filename ?? "this model"}: its GGUF has no attention dimensions (a recurrent model cannot serve sessions that roll back)`,
    );
  }
  return { layers, bytesPerToken };
}

function perLayer(v: number | number[] | undefined, fallback: number): (layer: number) => number {
  if (Array.isArray(v)) return (layer) => v[layer] ?? fallback;
  return () => v ?? fallback;
}

/** Human-readable bytes: 1.5 GiB, 56.0 KiB, 640 B. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

export const MIB = 1024 * 1024;

/**
 * How many sessions fit: with `maxSessions` given, checks it against the budget; otherwise derives the
 * most that fit (at most MAX_SEQUENCES). Throws with the numbers when not even one session fits or the
 * explicit count does not.
 */
export function sessionsWithinBudget(opts: {
  bytesPerToken: number;
  /** cells each session's stream takes (the padded per-sequence context size) */
  cellsPerSession: number;
  budgetBytes: number;
  maxSessions?: number;
}): number {
  const perSession = opts.bytesPerToken * opts.cellsPerSession;
  const fit = Math.min(MAX_SEQUENCES, Math.floor(opts.budgetBytes / perSession));
  const what = `a session of ${opts.cellsPerSession} tokens takes ${formatBytes(perSession)} of KV cache (${formatBytes(opts.bytesPerToken)} per token)`;
  if (fit < 1) {
    throw new Error(
      `The KV memory budget of ${formatBytes(opts.budgetBytes)} holds no session: ${what}; raise --max-kv-mb or lower --context-size`,
    );
  }
  if (opts.maxSessions === undefined) return fit;
  if (opts.maxSessions * perSession > opts.budgetBytes) {
    throw new Error(
      `${opts.maxSessions} sessions need ${formatBytes(opts.maxSessions * perSession)} of KV cache, more than the budget of ${formatBytes(opts.budgetBytes)}: ${what}; at most ${fit} fit (lower --max-sessions or --context-size, or raise --max-kv-mb)`,
    );
  }
  return opts.maxSessions;
}

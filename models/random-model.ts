/**
 * Random-weight llama / qwen2 models with a real vocabulary.
 *
 * Why: tests and benchmarks need models that llama.cpp loads and runs like real ones (same
 * architecture code path, same vocabulary size and tokenizer, realistic compute for a given
 * shape) without downloading anything. The text they produce is gibberish, but:
 *   - the vocabulary, tokenizer and chat template are real (copied from a vocabulary-only GGUF),
 *     so tokenisation, detokenisation and chat formatting behave as with the real model family;
 *   - output logits are scaled so the next-token distribution is neither flat nor one-hot:
 *     top-1 probabilities spread over (0, 1) from step to step, which is what a confidence
 *     router needs to see;
 *   - two models can share their embedding and output matrices (`embeddingSeed`) while their
 *     transformer blocks differ, so a "small" and a "large" random model agree on part of their
 *     greedy tokens, like a real SLM/LLM pair does.
 *
 * Tensor data is generated and encoded chunk by chunk while the file is written (writeGguf
 * streams), so a 1.5B-parameter shape is written with a few MB of memory.
 */
import * as fs from "node:fs";
import { GgmlType, type GgufKv, type GgufTensorSpec, kv, readGguf, writeGguf } from "../inference/gguf.js";
import { hashSeed, Prng } from "./prng.js";
import { encodeF16, encodeF32, quantizeQ8_0 } from "./quant.js";

export type RandomModelArch = "llama" | "qwen2";
export type RandomModelType = "f32" | "f16" | "q8_0";

export interface RandomModelOptions {
  /** Vocabulary-only GGUF (see vocab.ts) whose tokenizer.* keys are copied. */
  vocabFile: string;
  arch: RandomModelArch;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  nFf: number;
  contextLength: number;
  seed: number;
  /** Type of the 2-D weight matrices; norms and biases are always f32 (llama.cpp requires it). */
  type: RandomModelType;
  /** general.name */
  name: string;
  /** Seed for token_embd and output; default `seed`. Equal values make two models share them. */
  embeddingSeed?: number;
  /** Write no output.weight: llama.cpp then reuses token_embd (as real Qwen2.5 0.5B/1.5B do). Default false. */
  tieEmbeddings?: boolean;
  /** Standard deviation of the output logits (default 4: top-1 probabilities spread over (0, 1)). */
  logitStd?: number;
  /** Standard deviation of block weights and biases (default 0.02, as in GPT-2 style init). */
  weightStd?: number;
  /**
   * Standard deviation of token embeddings (default 0.1). Larger than the blocks' 0.02 so the
   * current token dominates the residual stream: two models sharing embeddings then agree on
   * about half of their greedy tokens (measured 57% for 2 vs 4 blocks at nEmbd 64, and more often
   * where the small one is confident: 73% above its median top-1 probability, 42% below).
   */
  embeddingStd?: number;
}

export interface RandomModelResult {
  path: string;
  bytes: number;
  parameters: number;
}

const FILE_TYPE: Record<RandomModelType, number> = { f32: 0, f16: 1, q8_0: 7 }; // llama_ftype
const GGML_TYPE: Record<RandomModelType, GgmlType> = { f32: GgmlType.F32, f16: GgmlType.F16, q8_0: GgmlType.Q8_0 };

/** Architecture defaults, as in the real models' GGUFs (Qwen2.5: rope base 1e6, eps 1e-6). */
const ARCH_DEFAULTS: Record<RandomModelArch, { ropeFreqBase: number; rmsEps: number; qkvBias: boolean }> = {
  llama: { ropeFreqBase: 10000, rmsEps: 1e-5, qkvBias: false },
  qwen2: { ropeFreqBase: 1_000_000, rmsEps: 1e-6, qkvBias: true },
};

/** Elements generated per chunk: small enough for low memory, big enough to amortise overhead. */
const CHUNK_ELEMENTS = 1 << 20;

/** Streams a tensor of N(0, std^2) values (or a constant) encoded as `type`. */
function generatedTensor(
  name: string,
  shape: number[],
  type: GgmlType,
  fill: { seed: number; std: number } | { constant: number },
): GgufTensorSpec {
  const total = shape.reduce((a, b) => a * b, 1);
  const rowLength = shape[0]!;
  // Whole rows per chunk keeps Q8_0 blocks (which never straddle rows) inside one chunk.
  const chunkElems = Math.max(rowLength, Math.floor(CHUNK_ELEMENTS / rowLength) * rowLength);
  function* chunks(): Generator<Uint8Array> {
    const prng = "seed" in fill ? new Prng(hashSeed(fill.seed, name)) : null;
    for (let done = 0; done < total; done += chunkElems) {
      const n = Math.min(chunkElems, total - done);
      const values = new Float32Array(n);
      if (prng && "std" in fill) prng.fillNormal(values, fill.std);
      else if ("constant" in fill) values.fill(fill.constant);
      if (type === GgmlType.F32) yield encodeF32(values);
      else if (type === GgmlType.F16) yield encodeF16(values);
      else if (type === GgmlType.Q8_0) yield quantizeQ8_0(values);
      else throw new Error(`unsupported type ${type}`);
    }
  }
  return { name, shape, type, data: chunks };
}

function vocabKvs(vocabFile: string): { kvs: GgufKv[]; nVocab: number } {
  const vocab = readGguf(vocabFile);
  // All tokenizer.* keys, chat template included, with their original types and order.
  const kvs = vocab.kvs.filter((k) => k.key.startsWith("tokenizer."));
  const tokens = vocab.get("tokenizer.ggml.tokens");
  if (!tokens || typeof tokens !== "object") throw new Error(`${vocabFile} has no tokenizer.ggml.tokens`);
  return { kvs, nVocab: tokens.items.length };
}

/** Parameter count of a shape (for reports and catalogue cross-checks). */
export function randomModelParameters(o: Omit<RandomModelOptions, "vocabFile" | "seed" | "type" | "name"> & { nVocab: number }): number {
  const nKv = (o.nEmbd / o.nHead) * o.nHeadKv;
  const qkvBias = ARCH_DEFAULTS[o.arch].qkvBias ? o.nEmbd + 2 * nKv : 0;
  const perLayer = 2 * o.nEmbd + o.nEmbd * o.nEmbd * 2 + 2 * o.nEmbd * nKv + qkvBias + 3 * o.nEmbd * o.nFf;
  return o.nVocab * o.nEmbd * (o.tieEmbeddings ? 1 : 2) + o.nEmbd + o.nLayer * perLayer;
}

/**
 * Writes a random-weight model to `out` (directly; callers wanting atomicity pass a temp path).
 * Tensor names and shapes are those llama.cpp's loader asks for (src/models/llama.cpp, qwen2.cpp):
 * shapes innermost first, so a [rows = n_vocab] x [cols = n_embd] matrix is [n_embd, n_vocab].
 */
export async function makeRandomModel(opts: RandomModelOptions & { out: string }): Promise<RandomModelResult> {
  const { arch, nEmbd, nLayer, nHead, nHeadKv, nFf } = opts;
  if (nEmbd % nHead !== 0) throw new Error(`nEmbd ${nEmbd} is not a multiple of nHead ${nHead}`);
  if (nHead % nHeadKv !== 0) throw new Error(`nHead ${nHead} is not a multiple of nHeadKv ${nHeadKv}`);
  const headDim = nEmbd / nHead;
  const nEmbdKv = headDim * nHeadKv;
  const defaults = ARCH_DEFAULTS[arch];
  const wType = GGML_TYPE[opts.type];
  const std = opts.weightStd ?? 0.02;
  const embSeed = opts.embeddingSeed ?? opts.seed;
  // RMS-normed hidden states have unit RMS, so logit std = output std * sqrt(nEmbd).
  const outputStd = (opts.logitStd ?? 4) / Math.sqrt(nEmbd);

  const { kvs: tokKvs, nVocab } = vocabKvs(opts.vocabFile);
  const p = (k: string) => `${arch}.${k}`;
  const kvs: GgufKv[] = [
    kv.string("general.architecture", arch),
    kv.string("general.name", opts.name),
    kv.string(
      "general.description",
      `Random weights (seed ${opts.seed}, embedding seed ${embSeed}) for tests and benchmarks; not a trained model.`,
    ),
    kv.u32("general.file_type", FILE_TYPE[opts.type]),
    ...(opts.type === "q8_0" ? [kv.u32("general.quantization_version", 2)] : []),
    kv.u32(p("context_length"), opts.contextLength),
    kv.u32(p("embedding_length"), nEmbd),
    kv.u32(p("block_count"), nLayer),
    kv.u32(p("feed_forward_length"), nFf),
    kv.u32(p("attention.head_count"), nHead),
    kv.u32(p("attention.head_count_kv"), nHeadKv),
    kv.f32(p("attention.layer_norm_rms_epsilon"), defaults.rmsEps),
    kv.f32(p("rope.freq_base"), defaults.ropeFreqBase),
    ...tokKvs,
  ];

  const ones = (name: string, shape: number[]) => generatedTensor(name, shape, GgmlType.F32, { constant: 1 });
  const rand = (name: string, shape: number[], s = std, seed = opts.seed, type = wType) =>
    generatedTensor(name, shape, type, { seed, std: s });

  const tensors: GgufTensorSpec[] = [
    rand("token_embd.weight", [nEmbd, nVocab], opts.embeddingStd ?? 0.1, embSeed),
    ones("output_norm.weight", [nEmbd]),
  ];
  // Explicit output head by default: with tied embeddings a random model's hidden state is close
  // to its input token's embedding, so the greedy next token would mostly repeat the input.
  if (!opts.tieEmbeddings) tensors.push(rand("output.weight", [nEmbd, nVocab], outputStd, embSeed));
  for (let i = 0; i < nLayer; i++) {
    const b = `blk.${i}.`;
    tensors.push(ones(`${b}attn_norm.weight`, [nEmbd]));
    tensors.push(rand(`${b}attn_q.weight`, [nEmbd, nEmbd]));
    tensors.push(rand(`${b}attn_k.weight`, [nEmbd, nEmbdKv]));
    tensors.push(rand(`${b}attn_v.weight`, [nEmbd, nEmbdKv]));
    if (defaults.qkvBias) {
      tensors.push(rand(`${b}attn_q.bias`, [nEmbd], std, opts.seed, GgmlType.F32));
      tensors.push(rand(`${b}attn_k.bias`, [nEmbdKv], std, opts.seed, GgmlType.F32));
      tensors.push(rand(`${b}attn_v.bias`, [nEmbdKv], std, opts.seed, GgmlType.F32));
    }
    tensors.push(rand(`${b}attn_output.weight`, [nEmbd, nEmbd]));
    tensors.push(ones(`${b}ffn_norm.weight`, [nEmbd]));
    tensors.push(rand(`${b}ffn_gate.weight`, [nEmbd, nFf]));
    tensors.push(rand(`${b}ffn_down.weight`, [nFf, nEmbd]));
    tensors.push(rand(`${b}ffn_up.weight`, [nEmbd, nFf]));
  }

  const bytes = await writeGguf(opts.out, { kvs, tensors });
  const parameters = randomModelParameters({ ...opts, nVocab });
  return { path: opts.out, bytes: bytes || fs.statSync(opts.out).size, parameters };
}

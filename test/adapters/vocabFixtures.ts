/**
 * Model variants for the engine tests: a padded copy of a model, a tokenizer that disagrees, a model
 * file carrying sampling defaults.
 */
import { GgufType, readGguf, setKv, copiedTensor, writeGguf, type GgufArray, type GgufValue } from "../../inference/gguf.js";
import type { FakeTokenizer } from "./engines.js";

/**
 * A copy of `src` whose `tokenizer.ggml.*` arrays are padded with `[PAD{i}]` entries up to `size`, as
 * llama.cpp's converter pads Qwen2.5 0.5B to 151,936 and 32B to 152,064 entries. Only the tokenizer
 * changes (the tensors are not resized): load the copy with `vocabOnly: true`.
 */
export async function writePaddedVocabulary(src: string, dest: string, size: number): Promise<void> {
  const file = readGguf(src);
  const arr = (key: string): GgufArray => {
    const v = file.get(key);
    if (v === undefined || typeof v !== "object") throw new Error(`${src} has no array ${key}`);
    return v as GgufArray;
  };
  const tokens = arr("tokenizer.ggml.tokens");
  const n = tokens.items.length;
  if (size <= n) throw new Error(`pad to ${size}: ${src} already has ${n} entries`);
  const extend = (a: GgufArray, fill: (i: number) => GgufValue): GgufArray => ({
    itemType: a.itemType,
    items: [...a.items, ...Array.from({ length: size - n }, (_, k) => fill(n + k))],
  });
  let kvs = setKv(
    file.kvs,
    "tokenizer.ggml.tokens",
    extend(tokens, (i) => `[PAD${i}]`),
  );
  // the converter marks padding entries as unused (token type 5) with score 0
  if (file.get("tokenizer.ggml.scores") !== undefined)
    kvs = setKv(
      kvs,
      "tokenizer.ggml.scores",
      extend(arr("tokenizer.ggml.scores"), () => 0),
    );
  if (file.get("tokenizer.ggml.token_type") !== undefined)
    kvs = setKv(
      kvs,
      "tokenizer.ggml.token_type",
      extend(arr("tokenizer.ggml.token_type"), () => 5),
    );
  await writeGguf(dest, { kvs, tensors: file.tensors.map((t) => copiedTensor(file, t)) });
}

/**
 * A tokenizer that agrees with `base` except that token IDs `a` and `b` are swapped: what an engine
 * serving a vocabulary with two entries in a different order would answer. Small differences like
 * this are the ones a size check cannot see.
 */
export function swappedTokenizer(base: FakeTokenizer, a: number, b: number): FakeTokenizer {
  const swap = (t: number) => (t === a ? b : t === b ? a : t);
  return {
    tokenize: (text, special) => base.tokenize(text, special).map(swap),
    detokenize: (ids) => base.detokenize(ids.map(swap)),
  };
}

/**
 * A copy of `src` (weights and all) that carries sampling defaults as a GGUF can: `general.sampling.*`
 * keys, which llama.cpp loads as the server's defaults for every field a request leaves unset
 * (common/common.cpp; only where the command line set nothing). Floats are float32, counts int32, as
 * llama.cpp reads them.
 */
export async function writeSamplingDefaults(
  src: string,
  dest: string,
  defaults: { penaltyRepeat: number; penaltyLastN?: number },
): Promise<void> {
  const file = readGguf(src);
  let kvs = setKv(file.kvs, "general.sampling.penalty_repeat", defaults.penaltyRepeat, GgufType.FLOAT32);
  if (defaults.penaltyLastN !== undefined) kvs = setKv(kvs, "general.sampling.penalty_last_n", defaults.penaltyLastN, GgufType.INT32);
  await writeGguf(dest, { kvs, tensors: file.tensors.map((t) => copiedTensor(file, t)) });
}

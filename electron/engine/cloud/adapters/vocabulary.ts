/**
 * The device model's vocabulary as the engine checks need it, and what "the same vocabulary" means
 * when two GGUF files of one model family differ only in padding.
 *
 * Padding: llama.cpp's converter (convert_hf_to_gguf.py, `get_vocab_base`) writes one
 * `tokenizer.ggml.tokens` entry per row of the embedding matrix (config.json `vocab_size`); rows the
 * tokenizer does not use become entries named `[PAD{i}]`. Qwen2.5 0.5B–3B have 151,936 rows and
 * 7B–72B 152,064 rows over one tokenizer of 151,665 tokens (151,643 regular + 22 special), so their
 * GGUF vocabularies are identical up to entry 151,664 and differ only in how many `[PAD{i}]` entries
 * follow. Tandem's identity hash (inference/modelFile.ts) therefore covers only the entries before
 * the padding; `unpaddedLength` and `paddedHash` let the engine checks reason about the same thing.
 */
import type { LlamaModel, Token } from "node-llama-cpp";
import type { ModelIdentity } from "../../../../shared/protocol.js";
import { hashVocabulary, modelIdentity, unpaddedLength, vocabularyTokens } from "../../../../inference/modelFile.js";

export { isPaddingEntry, unpaddedLength } from "../../../../inference/modelFile.js";
import { PROBE_TEXT, type VocabularyProbe } from "./base.js";

/**
 * The identity hash Tandem exchanges (over the entries before the padding, inference/modelFile.ts)
 * for a model with this tokenizer and `size` embedding rows; undefined when `size` would cut real
 * tokens. Equal to another model's hash ⇔ the two differ at most in padding.
 */
export function paddedHash(tokens: readonly string[], size: number): string | undefined {
  const real = unpaddedLength(tokens);
  if (!Number.isInteger(size) || size < real) return undefined;
  return hashVocabulary(tokens.slice(0, real));
}

/** GGUF token types (llama.cpp's llama_token_type): which entries are special. */
const TOKEN_TYPE = { normal: 1, control: 3, userDefined: 4 } as const;

export interface DeviceVocabulary {
  identity: ModelIdentity;
  /** every `tokenizer.ggml.tokens` entry, padding included */
  tokens: readonly string[];
  /** entries before the trailing padding (= tokens.length when there is none) */
  realSize: number;
  /** IDs the device tokenizer gives `text`; `special`: parse special-token text such as <|im_start|> */
  tokenize(text: string, special: boolean): number[];
  /** text of a token sequence, special tokens rendered as their text */
  detokenize(ids: readonly number[]): string;
  /** control and user-defined tokens (not padding) with their text */
  specials: Array<{ id: number; text: string }>;
  /** IDs of ordinary tokens, for sampling */
  isNormal(id: number): boolean;
  /** BOS to put before a prompt, if the model wants one */
  bos: number | undefined;
  /** what the adapters compare at connect */
  probe: VocabularyProbe;
}

/** The vocabulary of a loaded model (a `vocabOnly` load is enough). */
export function deviceVocabulary(model: LlamaModel): DeviceVocabulary {
  const tokens = vocabularyTokens(model);
  const realSize = unpaddedLength(tokens);
  // fileInfo.metadata is typed per architecture; the tokenizer block is common to all of them
  const types = (model.fileInfo.metadata as { tokenizer?: { ggml?: { token_type?: unknown } } }).tokenizer?.ggml?.token_type;
  const typeOf = (id: number): number | undefined =>
    Array.isArray(types) && typeof types[id] === "number" ? (types[id] as number) : undefined;
  const specials: Array<{ id: number; text: string }> = [];
  for (let id = 0; id < realSize; id++) {
    const t = typeOf(id);
    if (t === TOKEN_TYPE.control || t === TOKEN_TYPE.userDefined) specials.push({ id, text: model.detokenize([id as Token], true) });
  }
  const bos = model.tokens.bos;
  const tokenize = (text: string, special: boolean) => [...model.tokenize(text, special)] as number[];
  return {
    identity: modelIdentity(model),
    tokens,
    realSize,
    tokenize,
    detokenize: (ids) => {
      // llama.cpp aborts the process on an out-of-range ID instead of throwing
      const bad = ids.find((t) => !Number.isInteger(t) || t < 0 || t >= tokens.length);
      if (bad !== undefined) throw new Error(`token ID ${bad} is outside the device vocabulary [0, ${tokens.length})`);
      return model.detokenize(ids as Token[], true);
    },
    specials,
    // without a token-type array every token counts as normal (the checks then just sample wider)
    isNormal: (id) => {
      const t = typeOf(id);
      return t === undefined || t === TOKEN_TYPE.normal;
    },
    bos: model.tokens.shouldPrependBosToken && bos != null ? bos : undefined,
    probe: { text: PROBE_TEXT, tokens: tokenize(PROBE_TEXT, false), paddedFrom: realSize },
  };
}

/**
 * Texts whose tokenisation the engine must reproduce exactly: several scripts, digits, code,
 * whitespace runs, punctuation, emoji with a modifier. No special-token text: engines built on
 * Hugging Face tokenizers always parse that as special, llama.cpp only when asked.
 */
export const PROBE_TEXTS: readonly string[] = [
  PROBE_TEXT,
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.",
  "def square(x):\n    return x ** 2  # the square\n\nprint(square(12))\n",
  "3.14159 2,718,281 1e-9 100% $5.99 #42 @user a_b-c/d\\e",
  "   leading spaces, trailing spaces   \n\n\n\ttabs\t\tand\r\nnewlines",
  "Hello!!! What's up? (yes) [no] {maybe} \"quoted\" 'single' — dash… ellipsis",
  "naïve café façade Ελληνικά русский язык 한국어 中文 ไทย हिन्दी 😀👍🏽🇩🇪",
];

/**
 * Up to `n` ordinary token IDs spread over [0, realSize): the first few, an even spread, the last
 * few, each with a text that is valid UTF-8 on its own (a lone byte of a multi-byte character cannot
 * travel through JSON intact, so comparing it would test the transport, not the vocabulary).
 */
export function sampleTokenIds(v: DeviceVocabulary, n = 64): number[] {
  const candidates = new Set<number>();
  const add = (id: number) => {
    if (id >= 0 && id < v.realSize) candidates.add(id);
  };
  for (let i = 0; i < 8; i++) add(i);
  for (let i = 0; i < n; i++) add(Math.floor(((i + 0.5) * v.realSize) / n));
  for (let i = 1; i <= 8; i++) add(v.realSize - i);
  const out: number[] = [];
  for (const id of [...candidates].sort((a, b) => a - b)) {
    if (!v.isNormal(id)) continue;
    const text = v.detokenize([id]);
    if (text === "" || text.includes("\uFFFD")) continue;
    out.push(id);
    if (out.length >= n) break;
  }
  return out;
}

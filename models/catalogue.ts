/**
 * The model catalogue: which real models Tandem offers and where node-llama-cpp downloads them.
 *
 * Token-level routing needs the SLM and the LLM to share one vocabulary, so every entry is a
 * Qwen2.5 Instruct model (one tokenizer, 151,936 token ids, from 0.5B to 72B).
 * The app still checks the vocabulary of the actual files (hash of tokenizer.ggml.tokens) before
 * pairing them; `vocab` here is only for choosing compatible entries in the UI.
 *
 * URIs are node-llama-cpp `hf:` URIs in the explicit-file form `hf:<user>/<repo>/<file>`:
 * node-llama-cpp turns them into a download URL directly (no manifest request to resolve a
 * quantisation tag), and for a split model the first part's name (`-00001-of-0000N.gguf`) is
 * enough: resolveModelFile / createModelDownloader fetch the other parts and llama.cpp loads
 * them together. `tagUri` is the equivalent short form (`hf:<user>/<repo>:<QUANT>`), which
 * node-llama-cpp resolves through the Hugging Face manifest API (needs network even when the file
 * is already downloaded under another name).
 *
 * File names follow Qwen's official GGUF repositories (Qwen/Qwen2.5-<size>-Instruct-GGUF, lower-case
 * `qwen2.5-<size>-instruct-<quant>.gguf`; 7B and larger are split into ~4 GB parts). Sizes are
 * APPROXIMATE (rounded figures published for these files; nothing could be downloaded here to
 * measure them) and are for UI estimates and disk-space checks only, never for verification.
 * sha256 is null for every entry: no hash could be verified from this offline machine. Fill them
 * in from each file's Hugging Face page (LFS sha256) before turning on download verification.
 */

export type ModelRole = "slm" | "llm";
export type VocabFamily = "qwen2";

export interface CatalogueEntry {
  /** Stable id used in settings and on the command line. */
  id: string;
  role: ModelRole;
  name: string;
  /** node-llama-cpp URI, explicit-file form (first part for split models). */
  uri: string;
  /** Same model, `hf:<user>/<repo>:<QUANT>` form (resolved via the Hugging Face manifest API). */
  tagUri: string;
  /** Quantisation of the file. */
  quant: "Q8_0" | "Q4_K_M";
  /** Number of files the model is split into (1 = single file). */
  parts: number;
  /** Approximate total download size in bytes (all parts). */
  sizeBytes: number;
  /** sha256 of the (first) file, or null when not known (see the file comment). */
  sha256: string | null;
  /** Parameter count (approximate, as published: 0.49B, 1.54B...). */
  parameters: number;
  /** Context length the model was trained for (tokens; Qwen2.5 configs ship 32,768). */
  contextLength: number;
  vocab: VocabFamily;
  /** Licence of the weights, as stated on the model card. */
  license: string;
  notes: string;
}

const QWEN = "Qwen";
const GB = 1e9;

function qwen(
  size: string,
  quant: CatalogueEntry["quant"],
  parts: number,
  rest: Omit<CatalogueEntry, "id" | "name" | "uri" | "tagUri" | "quant" | "parts" | "vocab" | "contextLength" | "sha256"> &
    Partial<Pick<CatalogueEntry, "contextLength">>,
): CatalogueEntry {
  const repo = `Qwen2.5-${size}-Instruct-GGUF`;
  const base = `qwen2.5-${size.toLowerCase()}-instruct-${quant.toLowerCase()}`;
  const file = parts > 1 ? `${base}-00001-of-${String(parts).padStart(5, "0")}.gguf` : `${base}.gguf`;
  return {
    id: `qwen2.5-${size.toLowerCase()}-instruct-${quant.toLowerCase()}`,
    name: `Qwen2.5 ${size} Instruct (${quant})`,
    uri: `hf:${QWEN}/${repo}/${file}`,
    tagUri: `hf:${QWEN}/${repo}:${quant}`,
    quant,
    parts,
    sha256: null, // not verifiable offline; see the file comment
    vocab: "qwen2",
    contextLength: rest.contextLength ?? 32768,
    ...rest,
  };
}

export const catalogue: readonly CatalogueEntry[] = [
  // --- on-device SLMs ---
  qwen("0.5B", "Q8_0", 1, {
    role: "slm",
    sizeBytes: 0.68 * GB,
    parameters: 0.49e9,
    license: "Apache-2.0",
    notes:
      "Default SLM. 24 layers, 896 dims, 14 heads / 2 KV heads. Q8_0 because at 0.5B the 4-bit " +
      "quants lose noticeably more quality and the file is small anyway. A random-weight model of " +
      "this shape (models/fixtures.ts, bench) takes ~30 ms/token on a 2-core CPU.",
  }),
  qwen("0.5B", "Q4_K_M", 1, {
    role: "slm",
    sizeBytes: 0.49 * GB,
    parameters: 0.49e9,
    license: "Apache-2.0",
    notes: "Smaller, slightly faster SLM for low-memory machines.",
  }),
  qwen("1.5B", "Q4_K_M", 1, {
    role: "slm",
    sizeBytes: 1.12 * GB,
    parameters: 1.54e9,
    license: "Apache-2.0",
    notes: "Stronger SLM for machines with a GPU or Apple Silicon; also usable as a small LLM in tests. 28 layers, 1536 dims.",
  }),
  qwen("3B", "Q4_K_M", 1, {
    role: "slm",
    sizeBytes: 2.1 * GB,
    parameters: 3.09e9,
    license: "Qwen Research License (not Apache-2.0: non-commercial use)",
    notes: "Largest on-device option. Check the licence before shipping it as a default.",
  }),
  // --- cloud LLMs ---
  qwen("7B", "Q4_K_M", 2, {
    role: "llm",
    sizeBytes: 4.68 * GB,
    parameters: 7.62e9,
    license: "Apache-2.0",
    notes: "Default LLM. Split into 2 parts in the official repo. 28 layers, 3584 dims, 28 heads / 4 KV heads.",
  }),
  qwen("32B", "Q4_K_M", 5, {
    role: "llm",
    sizeBytes: 19.9 * GB,
    parameters: 32.8e9,
    license: "Apache-2.0",
    notes: "High-quality LLM option: needs a server with ~24 GB of memory for weights plus KV cache. Split into 5 parts.",
  }),
  qwen("1.5B", "Q8_0", 1, {
    role: "llm",
    sizeBytes: 1.89 * GB,
    parameters: 1.54e9,
    license: "Apache-2.0",
    notes: 'Small "LLM" for development and CPU-only servers: runs anywhere, still clearly stronger than the 0.5B SLM.',
  }),
  qwen("3B", "Q8_0", 1, {
    role: "llm",
    sizeBytes: 3.6 * GB,
    parameters: 3.09e9,
    license: "Qwen Research License (not Apache-2.0: non-commercial use)",
    notes: "Mid-size LLM for CPU servers. Check the licence before offering it.",
  }),
];

/** Default on-device model. */
export const defaultSlm: CatalogueEntry = catalogue.find((m) => m.id === "qwen2.5-0.5b-instruct-q8_0")!;
/** Default cloud model. */
export const defaultLlm: CatalogueEntry = catalogue.find((m) => m.id === "qwen2.5-7b-instruct-q4_k_m")!;

/** The entry with this id, or undefined. */
export function findModel(id: string): CatalogueEntry | undefined {
  return catalogue.find((m) => m.id === id);
}

/** Entries for a role, default first. */
export function modelsForRole(role: ModelRole): CatalogueEntry[] {
  const def = role === "slm" ? defaultSlm : defaultLlm;
  return [def, ...catalogue.filter((m) => m.role === role && m !== def)];
}

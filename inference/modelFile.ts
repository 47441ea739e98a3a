/**
 * Finding, checking and identifying GGUF model files, shared by the device engine and the cloud server.
 * Bad files get a clear `ModelFileError` before llama.cpp ever sees them where we can tell cheaply
 * (missing, not GGUF, truncated header); llama.cpp's own load errors are wrapped with the file name.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { resolveModelFile, type LlamaModel, type Llama } from "node-llama-cpp";
import type { ModelIdentity } from "../shared/protocol.js";
import { threadsFor } from "./llama.js";
import { ModelFileError, preflightModelFile } from "./modelPreflight.js";
import { defaultModelsDir } from "./appFolders.js";
import { DEFAULT_DOWNLOAD_LIMITS, downloadedModelPath, downloadModelFile, isDirectModelUri } from "./httpDownload.js";
import { TandemError, errorMessage } from "../shared/errors.js";

export function isRemoteModelUri(src: string): boolean {
  return /^(hf:|huggingface:|https?:\/\/)/.test(src);
}

export interface ResolveOptions {
  /** where downloaded models live; the user's models folder (appFolders.ts) otherwise */
  directory?: string;
  /** false: fail fast instead of downloading a missing remote model */
  download?: boolean;
  onProgress?: (p: { totalSize: number; downloadedSize: number }) => void;
  signal?: AbortSignal;
}

/** The longest node-llama-cpp may take to resolve and download a repository tag (`hf:user/repo:Q4`). */
const TAG_DOWNLOAD_DEADLINE_MS = DEFAULT_DOWNLOAD_LIMITS.deadlineMs;

/**
 * A local path stays as it is; an `hf:` URI or URL is resolved (and downloaded unless told not to).
 * A URL or an `hf:` file URI goes through our bounded downloader (deadline, stall bound, cancel, no
 * endless retry, a verified file); a repository tag needs the hub's file listing, which node-llama-cpp
 * resolves: it runs under an overall deadline, and the path it gives must be a file that passes the
 * preflight. Either way the caller never gets the path of a file that does not exist.
 */
export async function resolveModelSource(src: string, opts: ResolveOptions = {}): Promise<string> {
  if (!isRemoteModelUri(src)) return path.resolve(src);
  const directory = opts.directory ?? defaultModelsDir();
  const signal = opts.signal ?? new AbortController().signal;
  try {
    if (isDirectModelUri(src)) {
      const onProgress = opts.onProgress && ((d: number, t: number) => opts.onProgress!({ downloadedSize: d, totalSize: t }));
      if (opts.download !== false) return await downloadModelFile(src, directory, signal, DEFAULT_DOWNLOAD_LIMITS, onProgress);
      const file = await downloadedModelPath(src, directory);
      if (!file) throw new Error(`not downloaded into ${directory}, and downloading was not allowed`);
      return file;
    }
    const file = await resolveModelFile(src, {
      directory,
      download: opts.download === false ? false : "auto",
      cli: false,
      onProgress: opts.onProgress,
      signal: AbortSignal.any([signal, AbortSignal.timeout(TAG_DOWNLOAD_DEADLINE_MS)]),
      deleteTempFileOnCancel: false, // keep partial downloads so they can resume
    });
    await preflightModelFile(file);
    return file;
  } catch (err) {
    throw new ModelFileError(`Cannot get model ${src}: ${errorMessage(err)}`, src, { cause: err });
  }
}

/** Loads a GGUF model with clear errors; also returns the context thread count suited to its size. */
export async function loadModelFile(llama: Llama, file: string): Promise<{ model: LlamaModel; threads: number | undefined; size: number }> {
  // llama.cpp must never see a hostile header or a model larger than memory (see modelPreflight.ts)
  const { size } = await preflightModelFile(file);
  let model: LlamaModel;
  try {
    model = await llama.loadModel({ modelPath: file });
  } catch (err) {
    throw new ModelFileError(
      `Cannot load ${path.basename(file)}: ${errorMessage(err)} (is the file complete and a model llama.cpp supports?)`,
      file,
    );
  }
  return { model, threads: threadsFor(size), size };
}

/** The vocabulary as stored in the GGUF (tokenizer.ggml.tokens). */
export function vocabularyTokens(model: LlamaModel): readonly string[] {
  // fileInfo.metadata is typed per architecture; the tokenizer block is common to all of them
  const tokens = (model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: unknown } } }).tokenizer?.ggml?.tokens;
  if (!Array.isArray(tokens)) {
    throw new ModelFileError("The model has no tokenizer.ggml.tokens: cannot identify its vocabulary", model.filename ?? "");
  }
  return tokens as string[];
}

/** sha256 over the token strings, each length-prefixed so no two vocabularies collide by concatenation. */
export function hashVocabulary(tokens: readonly string[]): string {
  const h = createHash("sha256");
  const len = Buffer.alloc(4);
  for (const t of tokens) {
    const b = Buffer.from(t, "utf8");
    len.writeUInt32LE(b.length);
    h.update(len);
    h.update(b);
  }
  return h.digest("hex");
}

export function modelDisplayName(model: LlamaModel): string {
  const general = (model.fileInfo.metadata as { general?: { name?: unknown } }).general;
  const fileName = model.filename ? path.basename(model.filename) : "model";
  return typeof general?.name === "string" && general.name && general.name !== "llama" ? `${general.name} (${fileName})` : fileName;
}

/** Is `token` llama.cpp's converter padding entry for embedding row `index`? */
export function isPaddingEntry(token: string, index: number): boolean {
  return token === `[PAD${index}]`;
}

/** Entries before the trailing run of `[PAD{i}]` entries: the tokens the tokenizer really has. */
export function unpaddedLength(tokens: readonly string[]): number {
  let n = tokens.length;
  while (n > 0 && isPaddingEntry(tokens[n - 1]!, n - 1)) n--;
  return n;
}

/**
 * The identity both sides compare. The hash covers the tokenizer's real entries, not the padding:
 * llama.cpp's converter writes one vocabulary entry per embedding row and names the unused rows
 * `[PAD{i}]`, so Qwen2.5 0.5B–3B GGUFs have 151,936 entries and 7B–72B ones 152,064 over one and the
 * same tokenizer (the first 151,665 identical). Hashing every entry would refuse exactly the pairing
 * Tandem exists for. `vocabSize` stays the full size: each side range-checks token IDs against its own.
 */
export function modelIdentity(model: LlamaModel): ModelIdentity {
  const tokens = vocabularyTokens(model);
  return { name: modelDisplayName(model), vocabHash: hashVocabulary(tokens.slice(0, unpaddedLength(tokens))), vocabSize: tokens.length };
}

export class VocabularyMismatchError extends TandemError {
  constructor(
    readonly device: ModelIdentity,
    readonly cloud: ModelIdentity,
  ) {
    super(
      "vocab_mismatch",
      `Vocabulary mismatch: the device model ${device.name} (${device.vocabSize} tokens, vocab ${device.vocabHash.slice(0, 12)}) ` +
        `and the cloud model ${cloud.name} (${cloud.vocabSize} tokens, vocab ${cloud.vocabHash.slice(0, 12)}) ` +
        `do not share a vocabulary; token-level routing needs the same tokenizer on both sides`,
    );
    this.name = "VocabularyMismatchError";
  }
}

/** Bytes read from each of the start, middle and end of a weights file by `weightsFingerprint`. */
const FINGERPRINT_SAMPLE = 1 << 20;

/**
 * A cheap fingerprint of a model file: sha256 of its size and 1 MiB from its start (the GGUF header
 * and metadata), middle and end. It tells the device whether the cloud's SLM replica is its own SLM
 * without hashing gigabytes at every start. A collision would cost speed, never correctness: the
 * device verifies every token a replica sends (see RouteRequest).
 */
export function weightsFingerprint(file: string): string {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const hash = createHash("sha256").update(`${size}:`);
    const buf = Buffer.alloc(Math.min(FINGERPRINT_SAMPLE, size));
    for (const at of new Set([0, Math.max(0, Math.floor(size / 2) - buf.length / 2), Math.max(0, size - buf.length)])) {
      const n = fs.readSync(fd, buf, 0, buf.length, at);
      hash.update(buf.subarray(0, n));
    }
    return hash.digest("hex");
  } finally {
    fs.closeSync(fd);
  }
}

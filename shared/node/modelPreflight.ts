/**
 * Checks a GGUF model file from its header alone, before llama.cpp loads it: a damaged header, a file
 * cut short, a model too large for this computer's memory. Every model load goes through it
 * (loadModelFile: the device's SLM and the cloud server's LLM); the app and the terminal chat also call
 * it early, to refuse a file before doing anything else.
 *
 * Why before loading: llama.cpp answers a truncated file with a bare "Failed to load model", and a
 * model larger than memory is worse — it maps the file and pages it in for minutes (a header claiming
 * an 800 GB model, on a 24 GB machine, ran 300 s without an error or an answer). node-llama-cpp's own
 * GGUF reader is no help against a hostile header: one claiming 2^62 tensors or 2^40 metadata entries
 * kept it busy for minutes. The repository's reader (models/gguf.ts) bounds every count and length by
 * the bytes left in the file, so it fails at once, and it sizes the weights from the tensor table
 * without reading them (~0.1 s for a Qwen2.5 header with its 152k-token vocabulary).
 */
import os from "node:os";
import path from "node:path";
import { GgufError, readGguf, type GgufFile } from "../../models/gguf.js";
import { checkGgufFile, ModelFileError } from "./modelFile.js";

/** A model's weights may take at most this share of the computer's memory (the rest: OS, app, KV cache). */
export const MAX_MEMORY_SHARE = 0.9;

export interface Preflight {
  /** file size, bytes */
  size: number;
  /** bytes of tensor data (the weights) the header describes */
  modelBytes: number;
}

const gb = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)} GB` : `${(n / 1e6).toFixed(1)} MB`);

export async function preflightModelFile(file: string, memoryBytes = os.totalmem()): Promise<Preflight> {
  const { size } = await checkGgufFile(file); // missing, not GGUF, unknown version: already clear errors
  const name = path.basename(file);
  let g: GgufFile;
  try {
    // tensor data is checked below, with a message that says how much is missing
    g = readGguf(file, { checkTensorData: false });
  } catch (err) {
    if (!(err instanceof GgufError)) throw err;
    throw new ModelFileError(`${name} is damaged: its GGUF header cannot be read (${err.message.replace(/ \(.*?\.gguf\)$/, "")}); is the file complete?`, file);
  }
  const modelBytes = g.tensors.reduce((sum, t) => sum + t.byteSize, 0);
  const dataEnd = g.tensors.reduce((end, t) => Math.max(end, g.dataOffset + t.offset + t.byteSize), g.dataOffset);
  // a model split over several files keeps the rest of its tensors in the other parts
  const parts = g.getNumber("split.count") ?? 1;
  if (parts <= 1 && size < dataEnd) {
    throw new ModelFileError(
      `${name} is incomplete: the file has ${gb(size)} but its header describes ${gb(dataEnd)} (an interrupted download or copy?)`,
      file,
    );
  }
  if (modelBytes > MAX_MEMORY_SHARE * memoryBytes) {
    throw new ModelFileError(
      `${name} is too large for this computer: its weights alone need ${gb(modelBytes)} of memory and this computer has ` +
        `${gb(memoryBytes)} in all. Choose a smaller or more strongly quantised model.`,
      file,
    );
  }
  return { size, modelBytes };
}

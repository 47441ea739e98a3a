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
 * kept it busy for minutes. The repository's reader (inference/gguf.ts) bounds every count and length by
 * the bytes left in the file, so it fails at once, and it sizes the weights from the tensor table
 * without reading them (~0.1 s for a Qwen2.5 header with its 152k-token vocabulary).
 */
import { open, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { GgufError, readGguf, type GgufFile } from "./gguf.js";
import { TandemError } from "../shared/errors.js";

export class ModelFileError extends TandemError {
  constructor(
    message: string,
    readonly file: string,
    options?: { cause?: unknown },
  ) {
    super("model_file", message, options);
    this.name = "ModelFileError";
  }
}

/** Checks that `file` exists and starts like a GGUF file; cheap, runs before llama.cpp loads it. */
export async function checkGgufFile(file: string): Promise<{ size: number }> {
  let st;
  try {
    st = await stat(file);
  } catch {
    throw new ModelFileError(`Model file not found: ${file}`, file);
  }
  if (!st.isFile()) throw new ModelFileError(`Not a file: ${file}`, file);
  const fh = await open(file, "r");
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await fh.read(head, 0, 8, 0);
    if (bytesRead < 8 || head.toString("latin1", 0, 4) !== "GGUF") {
      throw new ModelFileError(`${path.basename(file)} is not a GGUF model file (it does not start with the GGUF magic bytes)`, file);
    }
    const version = head.readUInt32LE(4);
    if (version < 2 || version > 3) {
      throw new ModelFileError(`${path.basename(file)}: unsupported GGUF version ${version}`, file);
    }
  } finally {
    await fh.close();
  }
  return { size: st.size };
}

/** A model's weights may take at most this share of the computer's memory (the rest: OS, app, KV cache). */
export const MAX_MEMORY_SHARE = 0.9;

export interface Preflight {
  /** file size, bytes */
  size: number;
  /** bytes of tensor data (the weights) the header describes */
  modelBytes: number;
}

const gb = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)} GB` : `${(n / 1e6).toFixed(1)} MB`);

/** llama.cpp's name for part i of n (llama_split_path): `<prefix>-00001-of-00003.gguf`. */
const SPLIT_NAME = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/;
/** More parts than any published model has; a bound on the files a hostile header can make us open. */
export const MAX_SPLIT_PARTS = 256;

interface Part {
  file: string;
  size: number;
  header: GgufFile;
}

export async function preflightModelFile(file: string, memoryBytes = os.totalmem()): Promise<Preflight> {
  const first = await readPart(file);
  const parts = [first];
  for (const other of await otherParts(first)) parts.push(await readPart(other));
  parts.forEach((p, i) => checkPart(p, i, parts.length));
  const modelBytes = parts.reduce((sum, p) => sum + p.header.tensors.reduce((s, t) => s + t.byteSize, 0), 0);
  const tensors = parts.reduce((n, p) => n + p.header.tensors.length, 0);
  const claimed = first.header.getNumber("split.tensors.count");
  if (parts.length > 1 && claimed !== undefined && claimed !== tensors) {
    throw new ModelFileError(
      `${path.basename(file)} is damaged: its parts hold ${tensors} tensors, not the ${claimed} its header says`,
      file,
    );
  }
  if (modelBytes > MAX_MEMORY_SHARE * memoryBytes) {
    throw new ModelFileError(
      `${path.basename(file)} is too large for this computer: its weights alone need ${gb(modelBytes)} of memory and this computer has ` +
        `${gb(memoryBytes)} in all. Choose a smaller or more strongly quantised model.`,
      file,
    );
  }
  return { size: parts.reduce((n, p) => n + p.size, 0), modelBytes };
}

/** One file's header, arrays walked but not kept (the preflight never needs the vocabulary). */
async function readPart(file: string): Promise<Part> {
  const { size } = await checkGgufFile(file); // missing, not GGUF, unknown version: already clear errors
  try {
    // tensor data is checked in checkPart, with a message that says how much is missing
    return { file, size, header: readGguf(file, { checkTensorData: false, skipArrays: true }) };
  } catch (err) {
    if (!(err instanceof GgufError)) throw err;
    const why = err.message.endsWith(` (${file})`) ? err.message.slice(0, -` (${file})`.length) : err.message;
    throw new ModelFileError(`${path.basename(file)} is damaged: its GGUF header cannot be read (${why}); is the file complete?`, file);
  }
}

/**
 * The paths of parts 2..n of a split model, from the first part's name and `split.count`; [] for a
 * single file. llama.cpp loads a split model from its first part and finds the others by name.
 */
async function otherParts(first: Part): Promise<string[]> {
  const name = path.basename(first.file);
  const count = first.header.getNumber("split.count") ?? 1;
  const m = SPLIT_NAME.exec(name);
  const named = m ? Number(m[3]) : 1;
  if (count <= 1 && named <= 1) return [];
  if (!m || count !== named) {
    throw new ModelFileError(
      `${name} is one of ${count > 1 ? count : named} parts of a split model, but its name and header disagree on how many`,
      first.file,
    );
  }
  if (Number(m[2]) !== 1) {
    throw new ModelFileError(
      `${name} is part ${Number(m[2])} of a split model: open its first part (${m[1]}-00001-of-${m[3]}.gguf)`,
      first.file,
    );
  }
  if (count > MAX_SPLIT_PARTS)
    throw new ModelFileError(`${name} claims ${count} parts; at most ${MAX_SPLIT_PARTS} are supported`, first.file);
  const dir = path.dirname(first.file);
  return Array.from({ length: count - 1 }, (_, i) => path.join(dir, `${m[1]}-${String(i + 2).padStart(5, "0")}-of-${m[3]}.gguf`));
}

/** Part `index` of `count`: it says it is that part, and it holds all of its tensor data. */
function checkPart(p: Part, index: number, count: number): void {
  const name = path.basename(p.file);
  if (count > 1) {
    const no = p.header.getNumber("split.no");
    const of = p.header.getNumber("split.count");
    if (no !== index || of !== count) {
      throw new ModelFileError(
        `${name} is damaged: it should be part ${index + 1} of ${count} but its header says part ${no === undefined ? "?" : no + 1} of ${of ?? "?"}`,
        p.file,
      );
    }
  }
  const g = p.header;
  const dataEnd = g.tensors.reduce((end, t) => Math.max(end, g.dataOffset + t.offset + t.byteSize), g.dataOffset);
  if (p.size < dataEnd) {
    throw new ModelFileError(
      `${name} is incomplete: the file has ${gb(p.size)} but its header describes ${gb(dataEnd)} (an interrupted download or copy?)`,
      p.file,
    );
  }
}

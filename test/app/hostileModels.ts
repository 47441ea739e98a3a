/**
 * Hostile model files for the app and CLI tests: damaged GGUF headers, files cut short, a model far
 * too large for this computer's memory. Written into a temporary folder; each comes with what the
 * user must be told.
 */
import { mkdirSync, mkdtempSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ensureFixtures } from "../../models/fixtures.js";
import { alignUp, GgmlType, readGguf, setKv, tensorByteSize, writeGguf, type GgufTensorSpec } from "../../models/gguf.js";

export interface HostileModel {
  what: string;
  file: string;
  /** the clear message expected */
  error: RegExp;
}

class HeaderOnly extends Error {}

/**
 * A model with the shapes of a 405B-parameter llama (126 blocks, 16,384 wide, F16: ~810 GB of weights)
 * and the GPT-2 vocabulary of the rand-gpt2 fixture. Only the header is written; with `sparse` the file
 * is then extended to its full size as a sparse file (no disk used), so it is complete as far as its
 * size can tell, and only the memory check can refuse it. Without `sparse` it is a header cut short.
 */
export async function writeHugeModel(out: string, sparse: boolean): Promise<{ claimedBytes: number }> {
  const f = await ensureFixtures();
  const src = readGguf(f.randGpt2);
  const E = 16384;
  const F = 53248;
  const L = 126;
  const nVocab = src.tensors.find((t) => t.name === "token_embd.weight")!.shape[1];
  let kvs = setKv(src.kvs, "general.name", "tandem huge (header only)");
  for (const [k, v] of [
    ["llama.embedding_length", E],
    ["llama.block_count", L],
    ["llama.feed_forward_length", F],
    ["llama.attention.head_count", 128],
    ["llama.attention.head_count_kv", 8],
  ] as const) {
    kvs = setKv(kvs, k, v);
  }
  // writeGguf writes the whole header before it asks for the first tensor's data (it streams tensors
  // in order): stopping there leaves exactly the header on disk
  const t = (name: string, shape: number[], type = GgmlType.F16): GgufTensorSpec => ({
    name,
    shape,
    type,
    data: () => {
      throw new HeaderOnly();
    },
  });
  const tensors = [t("token_embd.weight", [E, nVocab]), t("output_norm.weight", [E], GgmlType.F32), t("output.weight", [E, nVocab])];
  for (let i = 0; i < L; i++) {
    const b = `blk.${i}.`;
    tensors.push(
      t(`${b}attn_norm.weight`, [E], GgmlType.F32),
      t(`${b}attn_q.weight`, [E, E]),
      t(`${b}attn_k.weight`, [E, 1024]),
      t(`${b}attn_v.weight`, [E, 1024]),
      t(`${b}attn_output.weight`, [E, E]),
      t(`${b}ffn_norm.weight`, [E], GgmlType.F32),
      t(`${b}ffn_gate.weight`, [E, F]),
      t(`${b}ffn_down.weight`, [F, E]),
      t(`${b}ffn_up.weight`, [E, F]),
    );
  }
  await writeGguf(out, { kvs, tensors }).catch((e) => {
    if (!(e instanceof HeaderOnly)) throw e;
  });
  let data = 0;
  for (const x of tensors) data = alignUp(data + tensorByteSize(x.type, x.shape), 32);
  if (sparse) truncateSync(out, statSync(out).size + data);
  return { claimedBytes: data };
}

/** A GGUF header from raw little-endian fields, for headers no writer would produce. */
type Field = readonly ["u32", number] | readonly ["u64", bigint] | readonly ["str", string] | readonly ["bytes", Buffer];
function rawHeader(fields: Field[]): Buffer {
  return Buffer.concat(
    fields.map(([type, v]) => {
      if (type === "bytes") return v;
      if (type === "str") {
        const s = Buffer.from(v);
        const n = Buffer.alloc(8);
        n.writeBigUInt64LE(BigInt(s.length));
        return Buffer.concat([n, s]);
      }
      const b = Buffer.alloc(type === "u32" ? 4 : 8);
      if (type === "u32") b.writeUInt32LE(v);
      else b.writeBigUInt64LE(v);
      return b;
    }),
  );
}

const MAGIC: Field = ["u32", 0x46554747];
const V3: Field = ["u32", 3];

/** Every hostile model file, with the message each must produce. */
export async function hostileModels(): Promise<HostileModel[]> {
  const f = await ensureFixtures();
  const dir = mkdtempSync(path.join(tmpdir(), "tandem-hostile-models-"));
  const file = (name: string, content: Buffer | string) => {
    const p = path.join(dir, name);
    writeFileSync(p, content);
    return p;
  };
  const huge = path.join(dir, "huge-405b-shape.gguf");
  await writeHugeModel(huge, true);
  const hugeCut = path.join(dir, "huge-header-only.gguf");
  await writeHugeModel(hugeCut, false);
  mkdirSync(path.join(dir, "folder.gguf"));
  const damaged = /is damaged: its GGUF header cannot be read/;
  return [
    { what: "a model too large for this computer's memory", file: huge, error: /huge-405b-shape\.gguf is too large for this computer: its weights alone need \d+\.\d GB of memory and this computer has \d+\.\d GB/ },
    { what: "a truncated GGUF (rand-gpt2 cut in its tensor data)", file: f.corrupt, error: /corrupt\.gguf is incomplete: the file has .* but its header describes/ },
    { what: "a huge model's header without its data", file: hugeCut, error: /huge-header-only\.gguf is incomplete/ },
    { what: "a file that is not GGUF", file: f.notModel, error: /not a GGUF model file/ },
    { what: "an empty file", file: file("empty.gguf", ""), error: /not a GGUF model file/ },
    { what: "the magic and nothing else", file: file("magic-only.gguf", rawHeader([MAGIC, V3])), error: damaged },
    { what: "an unknown GGUF version", file: file("version-99.gguf", rawHeader([MAGIC, ["u32", 99], ["u64", 0n], ["u64", 0n]])), error: /unsupported GGUF version 99/ },
    { what: "a header claiming 2^62 tensors", file: file("many-tensors.gguf", rawHeader([MAGIC, V3, ["u64", 1n << 62n], ["u64", 0n]])), error: damaged },
    { what: "a header claiming 2^40 metadata entries", file: file("many-kvs.gguf", rawHeader([MAGIC, V3, ["u64", 0n], ["u64", 1n << 40n]])), error: damaged },
    {
      what: "a metadata key claiming to be 2^62 bytes long",
      file: file("long-key.gguf", rawHeader([MAGIC, V3, ["u64", 0n], ["u64", 1n], ["u64", 1n << 62n], ["bytes", Buffer.from("general.name")]])),
      error: damaged,
    },
    {
      what: "a metadata array claiming 2^50 entries",
      file: file("long-array.gguf", rawHeader([MAGIC, V3, ["u64", 0n], ["u64", 1n], ["str", "tokenizer.ggml.scores"], ["u32", 9], ["u32", 6], ["u64", 1n << 50n], ["bytes", Buffer.alloc(64)]])),
      error: damaged,
    },
    { what: "a folder named .gguf", file: path.join(dir, "folder.gguf"), error: /Not a file/ },
    { what: "a missing file", file: path.join(dir, "missing.gguf"), error: /Model file not found/ },
  ];
}

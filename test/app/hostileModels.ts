/**
 * Hostile model files for the app and CLI tests: damaged GGUF headers, files cut short, a model far
 * too large for this computer's memory. Written into a temporary folder; each comes with what the
 * user must be told.
 */
import { mkdirSync, mkdtempSync, openSync, closeSync, ftruncateSync, statSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ensureFixtures } from "../../models/fixtures.js";
import {
  alignUp,
  copiedTensor,
  GgmlType,
  GgufType,
  readGguf,
  setKv,
  tensorByteSize,
  writeGguf,
  type GgufKv,
  type GgufTensorSpec,
} from "../../inference/gguf.js";

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

/**
 * Writes `src` as a split model the way llama.cpp's gguf-split does: `<prefix>-0000i-of-0000n.gguf`, the
 * first part with all the metadata, every part with split.no / split.count / split.tensors.count and
 * its share of the tensors. Returns the parts' paths.
 */
export async function writeSplitModel(src: string, prefix: string, n: number): Promise<string[]> {
  const g = readGguf(src);
  const per = Math.ceil(g.tensors.length / n);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    const split: GgufKv[] = [
      { key: "split.no", type: GgufType.UINT16, value: i },
      { key: "split.count", type: GgufType.UINT16, value: n },
      { key: "split.tensors.count", type: GgufType.INT32, value: g.tensors.length },
    ];
    const kvs = i === 0 ? [...g.kvs, ...split] : split;
    const file = `${prefix}-${String(i + 1).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.gguf`;
    await writeGguf(file, { kvs, tensors: g.tensors.slice(i * per, (i + 1) * per).map((t) => copiedTensor(g, t)) });
    parts.push(file);
  }
  return parts;
}

/** A header of 0 tensors and one metadata array of `entries` uint8s, the file extended sparsely to hold them. */
function sparseArrayModel(file: string, entries: number): void {
  writeFileSync(
    file,
    rawHeader([
      MAGIC,
      V3,
      ["u64", 0n],
      ["u64", 1n],
      ["str", "tokenizer.ggml.token_type"],
      ["u32", 9],
      ["u32", 0],
      ["u64", BigInt(entries)],
    ]),
  );
  const fd = openSync(file, "r+");
  ftruncateSync(fd, statSync(file).size + entries);
  closeSync(fd);
}

/** Arrays nested `depth` deep, each holding the next (12 bytes a level). */
function nestedArrays(depth: number): Buffer {
  const level = rawHeader([
    ["u32", 9],
    ["u64", 1n],
  ]);
  const innermost = rawHeader([
    ["u32", 0],
    ["u64", 0n],
  ]);
  return Buffer.concat([
    rawHeader([MAGIC, V3, ["u64", 0n], ["u64", 1n], ["str", "deep"], ["u32", 9]]),
    Buffer.alloc(level.length * depth, level),
    innermost,
  ]);
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
  // split models (issue 16): every part is read; a part cut short, hostile, missing or mislabelled
  const [cut1, cut2] = await writeSplitModel(f.randGpt2, path.join(dir, "cut"), 2);
  truncateSync(cut2, statSync(cut2).size - 4096);
  const [hostile1, hostile2] = await writeSplitModel(f.randGpt2, path.join(dir, "hostile"), 2);
  writeFileSync(hostile2, rawHeader([MAGIC, V3, ["u64", 0n], ["u64", 1n << 40n]]));
  const [missing1, , missing3] = await writeSplitModel(f.randGpt2, path.join(dir, "missing"), 3);
  unlinkSync(missing3);
  const [, second] = await writeSplitModel(f.randGpt2, path.join(dir, "second"), 2);
  const sparse = path.join(dir, "array-300m.gguf");
  sparseArrayModel(sparse, 300_000_000);
  const deep = file("nested-200k.gguf", nestedArrays(200_000));
  return [
    {
      what: "a model too large for this computer's memory",
      file: huge,
      error:
        /huge-405b-shape\.gguf is too large for this computer: its weights alone need \d+\.\d GB of memory and this computer has \d+\.\d GB/,
    },
    {
      what: "a truncated GGUF (rand-gpt2 cut in its tensor data)",
      file: f.corrupt,
      error: /corrupt\.gguf is incomplete: the file has .* but its header describes/,
    },
    { what: "a huge model's header without its data", file: hugeCut, error: /huge-header-only\.gguf is incomplete/ },
    { what: "a file that is not GGUF", file: f.notModel, error: /not a GGUF model file/ },
    { what: "an empty file", file: file("empty.gguf", ""), error: /not a GGUF model file/ },
    { what: "the magic and nothing else", file: file("magic-only.gguf", rawHeader([MAGIC, V3])), error: damaged },
    {
      what: "an unknown GGUF version",
      file: file("version-99.gguf", rawHeader([MAGIC, ["u32", 99], ["u64", 0n], ["u64", 0n]])),
      error: /unsupported GGUF version 99/,
    },
    {
      what: "a header claiming 2^62 tensors",
      file: file("many-tensors.gguf", rawHeader([MAGIC, V3, ["u64", 1n << 62n], ["u64", 0n]])),
      error: damaged,
    },
    {
      what: "a header claiming 2^40 metadata entries",
      file: file("many-kvs.gguf", rawHeader([MAGIC, V3, ["u64", 0n], ["u64", 1n << 40n]])),
      error: damaged,
    },
    {
      what: "a metadata key claiming to be 2^62 bytes long",
      file: file(
        "long-key.gguf",
        rawHeader([MAGIC, V3, ["u64", 0n], ["u64", 1n], ["u64", 1n << 62n], ["bytes", Buffer.from("general.name")]]),
      ),
      error: damaged,
    },
    {
      what: "a metadata array claiming 2^50 entries",
      file: file(
        "long-array.gguf",
        rawHeader([
          MAGIC,
          V3,
          ["u64", 0n],
          ["u64", 1n],
          ["str", "tokenizer.ggml.scores"],
          ["u32", 9],
          ["u32", 6],
          ["u64", 1n << 50n],
          ["bytes", Buffer.alloc(64)],
        ]),
      ),
      error: damaged,
    },
    { what: "a split model whose second part is cut short", file: cut1, error: /cut-00002-of-00002\.gguf is incomplete: the file has/ },
    {
      what: "a split model whose second part claims 2^40 metadata entries",
      file: hostile1,
      error: /hostile-00002-of-00002\.gguf is damaged: its GGUF header cannot be read/,
    },
    { what: "a split model missing its third part", file: missing1, error: /Model file not found: .*missing-00003-of-00003\.gguf/ },
    {
      what: "the second part of a split model",
      file: second,
      error: /second-00002-of-00002\.gguf is part 2 of a split model: open its first part/,
    },
    {
      what: "a 300 MB sparse file with one metadata array of 300M entries",
      file: sparse,
      error: /array-300m\.gguf is damaged: .*an array of 300000000 entries \(the limit is \d+\)/,
    },
    { what: "metadata arrays nested 200,000 deep", file: deep, error: /nested-200k\.gguf is damaged: .*arrays nested more than 8 deep/ },
    { what: "a folder named .gguf", file: path.join(dir, "folder.gguf"), error: /Not a file/ },
    { what: "a missing file", file: path.join(dir, "missing.gguf"), error: /Model file not found/ },
  ];
}

/**
 * GGUF reader/writer: round trips (metadata types, tensor bytes, alignment), byte-identical
 * rewrites of files written by llama.cpp's own tooling, cross-check against node-llama-cpp's
 * independent GGUF parser, and clear errors for files that are not (whole) GGUFs.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureFixtures, type Fixtures, storiesSourcePath } from "../../models/fixtures.js";
import {
  copiedTensor,
  GgmlType,
  GgufError,
  GgufType,
  type GgufKv,
  type GgufTensorSpec,
  kv,
  parseGguf,
  readGguf,
  readTensorData,
  setKv,
  tensorByteSize,
  tensorChunks,
  writeGguf,
} from "../../inference/gguf.js";

const storiesAvailable = fs.existsSync(storiesSourcePath());
let fx: Fixtures;
let tmp: string;

beforeAll(async () => {
  fx = await ensureFixtures();
  tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), "tandem-gguf-test-"));
});
afterAll(async () => {
  if (tmp) await fs.promises.rm(tmp, { recursive: true, force: true });
});

const sha256 = (p: string) => createHash("sha256").update(fs.readFileSync(p)).digest("hex");

/** Every metadata type, including nested arrays of strings and 64-bit integers. */
function allTypesKvs(): GgufKv[] {
  return [
    kv.string("general.architecture", "llama"),
    { key: "t.u8", type: GgufType.UINT8, value: 255 },
    { key: "t.i8", type: GgufType.INT8, value: -128 },
    { key: "t.u16", type: GgufType.UINT16, value: 65535 },
    { key: "t.i16", type: GgufType.INT16, value: -32768 },
    { key: "t.u32", type: GgufType.UINT32, value: 0xffffffff },
    { key: "t.i32", type: GgufType.INT32, value: -2147483648 },
    { key: "t.f32", type: GgufType.FLOAT32, value: 0.5 },
    { key: "t.bool", type: GgufType.BOOL, value: true },
    { key: "t.string", type: GgufType.STRING, value: "héllo ✓ 🙂" },
    { key: "t.u64", type: GgufType.UINT64, value: 18446744073709551615n },
    { key: "t.i64", type: GgufType.INT64, value: -9223372036854775808n },
    { key: "t.f64", type: GgufType.FLOAT64, value: Math.PI },
    kv.array("t.arr.i32", GgufType.INT32, [1, -2, 3]),
    kv.array("t.arr.str", GgufType.STRING, ["a", "", "ĠĠ"]),
    kv.array("t.arr.empty", GgufType.FLOAT32, []),
    {
      key: "t.arr.nested",
      type: GgufType.ARRAY,
      value: {
        itemType: GgufType.ARRAY,
        items: [
          { itemType: GgufType.STRING, items: ["x", "yz"] },
          { itemType: GgufType.STRING, items: [] },
        ],
      },
    },
  ];
}

describe("GGUF round trip", () => {
  it("keeps every metadata type, tensor infos and bytes (read -> write -> read)", async () => {
    const f32 = Buffer.from(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
    const q8 = Buffer.alloc(34 * 2, 7); // two Q8_0 blocks
    const tensors: GgufTensorSpec[] = [
      { name: "a", shape: [3, 2], type: GgmlType.F32, data: f32 },
      { name: "b", shape: [64], type: GgmlType.Q8_0, data: q8 },
      // A generator, as the streaming writer uses for big tensors.
      { name: "c", shape: [5], type: GgmlType.F16, data: () => [Buffer.alloc(4, 1), Buffer.alloc(6, 2)] },
    ];
    const first = path.join(tmp, "all-types.gguf");
    await writeGguf(first, { kvs: allTypesKvs(), tensors });
    const a = readGguf(first);
    expect(a.version).toBe(3);
    expect(a.kvs).toEqual(allTypesKvs());
    expect(a.tensors.map((t) => [t.name, t.shape, t.type])).toEqual([
      ["a", [3, 2], GgmlType.F32],
      ["b", [64], GgmlType.Q8_0],
      ["c", [5], GgmlType.F16],
    ]);
    // Offsets are relative to the data section and aligned (default 32).
    expect(a.tensors.map((t) => t.offset)).toEqual([0, 32, 128]); // a: 24 bytes, b: 68 bytes, each padded to 32
    expect(a.dataOffset % 32).toBe(0);
    expect(readTensorData(a, "a")).toEqual(f32);
    expect(readTensorData(a, "b")).toEqual(q8);
    expect(readTensorData(a, "c")).toEqual(Buffer.concat([Buffer.alloc(4, 1), Buffer.alloc(6, 2)]));

    const second = path.join(tmp, "all-types-2.gguf");
    await writeGguf(second, { kvs: a.kvs, tensors: a.tensors.map((t) => copiedTensor(a, t)) });
    const b = readGguf(second);
    expect(b.kvs).toEqual(a.kvs);
    expect(b.tensors).toEqual(a.tensors);
    expect(sha256(second)).toBe(sha256(first));
    // In-memory parsing agrees with file parsing.
    const mem = parseGguf(fs.readFileSync(second));
    expect(mem.kvs).toEqual(a.kvs);
    expect(mem.tensors).toEqual(a.tensors);
  });

  it("is understood by node-llama-cpp's own GGUF parser", async () => {
    const { readGgufFileInfo } = await import("node-llama-cpp");
    const p = path.join(tmp, "all-types.gguf");
    const info = await readGgufFileInfo(p, { readTensorInfo: true });
    const t = (info.metadata as unknown as { t: Record<string, unknown> }).t;
    expect(t.u32).toBe(0xffffffff);
    expect(t.i16).toBe(-32768);
    expect(t.string).toBe("héllo ✓ 🙂");
    expect(t.u64).toBe(18446744073709551615n);
    expect((t.arr as Record<string, unknown>).str).toEqual(["a", "", "ĠĠ"]);
    expect((t.arr as Record<string, unknown>).nested).toEqual([["x", "yz"], []]);
    expect(info.tensorInfo?.map((x) => [x.name, x.dimensions.map(Number), Number(x.offset)])).toEqual([
      ["a", [3, 2], 0],
      ["b", [64], 32],
      ["c", [5], 128],
    ]);
  });

  it("honours general.alignment", async () => {
    const p = path.join(tmp, "align64.gguf");
    const kvs = [kv.string("general.architecture", "llama"), kv.u32("general.alignment", 64)];
    const tensors: GgufTensorSpec[] = [
      { name: "x", shape: [3], type: GgmlType.F32, data: Buffer.alloc(12, 1) },
      { name: "y", shape: [3], type: GgmlType.F32, data: Buffer.alloc(12, 2) },
    ];
    await writeGguf(p, { kvs, tensors });
    const f = readGguf(p);
    expect(f.alignment).toBe(64);
    expect(f.dataOffset % 64).toBe(0);
    expect(f.tensors.map((t) => t.offset)).toEqual([0, 64]);
    expect(fs.statSync(p).size % 64).toBe(0);
    expect(readTensorData(f, "y")).toEqual(Buffer.alloc(12, 2));
  });

  it("rewrites llama.cpp-made files byte for byte (vocabularies: 150K-entry string arrays, chat template)", async () => {
    for (const src of [fx.vocab.qwen2, fx.vocab.gpt2]) {
      const f = readGguf(src);
      const out = path.join(tmp, path.basename(src));
      await writeGguf(out, { version: f.version as 3, kvs: f.kvs, tensors: f.tensors.map((t) => copiedTensor(f, t)) });
      expect(sha256(out)).toBe(sha256(src));
    }
    const q = readGguf(fx.vocab.qwen2);
    expect(q.getString("tokenizer.chat_template")).toContain("<|im_start|>");
    const tokens = q.get("tokenizer.ggml.tokens");
    expect(typeof tokens === "object" && tokens.items.length).toBe(151936);
  });

  it.skipIf(!storiesAvailable)(
    `rewrites stories260K byte for byte${storiesAvailable ? "" : ` (skipped: ${storiesSourcePath()} not found)`}`,
    async () => {
      expect(fx.storiesLlm, "the stories260K fixture").toBeTruthy();
      const f = readGguf(fx.storiesLlm!);
      const out = path.join(tmp, "stories.gguf");
      await writeGguf(out, { version: f.version as 3, kvs: f.kvs, tensors: f.tensors.map((t) => copiedTensor(f, t)) });
      expect(sha256(out)).toBe(sha256(fx.storiesLlm!));
    },
  );

  it("streams a tensor in chunks equal to its whole bytes", async () => {
    const f = readGguf(fx.randGpt2);
    const t = f.tensor("token_embd.weight")!;
    const chunks: Buffer[] = [];
    for await (const c of tensorChunks(f, t, 1 << 20)) chunks.push(c);
    expect(chunks.length).toBeGreaterThan(1);
    // Buffer.equals, not toEqual: vitest's deep equality on 12 MB takes minutes.
    expect(Buffer.concat(chunks).equals(readTensorData(f, t))).toBe(true);
  });

  it("setKv keeps an existing key's position and integer type", () => {
    const kvs: GgufKv[] = [
      kv.string("a", "x"),
      { key: "n", type: GgufType.INT32, value: 5 },
      { key: "big", type: GgufType.UINT64, value: 1n },
    ];
    const out = setKv(setKv(kvs, "n", 4), "big", 7);
    expect(out[1]).toEqual({ key: "n", type: GgufType.INT32, value: 4 });
    expect(out[2]).toEqual({ key: "big", type: GgufType.UINT64, value: 7n });
    expect(setKv(kvs, "new", "v", GgufType.STRING).at(-1)).toEqual({ key: "new", type: GgufType.STRING, value: "v" });
    expect(() => setKv(kvs, "new", "v")).toThrow(GgufError);
  });

  it("knows tensor sizes of block-quantised types", () => {
    expect(tensorByteSize(GgmlType.F32, [64, 512])).toBe(64 * 512 * 4);
    expect(tensorByteSize(GgmlType.Q8_0, [896, 151936])).toBe((896 / 32) * 34 * 151936);
    expect(tensorByteSize(GgmlType.Q4_K, [256, 2])).toBe(2 * 144);
    expect(() => tensorByteSize(GgmlType.Q8_0, [33])).toThrow(/multiple of the Q8_0 block size/);
  });
});

describe("GGUF errors", () => {
  it("rejects a file that is not GGUF (bad magic)", () => {
    expect(() => readGguf(fx.notModel)).toThrow(GgufError);
    expect(() => readGguf(fx.notModel)).toThrow(/not a GGUF file: bad magic "This"/);
    expect(() => parseGguf(Buffer.from("GG"))).toThrow(/not a GGUF file/);
    expect(() => readGguf(path.join(tmp, "does-not-exist.gguf"))).toThrow(/cannot open/);
  });

  it("rejects a model truncated inside its tensor data, naming the tensor", () => {
    expect(() => readGguf(fx.corrupt)).toThrow(GgufError);
    expect(() => readGguf(fx.corrupt)).toThrow(/truncated GGUF: tensor "[^"]+" data ends at byte \d+ but the file has only \d+ bytes/);
    // The header is intact: it can still be inspected on request.
    const f = readGguf(fx.corrupt, { checkTensorData: false });
    expect(f.architecture).toBe("llama");
    const last = f.tensors.at(-1)!;
    expect(() => readTensorData(f, last)).toThrow(/beyond the end of the file/);
  });

  it("rejects a truncated header at every kind of cut", () => {
    const whole = fs.readFileSync(path.join(tmp, "all-types.gguf"));
    const full = parseGguf(whole);
    // Cuts inside: version, counts, a key, a value, a nested array, tensor infos.
    for (const cut of [5, 12, 30, 60, 200, 400, full.dataOffset - 10]) {
      expect(() => parseGguf(whole.subarray(0, cut)), `cut at ${cut}`).toThrow(/truncated GGUF|corrupt GGUF/);
    }
  });

  it("rejects unsupported versions and garbage lengths", () => {
    const whole = Buffer.from(fs.readFileSync(path.join(tmp, "all-types.gguf")));
    const v1 = Buffer.from(whole);
    v1.writeUInt32LE(1, 4);
    expect(() => parseGguf(v1)).toThrow(/version 1 is not supported/);
    const bigEndian = Buffer.from(whole);
    bigEndian.writeUInt32BE(3, 4);
    expect(() => parseGguf(bigEndian)).toThrow(/big-endian/);
    const hugeCount = Buffer.from(whole);
    hugeCount.writeBigUInt64LE(1n << 60n, 16); // metadata count
    expect(() => parseGguf(hugeCount)).toThrow(/corrupt GGUF: metadata count/);
    const badType = Buffer.from(whole);
    // First KV: key "general.architecture" (8 + 20 bytes) after the 24-byte preamble -> type at 52.
    badType.writeUInt32LE(99, 24 + 8 + "general.architecture".length);
    expect(() => parseGguf(badType)).toThrow(/unknown metadata type 99/);
  });

  it("refuses to write a tensor with the wrong amount of data", async () => {
    const p = path.join(tmp, "bad.gguf");
    await expect(
      writeGguf(p, { kvs: [], tensors: [{ name: "x", shape: [4], type: GgmlType.F32, data: Buffer.alloc(15) }] }),
    ).rejects.toThrow(/got 15 bytes of data, expected 16/);
    await expect(
      writeGguf(p, { kvs: [], tensors: [{ name: "x", shape: [4], type: GgmlType.F32, data: () => [Buffer.alloc(10), Buffer.alloc(10)] }] }),
    ).rejects.toThrow(/got more than 16 bytes of data, expected 16/);
  });
});

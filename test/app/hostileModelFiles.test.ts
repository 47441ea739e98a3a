/**
 * Issue 16, class 3: model files the preflight did not bound. Every hostile file of hostileModels.ts
 * (split models with a bad part, a 300M-entry array in a sparse file, arrays nested 200,000 deep, …) is
 * refused with its clear message and quickly; a valid split model passes and llama.cpp loads it. Then
 * property-based tests over random headers, within and past the reader's bounds.
 */
import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ensureFixtures } from "../../models/fixtures.js";
import { GGUF_LIMITS, GgufError, GgufType, parseGguf, readGguf, writeGguf, type GgufKv, type GgufValue } from "../../inference/gguf.js";
import { getTandemLlama } from "../../inference/llama.js";
import { hashVocabulary, loadModelFile, vocabularyTokens } from "../../inference/modelFile.js";
import { ModelFileError, preflightModelFile } from "../../inference/modelPreflight.js";
import { hostileModels, writeSplitModel } from "./hostileModels.js";
import { errorMessage } from "../../shared/errors.js";

const tmp = () => mkdtempSync(path.join(tmpdir(), "tandem-hostile-gguf-"));

describe("hostile model files (issue 16, class 3)", () => {
  it("every hostile file is refused by the preflight with its message, in under 2 s each", async () => {
    for (const m of await hostileModels()) {
      const t0 = performance.now();
      const err = await preflightModelFile(m.file).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, m.what).toBeInstanceOf(ModelFileError);
      expect(errorMessage(err), m.what).toMatch(m.error);
      expect(performance.now() - t0, m.what).toBeLessThan(2000);
    }
  });

  it("a valid split model passes the preflight and llama.cpp loads it with the same vocabulary", async () => {
    const f = await ensureFixtures();
    const parts = await writeSplitModel(f.randGpt2, path.join(tmp(), "rand-gpt2"), 3);
    const whole = await preflightModelFile(f.randGpt2);
    const split = await preflightModelFile(parts[0]);
    expect(split.modelBytes).toBe(whole.modelBytes);
    const llama = await getTandemLlama();
    const a = await loadModelFile(llama, parts[0]);
    const b = await loadModelFile(llama, f.randGpt2);
    try {
      expect(hashVocabulary(vocabularyTokens(a.model))).toBe(hashVocabulary(vocabularyTokens(b.model)));
      expect(a.model.tokenize("Hello world")).toEqual(b.model.tokenize("Hello world"));
    } finally {
      await a.model.dispose();
      await b.model.dispose();
    }
  });
});

// ------------------------------------------------------------------------------------------------
// Property-based: random headers

/** Metadata values of every type, arrays nested up to `depth`. */
function valueOf(type: GgufType, depth: number): fc.Arbitrary<{ type: GgufType; value: GgufValue }> {
  const scalar: Partial<Record<GgufType, fc.Arbitrary<GgufValue>>> = {
    [GgufType.UINT8]: fc.integer({ min: 0, max: 255 }),
    [GgufType.INT32]: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    [GgufType.UINT64]: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    [GgufType.FLOAT64]: fc.double({ noNaN: true }),
    [GgufType.BOOL]: fc.boolean(),
    [GgufType.STRING]: fc.string({ maxLength: 40 }),
  };
  if (type !== GgufType.ARRAY) return scalar[type]!.map((value) => ({ type, value }));
  const itemTypes = depth > 1 ? [...Object.keys(scalar).map(Number), GgufType.ARRAY] : Object.keys(scalar).map(Number);
  return fc
    .constantFrom(...itemTypes)
    .chain((itemType) =>
      fc
        .array(valueOf(itemType, depth - 1), { maxLength: 6 })
        .map((items) => ({ type, value: { itemType, items: items.map((i) => i.value) } })),
    );
}

const kvsArb = fc
  .uniqueArray(
    fc.tuple(
      fc.string({ minLength: 1, maxLength: 20 }),
      fc.constantFrom(GgufType.UINT8, GgufType.INT32, GgufType.UINT64, GgufType.FLOAT64, GgufType.BOOL, GgufType.STRING, GgufType.ARRAY),
    ),
    { selector: ([k]) => k, maxLength: 8 },
  )
  .chain((keys) => fc.tuple(...keys.map(([key, type]) => valueOf(type, 4).map(({ value }) => ({ key, type, value }) as GgufKv))));

async function encode(kvs: GgufKv[]): Promise<Buffer> {
  const file = path.join(dir, "h.gguf");
  await writeGguf(file, { kvs, tensors: [] });
  return readFileSync(file);
}
const dir = tmp();

describe("GGUF reader, property-based (issue 16, class 3)", () => {
  it("headers within the bounds read back exactly, with arrays kept or skipped", async () => {
    await fc.assert(
      fc.asyncProperty(kvsArb, async (kvs) => {
        const buf = await encode(kvs);
        expect(parseGguf(buf).kvs).toEqual(kvs);
        expect(parseGguf(buf, { skipArrays: true }).kvs).toEqual(kvs.filter((k) => k.type !== GgufType.ARRAY));
      }),
      { numRuns: 150, seed: 1601 },
    );
  });

  it("any cut, any overwritten u64 and any nesting depth past the bound: a GgufError, never another error", async () => {
    await fc.assert(
      fc.asyncProperty(kvsArb, fc.nat(), fc.nat(), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), async (kvs, cutAt, at, big) => {
        const buf = await encode(kvs);
        const hostile = [buf.subarray(0, cutAt % buf.length), Buffer.from(buf)];
        if (buf.length >= 8) hostile[1].writeBigUInt64LE(big, at % (buf.length - 7));
        for (const b of hostile) {
          for (const skipArrays of [false, true]) {
            try {
              parseGguf(b, { skipArrays });
            } catch (err) {
              expect(err, String(err)).toBeInstanceOf(GgufError);
            }
          }
        }
      }),
      { numRuns: 300, seed: 1602 },
    );
    await fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), (depth) => {
        const head = Buffer.alloc(24);
        head.writeUInt32LE(0x46554747, 0);
        head.writeUInt32LE(3, 4);
        head.writeBigUInt64LE(0n, 8);
        head.writeBigUInt64LE(1n, 16);
        const key = Buffer.alloc(9);
        key.writeBigUInt64LE(1n, 0);
        key.write("k", 8);
        const level = Buffer.alloc(12);
        level.writeUInt32LE(GgufType.ARRAY, 0);
        level.writeBigUInt64LE(1n, 4);
        const innermost = Buffer.alloc(12); // an empty uint8 array
        const type = Buffer.alloc(4);
        type.writeUInt32LE(GgufType.ARRAY, 0);
        const buf = Buffer.concat([head, key, type, Buffer.alloc(12 * (depth - 1), level), innermost]);
        const run = () => parseGguf(buf);
        if (depth <= GGUF_LIMITS.maxArrayDepth) expect(run).not.toThrow();
        else expect(run).toThrow(/arrays nested more than 8 deep/);
      }),
      { numRuns: 200, seed: 1603 },
    );
  });

  it("an array past the length bound is refused before it is allocated, kept or skipped", () => {
    for (const n of [GGUF_LIMITS.maxArrayLength + 1, 300_000_000]) {
      const file = path.join(dir, `len-${n}.gguf`);
      const head = Buffer.alloc(24 + 9 + 4 + 12);
      head.writeUInt32LE(0x46554747, 0);
      head.writeUInt32LE(3, 4);
      head.writeBigUInt64LE(0n, 8);
      head.writeBigUInt64LE(1n, 16);
      head.writeBigUInt64LE(1n, 24);
      head.write("k", 32);
      head.writeUInt32LE(GgufType.ARRAY, 33);
      head.writeUInt32LE(GgufType.UINT8, 37);
      head.writeBigUInt64LE(BigInt(n), 41);
      writeFileSync(file, head);
      truncateSync(file, head.length + n); // sparse: the entries are all there, as zeros
      for (const skipArrays of [false, true]) {
        expect(() => readGguf(file, { skipArrays })).toThrow(
          new RegExp(`an array of ${n} entries \\(the limit is ${GGUF_LIMITS.maxArrayLength}\\)`),
        );
      }
    }
  });
});

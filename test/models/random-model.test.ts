/**
 * makeRandomModel beyond the default fixtures: every weight type loads in llama.cpp, Q8_0 and F16
 * encode the same network as F32 (same seed -> mostly the same greedy tokens), tied embeddings
 * load, and seeds make files reproducible. Small GPT-2-vocabulary models keep this fast.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureFixtures, type Fixtures } from "../../models/fixtures.js";
import { GgmlType, readGguf } from "../../inference/gguf.js";
import { makeRandomModel, type RandomModelOptions, randomModelParameters } from "../../models/random-model.js";
import { smokeTestModel } from "../../models/smoke.js";

let fx: Fixtures;
let tmp: string;
beforeAll(async () => {
  fx = await ensureFixtures();
  tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), "tandem-random-model-"));
});
afterAll(async () => {
  if (tmp) await fs.promises.rm(tmp, { recursive: true, force: true });
});

const base = (): Omit<RandomModelOptions, "type" | "name"> => ({
  vocabFile: fx.vocab.gpt2,
  arch: "qwen2",
  nEmbd: 64,
  nLayer: 2,
  nHead: 4,
  nHeadKv: 2,
  nFf: 128,
  contextLength: 512,
  seed: 42,
});

describe("makeRandomModel", () => {
  it("F32, F16 and Q8_0 of one seed load and agree on most greedy tokens", async () => {
    const runs: Record<string, number[]> = {};
    for (const type of ["f32", "f16", "q8_0"] as const) {
      const out = path.join(tmp, `m-${type}.gguf`);
      const res = await makeRandomModel({ ...base(), type, name: `t-${type}`, out });
      const f = readGguf(out);
      expect(f.tensor("blk.0.attn_q.weight")!.type).toBe({ f32: GgmlType.F32, f16: GgmlType.F16, q8_0: GgmlType.Q8_0 }[type]);
      expect(f.tensor("blk.0.attn_q.bias")!.type).toBe(GgmlType.F32); // 1-D tensors stay f32
      expect(f.getNumber("general.file_type")).toBe({ f32: 0, f16: 1, q8_0: 7 }[type]);
      expect(res.parameters).toBe(randomModelParameters({ ...base(), nVocab: 50257 }));
      runs[type] = (await smokeTestModel(out, { steps: 16 })).tokens;
    }
    const agree = (a: number[], b: number[]) => a.filter((t, i) => b[i] === t).length / a.length;
    // Greedy paths diverge after the first differing token, so compare prefixes loosely.
    expect(runs.f16![0]).toBe(runs.f32![0]);
    expect(runs.q8_0![0]).toBe(runs.f32![0]);
    expect(agree(runs.f16!, runs.f32!)).toBeGreaterThan(0.5);
    expect(agree(runs.q8_0!, runs.f32!)).toBeGreaterThan(0.25);
  });

  it("loads with tied embeddings (no output.weight) and as the llama architecture", async () => {
    const tied = path.join(tmp, "tied.gguf");
    await makeRandomModel({ ...base(), type: "f16", name: "tied", tieEmbeddings: true, out: tied });
    expect(readGguf(tied).tensor("output.weight")).toBeUndefined();
    expect((await smokeTestModel(tied, { steps: 4 })).tokens.length).toBeGreaterThan(0);

    const llama = path.join(tmp, "llama.gguf");
    await makeRandomModel({ ...base(), arch: "llama", type: "q8_0", name: "llama", out: llama });
    expect(readGguf(llama).architecture).toBe("llama");
    expect((await smokeTestModel(llama, { steps: 4 })).tokens.length).toBe(4);
  });

  it("is deterministic for a seed and differs across seeds", async () => {
    const hash = (p: string) => createHash("sha256").update(fs.readFileSync(p)).digest("hex");
    const a1 = path.join(tmp, "a1.gguf");
    const a2 = path.join(tmp, "a2.gguf");
    const b = path.join(tmp, "b.gguf");
    await makeRandomModel({ ...base(), type: "q8_0", name: "x", out: a1 });
    await makeRandomModel({ ...base(), type: "q8_0", name: "x", out: a2 });
    await makeRandomModel({ ...base(), seed: 43, type: "q8_0", name: "x", out: b });
    expect(hash(a1)).toBe(hash(a2));
    expect(hash(a1)).not.toBe(hash(b));
  });

  it("rejects impossible shapes", async () => {
    await expect(makeRandomModel({ ...base(), nHead: 5, type: "f32", name: "x", out: path.join(tmp, "bad.gguf") })).rejects.toThrow(
      /multiple of nHead/,
    );
    await expect(makeRandomModel({ ...base(), nHeadKv: 3, type: "f32", name: "x", out: path.join(tmp, "bad.gguf") })).rejects.toThrow(
      /multiple of nHeadKv/,
    );
  });
});

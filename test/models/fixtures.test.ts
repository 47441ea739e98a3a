/**
 * The generated fixtures, checked with the real runtime (node-llama-cpp, CPU, one thread):
 * the stories pair (needs ../shared), the random-vocabulary models, the mismatched vocabulary,
 * the broken files, and ensureFixtures' own guarantees (idempotent, atomic, shared-dir missing).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureFixtures, type Fixtures, RANDOM_FIXTURE_SPECS, STORIES_DROPPED_BLOCK, storiesSourcePath } from "../../models/fixtures.js";
import { GgufType, readGguf, readTensorData } from "../../inference/gguf.js";
import { getCpuLlama, smokeTestModel } from "../../models/smoke.js";

const storiesAvailable = fs.existsSync(storiesSourcePath());
const missingNote = `skipped: ${storiesSourcePath()} not found (../shared/models/stories260K.gguf)`;
if (!storiesAvailable) console.warn(`[test/models] stories fixtures ${missingNote}`);

let fx: Fixtures;
beforeAll(async () => {
  fx = await ensureFixtures();
});

/** Hash of the token strings: the check Tandem uses to refuse pairing different vocabularies. */
function vocabHash(p: string): string {
  const tokens = readGguf(p).get("tokenizer.ggml.tokens");
  if (!tokens || typeof tokens !== "object") throw new Error("no tokens");
  return createHash("sha256").update(tokens.items.join("\u0000")).digest("hex");
}

/** Greedy tokens of `model` after `prompt`, and, teacher-forced on them, `other`'s greedy choices. */
async function greedyAndForced(model: LlamaModel, other: LlamaModel, prompt: string, n: number) {
  const gen = async (m: LlamaModel, input: Token[], steps: number) => {
    const ctx = await m.createContext({ contextSize: 256, threads: 1 });
    try {
      const seq = ctx.getSequence();
      const out: Token[] = [];
      let next = input;
      for (let i = 0; i < steps; i++) {
        const r = await seq.controlledEvaluate(
          next.map((t, j) => (j === next.length - 1 ? [t, { generateNext: { token: true, options: { temperature: 0 } } }] : t)),
        );
        const tok = r[next.length - 1]!.next.token!;
        out.push(tok);
        next = [tok];
      }
      return out;
    } finally {
      await ctx.dispose();
    }
  };
  const promptTokens = model.tokenize(prompt, true);
  const tokens = await gen(model, promptTokens, n);
  // Teacher forcing: one batch, a next-token choice at every position of prompt + tokens.
  const ctx = await other.createContext({ contextSize: 256, threads: 1 });
  try {
    const all = [...promptTokens, ...tokens];
    const r = await ctx
      .getSequence()
      .controlledEvaluate(
        all.map((t, j) =>
          j >= promptTokens.length - 1 && j < all.length - 1 ? [t, { generateNext: { token: true, options: { temperature: 0 } } }] : t,
        ),
      );
    const forced = tokens.map((_, k) => r[promptTokens.length - 1 + k]!.next.token!);
    return { tokens, forced };
  } finally {
    await ctx.dispose();
  }
}

describe(storiesAvailable ? "stories260K pair" : `stories260K pair (${missingNote})`, () => {
  it.skipIf(!storiesAvailable)("the SLM has one block fewer, renumbered, with block_count keeping its type", () => {
    const llm = readGguf(fx.storiesLlm!);
    const slm = readGguf(fx.storiesSlm!);
    const llmCount = llm.getKv("llama.block_count")!;
    const slmCount = slm.getKv("llama.block_count")!;
    expect(llmCount.value).toBe(5);
    expect(slmCount.value).toBe(4);
    expect(slmCount.type).toBe(llmCount.type);
    expect(slm.getString("general.name")).toBe(`stories260K-slm (block ${STORIES_DROPPED_BLOCK} removed)`);
    const perBlock = llm.tensors.filter((t) => t.name.startsWith("blk.0.")).length;
    expect(slm.tensors.length).toBe(llm.tensors.length - perBlock);
    expect(slm.tensors.some((t) => t.name.startsWith("blk.4."))).toBe(false);
    // New block 2 is old block 3; blocks before the removed one are untouched.
    const same = (a: string, b: string) => readTensorData(slm, a).equals(readTensorData(llm, b));
    expect(same("blk.2.attn_q.weight", "blk.3.attn_q.weight")).toBe(true);
    expect(same("blk.3.ffn_down.weight", "blk.4.ffn_down.weight")).toBe(true);
    expect(same("blk.1.attn_k.weight", "blk.1.attn_k.weight")).toBe(true);
    expect(same("token_embd.weight", "token_embd.weight")).toBe(true);
    // Same vocabulary: a valid routing pair.
    expect(vocabHash(fx.storiesSlm!)).toBe(vocabHash(fx.storiesLlm!));
  });

  it.skipIf(!storiesAvailable)("both load; the SLM differs from the LLM at some positions but still writes English", async () => {
    const llama = await getCpuLlama();
    const llm = await llama.loadModel({ modelPath: fx.storiesLlm! });
    const slm = await llama.loadModel({ modelPath: fx.storiesSlm! });
    try {
      let agree = 0;
      let total = 0;
      for (const prompt of ["Once upon a time", "Tom and Lily went to the park.", "The little dog"]) {
        const { tokens, forced } = await greedyAndForced(llm, slm, prompt, 40);
        tokens.forEach((t, k) => {
          total++;
          if (forced[k] === t) agree++;
        });
      }
      // README measurement for block 2 removed: ~40% greedy disagreement.
      const disagreement = 1 - agree / total;
      expect(disagreement).toBeGreaterThan(0.1);
      expect(disagreement).toBeLessThan(0.7);

      const slmRun = await smokeTestModel(fx.storiesSlm!, { prompt: "Once upon a time", steps: 40 });
      const llmRun = await smokeTestModel(fx.storiesLlm!, { prompt: "Once upon a time", steps: 40 });
      expect(llmRun.text).toMatch(/^, there was a little/);
      expect(slmRun.tokens).not.toEqual(llmRun.tokens);
      // "Mostly English": nearly all words are plain letters, and common words appear.
      const words = slmRun.text.split(/\s+/).filter(Boolean);
      const plain = words.filter((w) => /^[A-Za-z']+[.,!?"]*$/.test(w));
      expect(plain.length / words.length).toBeGreaterThan(0.8);
      expect(slmRun.text).toMatch(/\b(the|a|was|and|to)\b/);
    } finally {
      await slm.dispose();
      await llm.dispose();
    }
  });
});

describe("random models with a real vocabulary", () => {
  it("randA and randB load, use the Qwen2 vocabulary and chat template, and produce varied tokens", async () => {
    const vocabTemplate = readGguf(fx.vocab.qwen2).getString("tokenizer.chat_template");
    for (const p of [fx.randA, fx.randB]) {
      const r = await smokeTestModel(p, { prompt: "Hello, how are you?", steps: 24 });
      expect(r.vocabSize).toBe(151936);
      expect(r.roundTrips).toBe(true);
      expect(r.chatTemplate).toBe(vocabTemplate);
      // node-llama-cpp recognises the template as ChatML (see the report on BOS handling).
      expect(r.chatWrapper).toBe("ChatML");
      expect(r.tokens.length).toBe(24);
      expect(new Set(r.tokens).size).toBeGreaterThan(12); // not degenerate
      // A confidence router needs a spread of top-1 probabilities.
      expect(Math.max(...r.confidences) - Math.min(...r.confidences)).toBeGreaterThan(0.15);
      expect(Math.min(...r.confidences)).toBeLessThan(0.5);
    }
    expect(vocabHash(fx.randA)).toBe(vocabHash(fx.randB));
    expect(readGguf(fx.randB).getNumber("qwen2.block_count")).toBeGreaterThan(readGguf(fx.randA).getNumber("qwen2.block_count")!);
  });

  it("randA and randB share embeddings, so they agree on part of their greedy tokens", async () => {
    const llama = await getCpuLlama();
    const a = await llama.loadModel({ modelPath: fx.randA });
    const b = await llama.loadModel({ modelPath: fx.randB });
    try {
      let agree = 0;
      let total = 0;
      for (const prompt of ["Once upon a time", "def main():"]) {
        const { tokens, forced } = await greedyAndForced(a, b, prompt, 20);
        tokens.forEach((t, k) => {
          total++;
          if (forced[k] === t) agree++;
        });
      }
      expect(agree / total).toBeGreaterThan(0.2);
      expect(agree / total).toBeLessThan(0.95);
    } finally {
      await b.dispose();
      await a.dispose();
    }
  });

  it("randGpt2 loads, and its vocabulary really differs from randA's", async () => {
    const r = await smokeTestModel(fx.randGpt2, { steps: 8 });
    expect(r.vocabSize).toBe(50257);
    expect(new Set(r.tokens).size).toBeGreaterThan(4);
    expect(vocabHash(fx.randGpt2)).not.toBe(vocabHash(fx.randA));
    const gpt2 = readGguf(fx.randGpt2);
    expect(gpt2.getString("tokenizer.ggml.pre")).toBe("gpt-2");
    expect(readGguf(fx.randA).getString("tokenizer.ggml.pre")).toBe("qwen2");
    // The same text tokenises differently: routing between them would be meaningless.
    const llama = await getCpuLlama();
    const m1 = await llama.loadModel({ modelPath: fx.randGpt2 });
    const m2 = await llama.loadModel({ modelPath: fx.randA });
    try {
      expect(m1.tokenize("Hello world, 你好")).not.toEqual(m2.tokenize("Hello world, 你好"));
    } finally {
      await m1.dispose();
      await m2.dispose();
    }
  });

  it("carry the tensors llama.cpp needs (qwen2: q/k/v biases, explicit output head)", () => {
    const a = readGguf(fx.randA);
    const names = new Set(a.tensors.map((t) => t.name));
    for (const n of [
      "token_embd.weight",
      "output_norm.weight",
      "output.weight",
      "blk.0.attn_q.bias",
      "blk.1.attn_v.bias",
      "blk.1.ffn_down.weight",
    ]) {
      expect(names.has(n), n).toBe(true);
    }
    expect(a.tensor("output.weight")!.shape).toEqual([64, 151936]);
    const g = readGguf(fx.randGpt2);
    expect(g.tensors.some((t) => t.name.endsWith(".bias"))).toBe(false); // llama arch: no biases
    expect(a.getKv("qwen2.block_count")!.type).toBe(GgufType.UINT32);
    expect(a.getNumber("qwen2.block_count")).toBe(RANDOM_FIXTURE_SPECS.randA.nLayer);
  });
});

describe("broken files", () => {
  it("node-llama-cpp refuses the truncated model and the text file with an error, not a crash", async () => {
    const llama = await getCpuLlama();
    await expect(llama.loadModel({ modelPath: fx.corrupt })).rejects.toThrow();
    await expect(llama.loadModel({ modelPath: fx.notModel })).rejects.toThrow();
    // The runtime survives: a good model still loads afterwards.
    const r = await smokeTestModel(fx.randGpt2, { steps: 2 });
    expect(r.tokens.length).toBe(2);
  });
});

describe("ensureFixtures", () => {
  let dir: string;
  afterAll(async () => {
    if (dir) await fs.promises.rm(dir, { recursive: true, force: true });
  });

  it("is idempotent, leaves no temp files, and reports a missing shared dir instead of throwing", async () => {
    dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), "tandem-fixtures-test-"));
    const noShared = path.join(dir, "no-shared-here");
    const first = await ensureFixtures({ dir, sharedDir: noShared });
    expect(first.storiesLlm).toBeNull();
    expect(first.storiesSlm).toBeNull();
    expect(first.sharedMissingReason).toContain(path.join(noShared, "models", "stories260K.gguf"));
    expect(first.made.map((m) => m.name)).toEqual(
      expect.arrayContaining(["rand-qwen2-a.gguf", "rand-qwen2-b.gguf", "rand-gpt2.gguf", "corrupt.gguf", "not-a-model.gguf"]),
    );
    // Deterministic: same bytes as the fixtures made elsewhere.
    const hash = (p: string) => createHash("sha256").update(fs.readFileSync(p)).digest("hex");
    expect(hash(first.randB)).toBe(hash(fx.randB));

    const second = await ensureFixtures({ dir, sharedDir: noShared });
    expect(second.made).toEqual([]);
    expect(fs.readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);

    // A deleted fixture is remade, and only that one.
    fs.rmSync(first.randGpt2);
    const third = await ensureFixtures({ dir, sharedDir: noShared });
    expect(third.made.map((m) => m.name)).toEqual(["rand-gpt2.gguf"]);

    // Concurrent callers (parallel test workers) don't both generate or corrupt a file.
    fs.rmSync(first.randA);
    const [x, y] = await Promise.all([ensureFixtures({ dir, sharedDir: noShared }), ensureFixtures({ dir, sharedDir: noShared })]);
    expect([...x.made, ...y.made].map((m) => m.name)).toEqual(["rand-qwen2-a.gguf"]);
    expect(hash(first.randA)).toBe(hash(fx.randA));
  });
});

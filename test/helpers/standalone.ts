/**
 * Reference decodings that do not go through Tandem's engine: node-llama-cpp's own greedy generation
 * and teacher-forced greedy predictions, each on a fresh context of its own.
 */
import type { LlamaModel, Token } from "node-llama-cpp";
import { getTandemLlama } from "../../inference/llama.js";

async function withModel<T>(file: string, fn: (model: LlamaModel) => Promise<T>): Promise<T> {
  const llama = await getTandemLlama();
  const model = await llama.loadModel({ modelPath: file });
  try {
    return await fn(model);
  } finally {
    await model.dispose();
  }
}

/** node-llama-cpp's own greedy decoding (sequence.evaluate at temperature 0), stopping at EOG. */
export async function standaloneGreedy(file: string, prompt: readonly number[], maxTokens: number): Promise<number[]> {
  return withModel(file, async (model) => {
    const ctx = await model.createContext({ contextSize: 1024, threads: 1 });
    const out: number[] = [];
    for await (const t of ctx.getSequence().evaluate(prompt as Token[], { temperature: 0 })) {
      if (model.isEogToken(t) || out.length >= maxTokens) break;
      out.push(t);
    }
    await ctx.dispose();
    return out;
  });
}

/**
 * For each i in [from, tokens.length], the model's greedy token after tokens[0..i) — one batch,
 * teacher-forced (docs/FACTS.md: per-position argmax in one batch matches one-at-a-time evaluation).
 */
export async function teacherForcedGreedy(file: string, tokens: readonly number[], from: number): Promise<number[]> {
  return withModel(file, async (model) => {
    const ctx = await model.createContext({ contextSize: 1024, threads: 1 });
    const items = tokens.map((t, i) =>
      i >= from - 1 ? ([t as Token, { generateNext: { token: true, options: { temperature: 0 } } }] as [Token, object]) : (t as Token),
    );
    const out = await ctx.getSequence().controlledEvaluate(items as never);
    await ctx.dispose();
    const preds: number[] = [];
    for (let i = from - 1; i < tokens.length; i++) preds.push(out[i]!.next.token!);
    return preds;
  });
}

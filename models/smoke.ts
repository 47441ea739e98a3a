/**
 * Smoke test of a GGUF with node-llama-cpp: load it, tokenise a prompt, take a few greedy steps.
 *
 * Why a shared helper: every generated fixture must be proven loadable by the real runtime (a
 * file our reader likes but llama.cpp rejects is worthless), and the CLI (--verify) and the tests
 * both need the same check. Runs on CPU with one thread: on 2-core machines tiny models are about
 * 100x slower with more threads (see shared/FACTS.md).
 */
import type { Llama, Token } from "node-llama-cpp";

let llamaPromise: Promise<Llama> | undefined;

/** One CPU-only Llama instance per process (getLlama is ~0.4 s; loading several is wasteful). */
export async function getCpuLlama(): Promise<Llama> {
  if (!llamaPromise) {
    llamaPromise = (async () => {
      const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
      return getLlama({ gpu: false, build: "never", maxThreads: 1, logLevel: LlamaLogLevel.error });
    })();
  }
  return llamaPromise;
}

export interface SmokeResult {
  promptTokens: Token[];
  /** Greedy continuation (temperature 0), at most `steps` tokens (stops early at end-of-generation). */
  tokens: Token[];
  text: string;
  /** Probability of each chosen token. */
  confidences: number[];
  /** Tokens in the model's vocabulary (tokenizer.ggml.tokens length). */
  vocabSize: number;
  /** The jinja chat template in the file, if any. */
  chatTemplate: string | undefined;
  /** Name of the chat wrapper node-llama-cpp's resolveChatWrapper picks for this model. */
  chatWrapper: string;
  /** Detokenise(tokenise(prompt)) === prompt. */
  roundTrips: boolean;
  trainContextSize: number;
  loadMs: number;
  msPerToken: number;
}

export async function smokeTestModel(
  modelPath: string,
  opts: { prompt?: string; steps?: number; contextSize?: number } = {},
): Promise<SmokeResult> {
  const { resolveChatWrapper } = await import("node-llama-cpp");
  const llama = await getCpuLlama();
  const prompt = opts.prompt ?? "Once upon a time";
  const steps = opts.steps ?? 16;
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath });
  const loadMs = performance.now() - t0;
  try {
    const context = await model.createContext({ contextSize: opts.contextSize ?? 256, threads: 1 });
    try {
      const sequence = context.getSequence();
      const promptTokens = model.tokenize(prompt, true);
      const roundTrips = model.detokenize(model.tokenize(prompt, false)) === prompt;
      const tokens: Token[] = [];
      const confidences: number[] = [];
      let input: Token[] = promptTokens;
      const t1 = performance.now();
      for (let i = 0; i < steps; i++) {
        const items = input.map((t, j): Parameters<typeof sequence.controlledEvaluate>[0][number] =>
          j === input.length - 1 ? [t, { generateNext: { token: true, confidence: true, options: { temperature: 0 } } }] : t,
        );
        const out = await sequence.controlledEvaluate(items);
        const next = out[input.length - 1]?.next;
        if (next?.token == null) break;
        tokens.push(next.token);
        confidences.push(next.confidence ?? NaN);
        if (model.isEogToken(next.token)) break;
        input = [next.token];
      }
      const msPerToken = (performance.now() - t1) / Math.max(1, tokens.length);
      const info = model.fileInfo;
      const tokenizer = (info.metadata as unknown as { tokenizer?: { ggml?: { tokens?: readonly unknown[] }; chat_template?: string } })
        .tokenizer;
      const wrapper = resolveChatWrapper(model);
      return {
        promptTokens,
        tokens,
        text: model.detokenize(tokens),
        confidences,
        vocabSize: tokenizer?.ggml?.tokens?.length ?? 0,
        chatTemplate: tokenizer?.chat_template,
        chatWrapper: wrapper?.wrapperName ?? "none",
        roundTrips,
        trainContextSize: model.trainContextSize,
        loadMs,
        msPerToken,
      };
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

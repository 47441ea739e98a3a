/**
 * Loopback servers that implement exactly the documented request and response shapes of llama.cpp's
 * server, vLLM and SGLang (see the adapters' headers), backed by a real node-llama-cpp model: the
 * token they return is the model's real greedy token. A per-conversation prefix cache (one KV-cached
 * sequence, longest common prefix reused) stands in for the engines' prefix caches, so the evaluated
 * counts they report are real too. /tokenize and /detokenize answer in each engine's shape (llama.cpp
 * server; vLLM's tokenizer API; SGLang's native API) with the backend's tokenizer, or with a
 * different one to stand in for an engine serving another vocabulary.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { getTandemLlama } from "../../inference/llama.js";
import { modelIdentity } from "../../inference/modelFile.js";

export type EngineKind = "llama.cpp" | "vllm" | "sglang";
export type EngineFault = "none" | "garbage" | "missing" | "outOfVocab" | "status500" | "slow" | "disagree";

export interface Prediction {
  token: number;
  logprob: number;
  top: Array<{ id: number; logprob: number }>;
  promptTokens: number;
  cached: number;
}

/** A real model with one KV-cached sequence; predictions are serialised. */
export class RealBackend {
  private queue: Promise<unknown> = Promise.resolve();
  private constructor(
    readonly model: LlamaModel,
    private readonly ctx: LlamaContext,
    private readonly seq: LlamaContextSequence,
  ) {}

  static async load(file: string): Promise<RealBackend> {
    const llama = await getTandemLlama();
    const model = await llama.loadModel({ modelPath: file });
    const ctx = await model.createContext({ contextSize: 1024, threads: 1 });
    return new RealBackend(model, ctx, ctx.getSequence());
  }

  get vocabSize(): number {
    return modelIdentity(this.model).vocabSize;
  }

  predict(ids: readonly number[], k: number): Promise<Prediction> {
    const run = this.queue.then(() => this.predictNow(ids, k));
    this.queue = run.catch(() => {});
    return run;
  }

  private async predictNow(ids: readonly number[], k: number): Promise<Prediction> {
    const held = this.seq.contextTokens.length;
    const keep = Math.min(this.seq.compareContextTokens(ids as Token[]).firstDifferentIndex, ids.length - 1);
    if (keep < held) await this.seq.eraseContextTokenRanges([{ start: keep, end: held }]);
    const rest = ids.slice(keep);
    const items = rest.map((t, i) =>
      i === rest.length - 1 ? ([t as Token, { generateNext: { token: true, probabilities: true, options: { temperature: 0 } } }] as const) : (t as Token),
    );
    const out = await this.seq.controlledEvaluate(items as never);
    const next = (out[rest.length - 1] as { next: { token: number; probabilities: Map<number, number> } }).next;
    const sorted = [...next.probabilities.entries()].sort((a, b) => b[1] - a[1]);
    const p = next.probabilities.get(next.token) ?? sorted[0][1];
    return {
      token: next.token,
      logprob: Math.log(p),
      top: sorted.slice(0, k).map(([id, q]) => ({ id, logprob: Math.log(q) })),
      promptTokens: ids.length,
      cached: keep,
    };
  }

  async dispose(): Promise<void> {
    await this.ctx.dispose();
    await this.model.dispose();
  }
}

export interface FakeEngine {
  url: string;
  fault: EngineFault;
  /** request bodies received on the generation endpoint */
  requests: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

const MODEL_NAME = "stories-llm";
/** how long a "slow" fault waits before answering: longer than the tests' call deadline */
export const SLOW_REPLY_MS = 1600;

/** What a fake engine's /tokenize and /detokenize answer with. */
export interface FakeTokenizer {
  tokenize(text: string, special: boolean): number[];
  detokenize(ids: readonly number[]): string;
}

/** The backend model's own tokenizer: what an engine serving that model answers. */
export function modelTokenizer(model: LlamaModel): FakeTokenizer {
  const size = modelIdentity(model).vocabSize;
  return {
    tokenize: (text, special) => [...model.tokenize(text, special)],
    detokenize: (ids) => {
      // llama.cpp aborts the whole process on an out-of-range ID; llama-server answers an error
      const bad = ids.find((t) => !Number.isInteger(t) || t < 0 || t >= size);
      if (bad !== undefined) throw new Error(`token ID ${bad} is out of range [0, ${size})`);
      return model.detokenize(ids as Token[], true);
    },
  };
}

export interface FakeEngineOptions {
  /** llama.cpp: report n_vocab in /v1/models (default true); a number reports that size instead */
  reportVocab?: boolean | number;
  /** serve /tokenize and /detokenize (default true) */
  tokenize?: boolean;
  /** the tokenizer behind /tokenize and /detokenize (default: the backend model's) */
  tokenizer?: FakeTokenizer;
}

export async function startFakeEngine(kind: EngineKind, backend: RealBackend, opts: FakeEngineOptions = {}): Promise<FakeEngine> {
  const tok = opts.tokenizer ?? modelTokenizer(backend.model);
  const engine: FakeEngine = { url: "", fault: "none", requests: [], close: async () => {} };
  const send = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(typeof body === "string" ? body : JSON.stringify(body));
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      try {
        const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>) : {};
        const route = `${req.method} ${req.url}`;
        const genRoute = { "llama.cpp": "POST /completion", vllm: "POST /v1/completions", sglang: "POST /generate" }[kind];
        if (route === genRoute) {
          engine.requests.push(body);
          let clientGone = false;
          res.on("close", () => {
            if (!res.writableEnded) clientGone = true;
          });
          const f = engine.fault;
          if (f === "status500") return send(res, 500, { error: { message: "injected" } });
          if (f === "garbage") return send(res, 200, '{"choices": [');
          if (f === "slow") {
            await new Promise((r) => setTimeout(r, SLOW_REPLY_MS));
            // the client gave up: predicting now would move the shared sequence under a later request
            if (clientGone) return;
          }
          const ids = (kind === "sglang" ? body.input_ids : body.prompt) as number[];
          const k = Number(kind === "llama.cpp" ? body.n_probs : kind === "vllm" ? body.logprobs : body.top_logprobs_num) || 1;
          const p = await backend.predict(ids, k);
          if (f === "outOfVocab") p.token = backend.vocabSize + 7;
          const other = p.token === 0 ? 1 : 0;
          // n tokens asked for: the greedy continuation after the first, as the engines generate it
          const n = Number(kind === "llama.cpp" ? body.n_predict : kind === "vllm" ? body.max_tokens : (body.sampling_params as { max_new_tokens?: number })?.max_new_tokens) || 1;
          const more: Prediction[] = [];
          for (let i = 1; i < n && f !== "outOfVocab"; i++) {
            more.push(await backend.predict([...ids, p.token, ...more.map((m) => m.token)], k));
          }
          return send(res, 200, f === "missing" ? {} : format(kind, p, f === "disagree" ? other : p.token, more));
        }
        if (kind === "llama.cpp" && route === "GET /v1/models") {
          const nVocab = typeof opts.reportVocab === "number" ? opts.reportVocab : backend.vocabSize;
          return send(res, 200, { object: "list", data: [{ id: MODEL_NAME, object: "model", meta: opts.reportVocab === false ? {} : { vocab_type: 1, n_vocab: nVocab, n_ctx_train: 1024 } }] });
        }
        if (kind === "vllm" && route === "GET /v1/models") return send(res, 200, { object: "list", data: [{ id: MODEL_NAME, object: "model", max_model_len: 1024 }] });
        if (kind === "sglang" && route === "GET /get_model_info") return send(res, 200, { model_path: `/models/${MODEL_NAME}`, tokenizer_path: `/models/${MODEL_NAME}`, is_generation: true });
        if (route === "POST /tokenize" && opts.tokenize !== false) {
          // llama.cpp parses special-token text unless parse_special is false; HF-based engines always do
          const text = (kind === "llama.cpp" ? body.content : body.prompt) as string;
          const tokens = tok.tokenize(text, kind === "llama.cpp" ? body.parse_special !== false : true);
          if (kind === "llama.cpp") return send(res, 200, { tokens });
          return send(res, 200, { tokens, count: tokens.length, max_model_len: 1024 });
        }
        if (route === "POST /detokenize" && opts.tokenize !== false) {
          const text = tok.detokenize(body.tokens as number[]);
          return send(res, 200, kind === "llama.cpp" ? { content: text } : kind === "vllm" ? { prompt: text } : { text });
        }
        send(res, 404, { error: { message: `not found: ${route}` } });
      } catch (err) {
        send(res, 500, { error: { message: String(err) } });
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  engine.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  engine.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return engine;
}

function format(kind: EngineKind, p: Prediction, idsField: number, more: Prediction[] = []): unknown {
  const evaluated = p.promptTokens - p.cached;
  const all = [p, ...more];
  const n = all.length;
  switch (kind) {
    case "llama.cpp":
      return {
        content: "",
        tokens: [idsField, ...more.map((m) => m.token)],
        completion_probabilities: all.map((q) => ({ id: q.token, token: "", logprob: q.logprob, top_logprobs: q.top.map((c) => ({ id: c.id, token: "", logprob: c.logprob })) })),
        tokens_cached: p.cached,
        tokens_evaluated: p.promptTokens,
        stop_type: "limit",
        timings: { prompt_n: evaluated, predicted_n: n },
      };
    case "vllm":
      return {
        id: "cmpl-1",
        object: "text_completion",
        model: MODEL_NAME,
        choices: [
          {
            index: 0,
            text: "",
            token_ids: [idsField, ...more.map((m) => m.token)],
            logprobs: {
              tokens: all.map((q) => `token_id:${q.token}`),
              token_logprobs: all.map((q) => q.logprob),
              top_logprobs: all.map((q) => Object.fromEntries(q.top.map((c) => [`token_id:${c.id}`, c.logprob]))),
              text_offset: all.map(() => 0),
            },
            finish_reason: "length",
          },
        ],
        usage: { prompt_tokens: p.promptTokens, completion_tokens: n, total_tokens: p.promptTokens + n, prompt_tokens_details: { cached_tokens: p.cached } },
      };
    case "sglang":
      return {
        text: "",
        output_ids: [idsField, ...more.map((m) => m.token)],
        meta_info: {
          prompt_tokens: p.promptTokens,
          cached_tokens: p.cached,
          completion_tokens: n,
          output_token_logprobs: all.map((q) => [q.logprob, q.token, null]),
          output_top_logprobs: all.map((q) => q.top.map((c) => [c.logprob, c.id, null])),
          finish_reason: { type: "length", length: n },
        },
      };
  }
}

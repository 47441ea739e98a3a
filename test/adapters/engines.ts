/**
 * Loopback servers that implement the request and response shapes of llama.cpp's server, vLLM and
 * SGLang (see the adapters' headers), backed by a real node-llama-cpp model, and the engines' behaviour
 * where the token depends on it (read in the engines' source, docs/deploy-gpu.md "Versions checked"):
 * sampling defaults (a generation config's penalties) applied to every field a request leaves unset,
 * log-probabilities reported before any penalty, vLLM's block-granular prefix cache, `token_ids` only
 * with `return_token_ids`, its 20-logprob cap and `prompt_tokens_details` only when enabled, each
 * engine's context-length refusal, an API key checked on every endpoint, SGLang's `/model_info`.
 * Sampling as each engine does it (the adapters' headers): its chain in its order (llama.cpp's
 * `samplers` list; vLLM penalties → temperature → min-p → top-k → top-p; SGLang temperature, then
 * top-k, top-p, min-p), a draw from a generator seeded by the request's `seed` (SGLang: `sampling_seed`
 * only with --enable-deterministic-inference, keyed by the position too) or an unseeded one, and the
 * probabilities after the chain where asked (llama.cpp `post_sampling_probs`, vLLM
 * `--logprobs-mode processed_logprobs`).
 * With neutral sampling the token they return is the model's real greedy token. A per-conversation prefix cache (one KV-cached
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
import { Rng } from "../../shared/prng.js";

export type EngineKind = "llama.cpp" | "vllm" | "sglang";
export type EngineFault = "none" | "garbage" | "missing" | "outOfVocab" | "status500" | "slow" | "disagree";

export interface Prediction {
  token: number;
  logprob: number;
  top: Array<{ id: number; logprob: number }>;
  promptTokens: number;
  cached: number;
  /** every token's log-probability, before any penalty (what the engines report by default) */
  logprobs: Map<number, number>;
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
      i === rest.length - 1
        ? ([t as Token, { generateNext: { token: true, probabilities: true, options: { temperature: 0 } } }] as const)
        : (t as Token),
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
      logprobs: new Map(sorted.map(([id, q]) => [id, Math.log(q)])),
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
  /** every request received: method and path, and whether it carried the API key */
  seen: Array<{ route: string; authorized: boolean }>;
  close(): Promise<void>;
}

const MODEL_NAME = "stories-llm";
/** how long a "slow" fault waits before answering: longer than the tests' call deadline */
export const SLOW_REPLY_MS = 1600;
/** vLLM's default --max-logprobs */
export const VLLM_MAX_LOGPROBS = 20;

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

/**
 * The sampling values an engine uses for every field a request leaves unset: vLLM's from the model's
 * generation_config.json (`--generation-config auto`, its default), llama.cpp's from the GGUF's
 * `general.sampling.*` keys, SGLang's from `--preferred-sampling-params`.
 */
export interface EngineDefaults {
  repetitionPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
}

export interface FakeEngineOptions {
  /** llama.cpp: report n_vocab in /v1/models (default true); a number reports that size instead */
  reportVocab?: boolean | number;
  /** serve /tokenize and /detokenize (default true) */
  tokenize?: boolean;
  /** the tokenizer behind /tokenize and /detokenize (default: the backend model's) */
  tokenizer?: FakeTokenizer;
  /** sampling defaults applied where a request leaves a field unset (default: neutral) */
  defaults?: EngineDefaults;
  /** context length in tokens (default 1024, the backend's) */
  contextLength?: number;
  /** require `Authorization: Bearer <apiKey>` on every endpoint */
  apiKey?: string;
  /** vLLM: --enable-prompt-tokens-details (default false, as in vLLM): usage.prompt_tokens_details */
  promptTokensDetails?: boolean;
  /** vLLM: KV block size of the prefix cache (default 16, vLLM's) */
  blockSize?: number;
  /** SGLang: "both" (default: /model_info and its deprecated alias /get_model_info), "new" or "legacy" only */
  modelInfo?: "both" | "new" | "legacy";
  /** vLLM: --logprobs-mode (default raw_logprobs) */
  logprobsMode?: "raw_logprobs" | "processed_logprobs";
  /** SGLang: --enable-deterministic-inference (default false): `sampling_seed` is read; /server_info says so */
  deterministicInference?: boolean;
  /** SGLang: serve /server_info (default: when deterministicInference is given; false: a server too old for it) */
  serverInfo?: boolean;
}

/** One generation request, read in the engine's own field names. */
interface GenRequest {
  ids: number[];
  /** top log-probabilities asked for */
  k: number;
  /** tokens to generate */
  n: number;
  temperature?: number;
  repetition?: number;
  presence?: number;
  frequency?: number;
  /** llama.cpp: the penalty window (repeat_last_n, default 64) */
  lastN?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  /** the request's seed (SGLang: sampling_seed) */
  seed?: number;
  /** llama.cpp: the sampler chain's order */
  samplers?: string[];
  /** llama.cpp: post_sampling_probs */
  postSampling: boolean;
  /** vLLM: return_token_ids */
  tokenIds: boolean;
}

const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);

function readRequest(kind: EngineKind, body: Record<string, unknown>): GenRequest {
  if (kind === "sglang") {
    const sp = (body.sampling_params ?? {}) as Record<string, unknown>;
    return {
      ids: body.input_ids as number[],
      k: Number(body.top_logprobs_num) || 1,
      n: num(sp.max_new_tokens) ?? 128,
      temperature: num(sp.temperature),
      repetition: num(sp.repetition_penalty),
      presence: num(sp.presence_penalty),
      frequency: num(sp.frequency_penalty),
      topK: num(sp.top_k),
      topP: num(sp.top_p),
      minP: num(sp.min_p),
      seed: num(sp.sampling_seed),
      postSampling: false,
      tokenIds: true,
    };
  }
  const llama = kind === "llama.cpp";
  return {
    ids: body.prompt as number[],
    k: Number(llama ? body.n_probs : body.logprobs) || 1,
    n: num(llama ? body.n_predict : body.max_tokens) ?? (llama ? -1 : 16),
    temperature: num(body.temperature),
    repetition: num(llama ? body.repeat_penalty : body.repetition_penalty),
    presence: num(body.presence_penalty),
    frequency: num(body.frequency_penalty),
    lastN: llama ? (num(body.repeat_last_n) ?? 64) : undefined,
    topK: num(body.top_k),
    topP: num(body.top_p),
    minP: num(body.min_p),
    seed: num(body.seed),
    samplers: llama && Array.isArray(body.samplers) ? (body.samplers as string[]) : undefined,
    postSampling: llama && body.post_sampling_probs === true,
    tokenIds: body.return_token_ids === true,
  };
}

/** The engine's default temperature where neither the request nor the defaults set one. */
const DEFAULT_TEMPERATURE: Record<EngineKind, number> = { "llama.cpp": 0.8, vllm: 1, sglang: 1 };

/**
 * Logits as a model has them: the backend gives log-probabilities (logits up to a constant), and a real
 * model's likely tokens have positive logits, which is where a repetition penalty divides.
 */
const LOGIT_SHIFT = 10;

/** llama.cpp's default chain (common/common.h); the samplers the fake does not model are neutral in every request. */
const LLAMA_DEFAULT_SAMPLERS = ["penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"];
const DEFAULT_TOP_K: Record<EngineKind, number> = { "llama.cpp": 40, vllm: -1, sglang: -1 };

/**
 * Logits after the penalties. The repetition penalty is the engines' formula on the logit (divided by
 * the penalty when positive, multiplied when negative); presence and frequency subtract. What each
 * engine penalises: vLLM the prompt and the output, llama.cpp the last `repeat_last_n` tokens of both,
 * SGLang the output only.
 */
function penalised(
  kind: EngineKind,
  p: Prediction,
  r: GenRequest,
  generated: readonly number[],
  d: EngineDefaults,
): Array<[number, number]> {
  const rep = r.repetition ?? d.repetitionPenalty ?? 1;
  const presence = r.presence ?? d.presencePenalty ?? 0;
  const frequency = r.frequency ?? d.frequencyPenalty ?? 0;
  const all = [...r.ids, ...generated];
  const window =
    kind === "vllm" ? all : kind === "sglang" ? [...generated] : r.lastN === 0 ? [] : all.slice(-(r.lastN! < 0 ? all.length : r.lastN!));
  const counted = kind === "llama.cpp" ? window : generated;
  const repeated = new Set(window);
  const counts = new Map<number, number>();
  for (const t of counted) counts.set(t, (counts.get(t) ?? 0) + 1);
  const score = (id: number, lp: number) => {
    const c = counts.get(id) ?? 0;
    const logit = lp + LOGIT_SHIFT;
    return (repeated.has(id) ? (logit < 0 ? logit * rep : logit / rep) : logit) - frequency * c - (c > 0 ? presence : 0);
  };
  return [...p.logprobs].map(([id, lp]) => [id, score(id, lp)] as [number, number]);
}

/** One sampler of a chain on logits sorted most likely first (each leaves at least one token). */
function applySampler(name: string, sorted: Array<[number, number]>, r: GenRequest, kind: EngineKind): Array<[number, number]> {
  const probs = () => {
    const z = sorted.reduce((a, [, l]) => a + Math.exp(l - sorted[0]![1]), 0);
    return sorted.map(([, l]) => Math.exp(l - sorted[0]![1]) / z);
  };
  switch (name) {
    case "top_k": {
      const k = r.topK ?? DEFAULT_TOP_K[kind];
      return k > 0 ? sorted.slice(0, k) : sorted;
    }
    case "top_p": {
      const topP = r.topP ?? 1;
      if (topP >= 1) return sorted;
      let acc = 0;
      const q = probs();
      const n = q.findIndex((x) => (acc += x) >= topP);
      return sorted.slice(0, n < 0 ? sorted.length : n + 1);
    }
    case "min_p": {
      const minP = r.minP ?? 0;
      return minP > 0 ? sorted.filter(([, l]) => l >= sorted[0]![1] + Math.log(minP)) : sorted;
    }
    case "temperature": {
      const t = r.temperature ?? DEFAULT_TEMPERATURE[kind];
      return t <= 0 ? sorted.slice(0, 1) : sorted.map(([id, l]) => [id, l / t]);
    }
    default:
      return sorted; // neutral in every request the adapters send
  }
}

/** The chain after the penalties, in the engine's order (llama.cpp: the request's `samplers`). */
function chainOf(kind: EngineKind, r: GenRequest): string[] {
  if (kind === "llama.cpp") return (r.samplers ?? LLAMA_DEFAULT_SAMPLERS).filter((n) => n !== "penalties");
  const t = r.temperature ?? DEFAULT_TEMPERATURE[kind];
  if (t <= 0) return ["temperature"]; // greedy: the penalised argmax
  return kind === "vllm" ? ["temperature", "min_p", "top_k", "top_p"] : ["temperature", "top_k", "top_p", "min_p"];
}

/** The engine's distribution after its chain: the kept tokens and their probabilities, most likely first. */
function distribution(
  kind: EngineKind,
  p: Prediction,
  r: GenRequest,
  generated: readonly number[],
  d: EngineDefaults,
): Array<[number, number]> {
  const withPenalties = kind !== "llama.cpp" || (r.samplers ?? LLAMA_DEFAULT_SAMPLERS).includes("penalties");
  let sorted = (
    withPenalties
      ? penalised(kind, p, r, generated, d)
      : penalised(kind, p, { ...r, repetition: 1, presence: 0, frequency: 0 }, generated, {})
  ).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  for (const name of chainOf(kind, r)) sorted = applySampler(name, sorted, r, kind);
  const top = sorted[0]![1];
  const z = sorted.reduce((a, [, l]) => a + Math.exp(l - top), 0);
  return sorted.map(([id, l]) => [id, Math.exp(l - top) / z]);
}

/** The engine's random numbers for one request: seeded where the engine reads the seed, else unseeded. */
function generatorOf(kind: EngineKind, r: GenRequest, deterministic: boolean): (position: number) => number {
  const seed = r.seed;
  const seeded = seed !== undefined && seed >= 0 && seed !== 0xffffffff && (kind !== "sglang" || deterministic);
  if (!seeded) return () => Math.random();
  // SGLang keys its draw by the seed and the position; llama.cpp and vLLM draw from one generator a request
  if (kind === "sglang") return (position) => new Rng(seed ^ Math.imul(position + 1, 0x9e3779b1)).next();
  const rng = new Rng(seed);
  return () => rng.next();
}

function draw(dist: Array<[number, number]>, u: number): number {
  let x = u;
  for (const [id, q] of dist) if ((x -= q) < 0) return id;
  return dist[dist.length - 1]![0];
}

/** vLLM's prefix cache: whole KV blocks only, and at least one prompt token is always computed. */
class BlockCache {
  private readonly blocks = new Set<string>();
  constructor(private readonly size: number) {}

  cached(ids: readonly number[]): number {
    let n = 0;
    while (n + this.size <= ids.length - 1 && this.blocks.has(ids.slice(0, n + this.size).join(","))) n += this.size;
    return n;
  }

  /** the tokens whose KV the request computed: the prompt and every generated token but the last */
  add(computed: readonly number[]): void {
    for (let n = this.size; n <= computed.length; n += this.size) this.blocks.add(computed.slice(0, n).join(","));
  }
}

/** The engine's 400 for a request beyond its context, or null when it fits. */
function contextRejection(kind: EngineKind, r: GenRequest, ctx: number): unknown {
  const n = r.ids.length;
  if (kind === "llama.cpp") {
    if (n < ctx) return null;
    const message = `request (${n} tokens) exceeds the available context size (${ctx} tokens), try increasing it`;
    return { error: { code: 400, message, type: "exceed_context_size_error", n_prompt_tokens: n, n_ctx: ctx } };
  }
  if (kind === "vllm") {
    if (n + r.n <= ctx) return null;
    const message =
      `You passed ${n} input tokens and requested ${r.n} output tokens. However, the model's context length is only ${ctx} tokens, ` +
      `resulting in a maximum input length of ${ctx - r.n} tokens. Please reduce the length of the input prompt.`;
    return { error: { message, type: "BadRequestError", param: "input_tokens", code: 400 } };
  }
  if (n >= ctx) return { error: { message: `The input (${n} tokens) is longer than the model's context length (${ctx} tokens).` } };
  if (n + r.n <= ctx) return null;
  return {
    error: {
      message:
        `Requested token count exceeds the model's maximum context length of ${ctx} tokens. You requested a total of ${n + r.n} tokens: ` +
        `${n} tokens from the input messages and ${r.n} tokens for the completion. Please reduce the number of tokens in the input messages or the completion to fit within the limit.`,
    },
  };
}

const UNAUTHORIZED: Record<EngineKind, unknown> = {
  "llama.cpp": { error: { code: 401, message: "Invalid API Key", type: "authentication_error" } },
  vllm: { error: "Unauthorized" },
  sglang: { error: "Unauthorized" },
};

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
}

export async function startFakeEngine(kind: EngineKind, backend: RealBackend, opts: FakeEngineOptions = {}): Promise<FakeEngine> {
  const tok = opts.tokenizer ?? modelTokenizer(backend.model);
  const defaults = opts.defaults ?? {};
  const ctx = opts.contextLength ?? 1024;
  const blocks = new BlockCache(opts.blockSize ?? 16);
  const engine: FakeEngine = { url: "", fault: "none", requests: [], seen: [], close: async () => {} };
  const send = sendJson;

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      try {
        const route = `${req.method} ${req.url}`;
        const authorized = !opts.apiKey || req.headers.authorization === `Bearer ${opts.apiKey}`;
        engine.seen.push({ route, authorized });
        if (!authorized) return send(res, 401, UNAUTHORIZED[kind]);
        const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>) : {};
        const genRoute = { "llama.cpp": "POST /completion", vllm: "POST /v1/completions", sglang: "POST /generate" }[kind];
        if (route === genRoute) return await generate(kind, engine, { opts, backend, tok, ctx, defaults }, blocks, body, res);
        const reply = describeReply(kind, route, body, { opts, backend, tok, ctx, defaults });
        if (reply) return send(res, reply[0], reply[1]);
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

/** A generation request: the engine's reply, its faults, its context and logprob limits. */
async function generate(
  kind: EngineKind,
  engine: FakeEngine,
  e: EngineSetup,
  blocks: BlockCache,
  body: Record<string, unknown>,
  res: http.ServerResponse,
): Promise<void> {
  const { opts, backend, ctx, defaults } = e;
  engine.requests.push(body);
  let clientGone = false;
  res.on("close", () => {
    if (!res.writableEnded) clientGone = true;
  });
  const f = engine.fault;
  if (f === "status500") return sendJson(res, 500, { error: { message: "injected" } });
  if (f === "garbage") return sendJson(res, 200, '{"choices": [');
  if (f === "slow") {
    await new Promise((r) => setTimeout(r, SLOW_REPLY_MS));
    // the client gave up: predicting now would move the shared sequence under a later request
    if (clientGone) return;
  }
  const r = readRequest(kind, body);
  if (kind === "vllm" && r.k > VLLM_MAX_LOGPROBS) {
    return sendJson(res, 400, {
      error: {
        message: `Requested sample logprobs of ${r.k}, which is greater than max allowed: ${VLLM_MAX_LOGPROBS}`,
        type: "BadRequestError",
        param: "logprobs",
        code: 400,
      },
    });
  }
  const refused = contextRejection(kind, r, ctx);
  if (refused) return sendJson(res, 400, refused);
  // llama.cpp stops at the end of its context; n_predict -1 means "until then"
  const n = kind === "llama.cpp" ? Math.min(r.n < 0 ? ctx : r.n, ctx - r.ids.length) : r.n;
  const cachedBlocks = blocks.cached(r.ids);
  const steps: Step[] = [];
  if (f === "outOfVocab") steps.push({ p: await backend.predict(r.ids, r.k), token: backend.vocabSize + 7 });
  const random = generatorOf(kind, r, opts.deterministicInference === true);
  const reportAfterChain = r.postSampling || (kind === "vllm" && opts.logprobsMode === "processed_logprobs");
  while (steps.length < Math.max(1, n) && f !== "outOfVocab") {
    const generated = steps.map((s) => s.token);
    const p = await backend.predict([...r.ids, ...generated], r.k);
    const dist = distribution(kind, p, r, generated, defaults);
    steps.push({ p, token: draw(dist, random(r.ids.length + generated.length)), ...(reportAfterChain ? { after: dist } : {}) });
  }
  if (kind === "vllm") blocks.add([...r.ids, ...steps.slice(0, -1).map((s) => s.token)]);
  const first = steps[0]!;
  const cached = kind === "vllm" ? cachedBlocks : first.p.cached;
  const other = first.token === 0 ? 1 : 0;
  if (f === "missing") return sendJson(res, 200, {});
  return sendJson(
    res,
    200,
    format(kind, steps, {
      promptTokens: r.ids.length,
      cached,
      idsFirst: f === "disagree" ? other : first.token,
      tokenIds: r.tokenIds,
      details: opts.promptTokensDetails === true,
    }),
  );
}

/** A generated token: the model's prediction, and the distribution after the chain when the reply reports that one. */
interface Step {
  p: Prediction;
  token: number;
  after?: Array<[number, number]>;
}

interface EngineSetup {
  opts: FakeEngineOptions;
  backend: RealBackend;
  tok: FakeTokenizer;
  ctx: number;
  defaults: EngineDefaults;
}

/** The engine's answer to a request that is not a generation (model info, tokenizer), or null if it has no such route. */
function describeReply(kind: EngineKind, route: string, body: Record<string, unknown>, e: EngineSetup): [number, unknown] | null {
  const { opts, backend, tok, ctx, defaults } = e;
  const send = (status: number, b: unknown): [number, unknown] => [status, b];
  if (kind === "llama.cpp" && route === "GET /v1/models") {
    const nVocab = typeof opts.reportVocab === "number" ? opts.reportVocab : backend.vocabSize;
    return send(200, {
      object: "list",
      data: [
        {
          id: MODEL_NAME,
          object: "model",
          meta: opts.reportVocab === false ? {} : { vocab_type: 1, n_vocab: nVocab, n_ctx: ctx, n_ctx_train: 1024 },
        },
      ],
    });
  }
  if (kind === "llama.cpp" && route === "GET /props") {
    const d = {
      repeat_penalty: defaults.repetitionPenalty ?? 1,
      presence_penalty: defaults.presencePenalty ?? 0,
      frequency_penalty: defaults.frequencyPenalty ?? 0,
      repeat_last_n: 64,
      temperature: 0.8,
    };
    return send(200, { default_generation_settings: { params: d, n_ctx: ctx }, total_slots: 1 });
  }
  if (kind === "vllm" && route === "GET /v1/models")
    return send(200, { object: "list", data: [{ id: MODEL_NAME, object: "model", max_model_len: ctx }] });
  const info = opts.modelInfo ?? "both";
  const infoRoutes =
    info === "both" ? ["GET /model_info", "GET /get_model_info"] : info === "new" ? ["GET /model_info"] : ["GET /get_model_info"];
  if (kind === "sglang" && infoRoutes.includes(route)) {
    const preferred = Object.keys(defaults).length
      ? JSON.stringify({
          repetition_penalty: defaults.repetitionPenalty,
          presence_penalty: defaults.presencePenalty,
          frequency_penalty: defaults.frequencyPenalty,
        })
      : null;
    return send(200, {
      model_path: `/models/${MODEL_NAME}`,
      tokenizer_path: `/models/${MODEL_NAME}`,
      is_generation: true,
      preferred_sampling_params: preferred,
    });
  }
  // SGLang's server arguments; a server without the flag in its options stands for one too old to report it
  if (kind === "sglang" && route === "GET /server_info" && opts.deterministicInference !== undefined && opts.serverInfo !== false)
    return send(200, { enable_deterministic_inference: opts.deterministicInference, attention_backend: "fa3" });
  if (route === "POST /tokenize" && opts.tokenize !== false) {
    // llama.cpp parses special-token text unless parse_special is false; HF-based engines always do
    const text = (kind === "llama.cpp" ? body.content : body.prompt) as string;
    const tokens = tok.tokenize(text, kind === "llama.cpp" ? body.parse_special !== false : true);
    if (kind === "llama.cpp") return send(200, { tokens });
    return send(200, { tokens, count: tokens.length, max_model_len: ctx });
  }
  if (route === "POST /detokenize" && opts.tokenize !== false) {
    const text = tok.detokenize(body.tokens as number[]);
    return send(200, kind === "llama.cpp" ? { content: text } : kind === "vllm" ? { prompt: text } : { text });
  }
  return null;
}

interface FormatInfo {
  promptTokens: number;
  cached: number;
  /** the first token as the reply's token-ID field states it ("disagree" fault: another) */
  idsFirst: number;
  /** vLLM: token_ids asked for (return_token_ids) */
  tokenIds: boolean;
  /** vLLM: prompt_tokens_details reported (--enable-prompt-tokens-details) */
  details: boolean;
}

/** vLLM's OpenAI server writes -inf as -9999 */
const vllmLogprob = (x: number) => Math.max(x, -9999);

function format(kind: EngineKind, steps: Step[], o: FormatInfo): unknown {
  const evaluated = o.promptTokens - o.cached;
  const n = steps.length;
  const tokens = [o.idsFirst, ...steps.slice(1).map((s) => s.token)];
  // the chosen token's log-probability and the top k: before any penalty, or after the chain where asked
  const lp = (s: Step) => (s.after ? Math.log(s.after.find(([id]) => id === s.token)?.[1] ?? 0) : (s.p.logprobs.get(s.token) ?? -Infinity));
  const topOf = (s: Step) => (s.after ? s.after.slice(0, s.p.top.length).map(([id, q]) => ({ id, logprob: Math.log(q) })) : s.p.top);
  switch (kind) {
    case "llama.cpp":
      return {
        content: "",
        tokens,
        completion_probabilities: steps.map((s) =>
          s.after
            ? {
                id: s.token,
                token: "",
                prob: Math.exp(lp(s)),
                top_probs: topOf(s).map((c) => ({ id: c.id, token: "", prob: Math.exp(c.logprob) })),
              }
            : {
                id: s.token,
                token: "",
                logprob: lp(s),
                top_logprobs: s.p.top.map((c) => ({ id: c.id, token: "", logprob: c.logprob })),
              },
        ),
        tokens_cached: o.cached,
        tokens_evaluated: o.promptTokens,
        stop_type: "limit",
        timings: { prompt_n: evaluated, cache_n: o.cached, predicted_n: n },
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
            ...(o.tokenIds ? { token_ids: tokens } : {}),
            logprobs: {
              tokens: steps.map((s) => `token_id:${s.token}`),
              token_logprobs: steps.map((s) => vllmLogprob(lp(s))),
              // the top k, and the sampled token when it is not among them
              top_logprobs: steps.map((s) =>
                Object.fromEntries([
                  ...topOf(s).map((c) => [`token_id:${c.id}`, vllmLogprob(c.logprob)]),
                  [`token_id:${s.token}`, vllmLogprob(lp(s))],
                ]),
              ),
              text_offset: steps.map(() => 0),
            },
            finish_reason: "length",
          },
        ],
        usage: {
          prompt_tokens: o.promptTokens,
          completion_tokens: n,
          total_tokens: o.promptTokens + n,
          prompt_tokens_details: o.details ? { cached_tokens: o.cached } : null,
        },
      };
    case "sglang":
      return {
        text: "",
        output_ids: tokens,
        meta_info: {
          prompt_tokens: o.promptTokens,
          cached_tokens: o.cached,
          completion_tokens: n,
          output_token_logprobs: steps.map((s) => [lp(s), s.token, null]),
          output_top_logprobs: steps.map((s) => s.p.top.map((c) => [c.logprob, c.id, null])),
          finish_reason: { type: "length", length: n },
        },
      };
  }
}

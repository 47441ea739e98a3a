/**
 * `npm run cloud:check`: does a cloud serve a model with the device model's vocabulary, and does it
 * answer a next-token call? Each engine is checked in the ways it allows:
 *
 * - Tandem's token server: `GET /health` gives the sha256 of its model's `tokenizer.ggml.tokens`, the
 *   same hash the server compares at session creation (exact match, padding included); a hash that
 *   differs only in `[PAD]` entries is reported as such (vocabulary.ts).
 * - llama.cpp's server: `n_vocab` from `GET /v1/models`, then `POST /tokenize` / `POST /detokenize`
 *   round trips of a probe set: texts → IDs, special-token texts → IDs, sampled IDs → text.
 * - vLLM and SGLang: the same probes through their `/tokenize` and `/detokenize` endpoints (vLLM's
 *   tokenizer API; SGLang's native API), when the server has them; neither reports a vocabulary size.
 *
 * Then the engine's sampling defaults (`sampling defaults`): what it reports of them (llama.cpp's
 * `/props`, SGLang's `preferred_sampling_params`) and a probe that asks for a continuation twice, once
 * setting only the temperature and once as the adapter asks (every field set): when they differ, a
 * default (a model's generation config, a GGUF's `general.sampling.*`, preferred parameters) changes
 * the greedy token for clients that leave it unset. Tandem's adapter sets every field, so this WARNs.
 *
 * Probes can show a difference but cannot prove identity (only comparing every token would, and only
 * Tandem's server exposes a hash): a PASS means every probe agreed. Every check prints PASS, FAIL, WARN
 * or SKIP with what it compared; the result is FAIL if any check failed, UNVERIFIED if no check could
 * compare the vocabularies, PASS otherwise.
 */
import type { HealthResponse, ModelIdentity } from "../../../../shared/protocol.js";
import { describeFetchError, parseCloudUrl, readBounded } from "../callSupport.js";
import { CloudCallError, type CloudPeer } from "../peer.js";
import { TandemCloudClient } from "../tandemClient.js";
import { isObject } from "./base.js";
import { createCloudPeer, type CloudKind } from "./index.js";
import { PROBE_TEXTS, sampleTokenIds, type DeviceVocabulary } from "./vocabulary.js";
import { HttpError, errorMessage } from "../../../../shared/errors.js";

export type CheckStatus = "PASS" | "FAIL" | "WARN" | "SKIP";

export interface CheckLine {
  name: string;
  status: CheckStatus;
  detail: string;
  /** this check compared the vocabularies themselves (not only a size or a name) */
  comparesVocabulary?: boolean;
}

export interface CloudCheckReport {
  kind: CloudKind;
  url: string;
  device: { name: string; vocabSize: number; realSize: number; vocabHash: string };
  checks: CheckLine[];
  result: "PASS" | "FAIL" | "UNVERIFIED";
}

export interface CloudCheckOptions {
  kind: CloudKind;
  url: string;
  /** bearer token / API key */
  token?: string;
  /** vLLM: served model name (default: the first of /v1/models) */
  model?: string;
  device: DeviceVocabulary;
  /** per request, ms (default 15 s: a first call may wait for a cold engine) */
  timeoutMs?: number;
  /** called as each check finishes (the CLI prints as it goes) */
  onCheck?: (c: CheckLine) => void;
}

/** The prompt of the next-token check. */
export const CHECK_PROMPT = "Once upon a time";
/** The prompt of the sampling-defaults probe: its greedy continuation repeats earlier tokens, where a penalty bites. */
export const DEFAULTS_PROMPT = "Tom and Sue went to the park. They played and played. Tom and Sue";
/** Tokens of the sampling-defaults probe's continuation. */
export const DEFAULTS_TOKENS = 16;

/** Minimal JSON-over-HTTP with a bearer token and a timeout; errors say what failed. */
/** Largest reply `cloud:check` reads: a 152k-token vocabulary as JSON is ~5 MB. */
const MAX_CHECK_REPLY_BYTES = 64 << 20;

class Http {
  constructor(
    private readonly base: string,
    private readonly token: string | undefined,
    private readonly timeoutMs: number,
  ) {}

  async call(method: "GET" | "POST", path: string, body?: unknown): Promise<unknown> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      if ((err as Error)?.name === "TimeoutError")
        throw new Error(`${method} ${path}: no answer within ${this.timeoutMs} ms`, { cause: err });
      throw new Error(`${method} ${path}: cannot connect (${describeFetchError(err)})`, { cause: err });
    }
    // a vocabulary dump is a few MB; a server sending without end must not fill the memory
    const text = await readBounded(res, MAX_CHECK_REPLY_BYTES, { bytesDown: 0 });
    if (!res.ok) throw new HttpError(res.status, text);
    try {
      return JSON.parse(text);
    } catch {
      throw new Error(`${method} ${path}: the reply is not JSON`);
    }
  }
}

/** What the probes need from an engine. */
interface EngineTokenizer {
  /** `special`: parse special-token text as special tokens */
  tokenize(text: string, special: boolean): Promise<number[]>;
  /** text of the IDs, special tokens rendered */
  detokenize(ids: readonly number[]): Promise<string>;
}

function intArray(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || !v.every((t) => Number.isInteger(t))) throw new Error(`${what} is not a list of token IDs`);
  return v as number[];
}

function field(v: unknown, key: string, what: string): unknown {
  if (!isObject(v) || !(key in v)) throw new Error(`${what} has no "${key}"`);
  return v[key];
}

function stringField(v: unknown, key: string, what: string): string {
  const s = field(v, key, what);
  if (typeof s !== "string") throw new Error(`${what}: "${key}" is not a string`);
  return s;
}

/** llama.cpp server: POST /tokenize {content, add_special, parse_special} → {tokens}; POST /detokenize {tokens} → {content}. */
function llamaCppTokenizer(http: Http): EngineTokenizer {
  return {
    tokenize: async (text, special) =>
      intArray(
        field(
          await http.call("POST", "/tokenize", { content: text, add_special: false, parse_special: special }),
          "tokens",
          "/tokenize reply",
        ),
        "/tokenize tokens",
      ),
    detokenize: async (ids) => stringField(await http.call("POST", "/detokenize", { tokens: ids }), "content", "/detokenize reply"),
  };
}

/**
 * vLLM (tokenizer API of its OpenAI-compatible server): POST /tokenize {model, prompt,
 * add_special_tokens} → {tokens, count, max_model_len}; POST /detokenize {model, tokens} → {prompt}.
 * Hugging Face tokenizers always parse special-token text, so `special` cannot be turned off.
 */
function vllmTokenizer(http: Http, model: string): EngineTokenizer {
  return {
    tokenize: async (text) =>
      intArray(
        field(await http.call("POST", "/tokenize", { model, prompt: text, add_special_tokens: false }), "tokens", "/tokenize reply"),
        "/tokenize tokens",
      ),
    detokenize: async (ids) => stringField(await http.call("POST", "/detokenize", { model, tokens: ids }), "prompt", "/detokenize reply"),
  };
}

/** SGLang (native API): POST /tokenize {prompt, add_special_tokens} → {tokens, count}; POST /detokenize {tokens, skip_special_tokens} → {text}. */
function sglangTokenizer(http: Http): EngineTokenizer {
  return {
    tokenize: async (text) =>
      intArray(
        field(await http.call("POST", "/tokenize", { prompt: text, add_special_tokens: false }), "tokens", "/tokenize reply"),
        "/tokenize tokens",
      ),
    detokenize: async (ids) =>
      stringField(await http.call("POST", "/detokenize", { tokens: ids, skip_special_tokens: false }), "text", "/detokenize reply"),
  };
}

const short = (s: string, n = 40) => JSON.stringify(s.length > n ? `${s.slice(0, n)}…` : s);
const ids = (a: readonly number[], from = 0, n = 6) => `[${a.slice(from, from + n).join(", ")}${a.length > from + n ? ", …" : ""}]`;

function firstDifference(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/**
 * Two renderings of one token sequence may differ in one leading space: llama.cpp's detokenizer drops
 * the space a SentencePiece vocabulary puts before the first token, the server's /detokenize joins
 * per-token pieces without dropping it. Nothing else is forgiven.
 */
function sameText(a: string, b: string): boolean {
  return a === b || a.replace(/^ /, "") === b.replace(/^ /, "");
}

/** The probe checks shared by the engines that can tokenise. */
async function tokenizerChecks(dev: DeviceVocabulary, tok: EngineTokenizer, add: (c: CheckLine) => void): Promise<void> {
  // 1. texts → IDs
  let total = 0;
  const bad: string[] = [];
  try {
    for (const text of PROBE_TEXTS) {
      const mine = dev.tokenize(text, false);
      const theirs = await tok.tokenize(text, false);
      total += mine.length;
      if (mine.length !== theirs.length || firstDifference(mine, theirs) < mine.length) {
        const i = firstDifference(mine, theirs);
        bad.push(`${short(text)}: from token ${i}, device ${ids(mine, i)} vs server ${ids(theirs, i)}`);
      }
    }
  } catch (err) {
    if (err instanceof HttpError && (err.status === 404 || err.status === 405)) {
      add({
        name: "text probes",
        status: "SKIP",
        detail: `the server has no /tokenize endpoint (${err.message.slice(0, 60)}); the IDs cannot be compared`,
      });
      add({ name: "special tokens", status: "SKIP", detail: "needs /tokenize" });
      add({ name: "token IDs", status: "SKIP", detail: "needs /detokenize" });
      return;
    }
    throw err;
  }
  add(
    bad.length === 0
      ? {
          name: "text probes",
          status: "PASS",
          detail: `${PROBE_TEXTS.length} texts tokenised to the same ${total} IDs`,
          comparesVocabulary: true,
        }
      : {
          name: "text probes",
          status: "FAIL",
          detail: `${bad.length} of ${PROBE_TEXTS.length} texts tokenise differently: ${bad.slice(0, 2).join("; ")}`,
          comparesVocabulary: true,
        },
  );

  const step = async (name: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      add({ name, status: "FAIL", detail: errorMessage(err) });
    }
  };
  await step("special tokens", () => specialTokenCheck(dev, tok, add));
  await step("token IDs", () => tokenIdCheck(dev, tok, add));
}

/** Special-token texts → IDs: the chat template's markers must be the same tokens on both sides. */
async function specialTokenCheck(dev: DeviceVocabulary, tok: EngineTokenizer, add: (c: CheckLine) => void): Promise<void> {
  const specials = dev.specials.filter((s) => s.text !== "").slice(0, 64);
  if (specials.length === 0) {
    add({ name: "special tokens", status: "SKIP", detail: "the device model has no special tokens with a text" });
    return;
  }
  const wrong: string[] = [];
  for (const s of specials) {
    const mine = dev.tokenize(s.text, true);
    const theirs = await tok.tokenize(s.text, true);
    if (mine.length !== theirs.length || firstDifference(mine, theirs) < mine.length)
      wrong.push(`${short(s.text, 20)} (ID ${s.id}): server ${ids(theirs)}`);
  }
  const names = specials
    .slice(0, 4)
    .map((s) => s.text)
    .join(" ");
  add(
    wrong.length === 0
      ? {
          name: "special tokens",
          status: "PASS",
          detail: `${specials.length} special tokens (${names}${specials.length > 4 ? " …" : ""}) have the same IDs`,
          comparesVocabulary: true,
        }
      : {
          name: "special tokens",
          status: "FAIL",
          detail: `${wrong.length} of ${specials.length} differ: ${wrong.slice(0, 3).join("; ")}`,
          comparesVocabulary: true,
        },
  );
}

/** Sampled IDs → text. */
async function tokenIdCheck(dev: DeviceVocabulary, tok: EngineTokenizer, add: (c: CheckLine) => void): Promise<void> {
  const sample = sampleTokenIds(dev);
  const mine = dev.detokenize(sample);
  let theirs: string;
  try {
    theirs = await tok.detokenize(sample);
  } catch (err) {
    // llama-server answers 500 for an ID beyond its vocabulary: the vocabularies differ in size
    if (!(err instanceof HttpError)) throw err;
    add({
      name: "token IDs",
      status: "FAIL",
      detail: `the server rejects the device's IDs (up to ${sample.at(-1)}): ${err.message.slice(0, 160)}`,
      comparesVocabulary: true,
    });
    return;
  }
  if (sameText(mine, theirs)) {
    add({
      name: "token IDs",
      status: "PASS",
      detail: `${sample.length} IDs from ${sample[0]} to ${sample.at(-1)} detokenise to the same text`,
      comparesVocabulary: true,
    });
  } else {
    const diffs: string[] = [];
    for (const id of sample) {
      if (diffs.length >= 3) break;
      const a = dev.detokenize([id]);
      const b = await tok.detokenize([id]);
      if (!sameText(a, b)) diffs.push(`ID ${id}: device ${short(a, 16)} vs server ${short(b, 16)}`);
    }
    add({
      name: "token IDs",
      status: "FAIL",
      detail: `the ${sample.length} sampled IDs detokenise differently: ${diffs.join("; ") || `${short(mine)} vs ${short(theirs)}`}`,
      comparesVocabulary: true,
    });
  }
}

/** llama.cpp reports its model's vocabulary size (`n_vocab`), counting padding entries. */
function sizeCheck(dev: DeviceVocabulary, nVocab: unknown): CheckLine {
  const size = dev.identity.vocabSize;
  if (typeof nVocab !== "number") return { name: "vocabulary size", status: "SKIP", detail: "the server reports no n_vocab" };
  if (nVocab === size) return { name: "vocabulary size", status: "PASS", detail: `${size} entries on both sides` };
  if (nVocab >= dev.realSize) {
    return {
      name: "vocabulary size",
      status: "WARN",
      detail: `device ${size} entries, server ${nVocab}: the device's entries from ${dev.realSize} on are [PAD] padding, so the sizes may differ only in padding (as Qwen2.5 0.5B and 32B do); the probes decide`,
    };
  }
  return {
    name: "vocabulary size",
    status: "FAIL",
    detail: `the server has ${nVocab} tokens, fewer than the device's ${dev.realSize} real tokens`,
  };
}

/** The Tandem server's vocabulary hash (over the real entries, padding set aside: modelFile.ts). */
function hashCheck(dev: DeviceVocabulary, cloud: ModelIdentity): CheckLine {
  const mine = dev.identity;
  const h = (s: string) => `${s.slice(0, 12)}…`;
  if (cloud.vocabHash === mine.vocabHash && cloud.vocabSize === mine.vocabSize) {
    return {
      name: "vocabulary hash",
      status: "PASS",
      detail: `sha256 ${h(mine.vocabHash)} over ${dev.realSize} token strings, identical`,
      comparesVocabulary: true,
    };
  }
  if (cloud.vocabHash === mine.vocabHash) {
    return {
      name: "vocabulary hash",
      status: "PASS",
      detail:
        `sha256 ${h(mine.vocabHash)} over the first ${dev.realSize} token strings, identical; the sizes differ only in [PAD] ` +
        `entries (device ${mine.vocabSize}, server ${cloud.vocabSize}): the same tokenizer padded to another embedding size`,
      comparesVocabulary: true,
    };
  }
  return {
    name: "vocabulary hash",
    status: "FAIL",
    detail: `different vocabularies: device ${mine.name} (${mine.vocabSize} tokens, sha256 ${h(mine.vocabHash)}), server ${cloud.name} (${cloud.vocabSize} tokens, sha256 ${h(cloud.vocabHash)})`,
    comparesVocabulary: true,
  };
}

/** One next-token call, then a second one with that token appended (shows the prefix cache at work). */
async function nextTokenCheck(o: CloudCheckOptions, timeoutMs: number): Promise<CheckLine> {
  const dev = o.device;
  const prompt = [...(dev.bos !== undefined ? [dev.bos] : []), ...dev.tokenize(CHECK_PROMPT, false)];
  const common = { url: o.url, token: o.token, topK: 3, deadlineMs: timeoutMs, backoffMs: 0 };
  const peer: CloudPeer =
    o.kind === "tandem"
      ? new TandemCloudClient(common)
      : // the vocabulary was checked above as far as the engine allows; this call tests the token path
        createCloudPeer({ ...common, kind: o.kind, model: o.model, probe: dev.probe, assumeSameVocabulary: true });
  try {
    await peer.connect(dev.identity);
    const first = await peer.next(prompt);
    const second = await peer.next([...prompt, first.tokenId]);
    const evaluated =
      second.evaluated === undefined
        ? "the server does not report how many tokens it evaluated"
        : `the second call evaluated ${second.evaluated} of ${prompt.length + 1} tokens`;
    return {
      name: "next token",
      status: "PASS",
      detail: `after ${short(CHECK_PROMPT)}: token ${first.tokenId} ${short(dev.detokenize([first.tokenId]), 20)}, ${first.logprob === undefined ? "no log-probability" : `log-probability ${first.logprob.toFixed(3)}`}, ${first.latencyMs.toFixed(0)} ms; ${evaluated}`,
    };
  } catch (err) {
    const reason = err instanceof CloudCallError ? ` (${err.reason})` : "";
    return { name: "next token", status: "FAIL", detail: `${errorMessage(err)}${reason}` };
  } finally {
    await peer.close();
  }
}

/** What the engine says of its own sampling defaults, where it says anything: the non-neutral ones. */
async function reportedDefaults(o: CloudCheckOptions, http: Http): Promise<string[]> {
  if (o.kind === "llama.cpp") {
    const props = await http.call("GET", "/props").catch(() => undefined);
    const dgs = isObject(props) && isObject(props.default_generation_settings) ? props.default_generation_settings : undefined;
    const p = dgs && isObject(dgs.params) ? dgs.params : {};
    const neutral: Record<string, number> = { repeat_penalty: 1, presence_penalty: 0, frequency_penalty: 0, dry_multiplier: 0 };
    return Object.entries(neutral)
      .filter(([k, v]) => typeof p[k] === "number" && p[k] !== v)
      .map(([k]) => `${k} ${p[k] as number}`);
  }
  if (o.kind === "sglang") {
    const info = await http.call("GET", "/model_info").catch(() => http.call("GET", "/get_model_info").catch(() => undefined));
    const pref = isObject(info) ? info.preferred_sampling_params : undefined;
    return typeof pref === "string" && pref.trim() !== "" && pref !== "null" ? [`--preferred-sampling-params ${pref.slice(0, 120)}`] : [];
  }
  return [];
}

/** A continuation asked for with only the temperature set, as a client that trusts the defaults asks. */
async function bareContinuation(o: CloudCheckOptions, http: Http, prompt: number[], model: string | undefined): Promise<number[]> {
  const n = DEFAULTS_TOKENS;
  if (o.kind === "llama.cpp") {
    return intArray(
      field(
        await http.call("POST", "/completion", { prompt, n_predict: n, temperature: 0, return_tokens: true }),
        "tokens",
        "/completion reply",
      ),
      "tokens",
    );
  }
  if (o.kind === "vllm") {
    const r = await http.call("POST", "/v1/completions", {
      model,
      prompt,
      max_tokens: n,
      temperature: 0,
      return_token_ids: true,
      logprobs: 1,
      return_tokens_as_token_ids: true,
    });
    const choice = isObject(r) && Array.isArray(r.choices) ? r.choices[0] : undefined;
    if (isObject(choice) && Array.isArray(choice.token_ids)) return intArray(choice.token_ids, "token_ids");
    // a vLLM too old for return_token_ids: the tokens of the log-probabilities ("token_id:N")
    const lp = isObject(choice) && isObject(choice.logprobs) && Array.isArray(choice.logprobs.tokens) ? choice.logprobs.tokens : undefined;
    return intArray(
      lp?.map((t) => (typeof t === "string" ? Number(/^token_id:(\d+)$/.exec(t)?.[1]) : NaN)),
      "/v1/completions logprobs.tokens",
    );
  }
  const r = await http.call("POST", "/generate", { input_ids: prompt, sampling_params: { max_new_tokens: n, temperature: 0 } });
  return intArray(field(r, "output_ids", "/generate reply"), "output_ids");
}

const HOW_TO_NEUTRAL: Partial<Record<CloudKind, string>> = {
  vllm: "start vLLM with --generation-config vllm",
  "llama.cpp": "start llama-server with --repeat-penalty 1 --presence-penalty 0 --frequency-penalty 0 --dry-multiplier 0",
  sglang: "start SGLang without --preferred-sampling-params",
};

/** Whether the engine's defaults would change the greedy token of a client that leaves them unset. */
async function samplingDefaultsCheck(o: CloudCheckOptions, http: Http, model: string | undefined, timeoutMs: number): Promise<CheckLine> {
  const name = "sampling defaults";
  const dev = o.device;
  const prompt = [...(dev.bos !== undefined ? [dev.bos] : []), ...dev.tokenize(DEFAULTS_PROMPT, false)];
  const reported = await reportedDefaults(o, http);
  const peer = createCloudPeer({
    kind: o.kind,
    url: o.url,
    token: o.token,
    model,
    probe: dev.probe,
    deadlineMs: timeoutMs,
    backoffMs: 0,
    assumeSameVocabulary: true,
  });
  let explicit: number[];
  let bare: number[];
  try {
    await peer.connect(dev.identity);
    const s = await peer.next(prompt, undefined, { draft: DEFAULTS_TOKENS - 1 });
    explicit = [s.tokenId, ...(s.draft ?? [])];
    bare = await bareContinuation(o, http, prompt, model);
  } catch (err) {
    return {
      name,
      status: reported.length ? "WARN" : "SKIP",
      detail: `${reported.length ? `the engine reports ${reported.join(", ")}; ` : ""}the probe failed: ${errorMessage(err).slice(0, 160)}`,
    };
  } finally {
    await peer.close();
  }
  const i = firstDifference(explicit, bare);
  const changed = i < Math.min(explicit.length, bare.length);
  if (!changed && reported.length === 0) {
    return {
      name,
      status: "PASS",
      detail: `${explicit.length} greedy tokens after ${short(DEFAULTS_PROMPT, 24)} are the same with the engine's defaults as with every field set`,
    };
  }
  const what = [
    ...(reported.length ? [`the engine reports ${reported.join(", ")}`] : []),
    ...(changed
      ? [`with only the temperature set, token ${i} of the probe's continuation is ${bare[i]} instead of the greedy ${explicit[i]}`]
      : []),
  ].join("; ");
  return {
    name,
    status: "WARN",
    detail: `${what}. Tandem's adapter sets every sampling field, so its tokens are the greedy ones; other clients of this engine get penalised tokens (to make the defaults neutral: ${HOW_TO_NEUTRAL[o.kind]})`,
  };
}

/** A check that throws is a FAIL line named `name`, not the end of the report. */
function guardedBy(add: (c: CheckLine) => void) {
  return async (name: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      add({ name, status: "FAIL", detail: errorMessage(err) });
    }
  };
}

/** The vocabulary checks each engine allows (its identity, size or tokenizer); returns the model it serves, when asked. */
async function vocabularyChecks(o: CloudCheckOptions, http: Http, add: (c: CheckLine) => void): Promise<string | undefined> {
  const dev = o.device;
  const guarded = guardedBy(add);
  switch (o.kind) {
    case "tandem":
      await guarded("vocabulary hash", async () => {
        const h = await http.call("GET", "/health");
        const model = isObject(h) ? (h as Partial<HealthResponse>).model : undefined;
        if (!isObject(model) || typeof model.vocabHash !== "string" || typeof model.vocabSize !== "number")
          throw new Error("/health reply has no model identity: is this a Tandem token server?");
        add(hashCheck(dev, model as ModelIdentity));
      });
      return o.model;
    case "llama.cpp":
      await guarded("vocabulary size", async () => {
        const models = await http.call("GET", "/v1/models");
        const m = isObject(models) && Array.isArray(models.data) && isObject(models.data[0]) ? models.data[0] : undefined;
        add(sizeCheck(dev, m && isObject(m.meta) ? m.meta.n_vocab : undefined));
      });
      await guarded("text probes", () => tokenizerChecks(dev, llamaCppTokenizer(http), add));
      return o.model;
    case "vllm": {
      let model = o.model;
      await guarded("served model", async () => {
        model = await servedVllmModel(http, model);
        add({ name: "served model", status: "PASS", detail: model });
      });
      if (model !== undefined) await guarded("text probes", () => tokenizerChecks(dev, vllmTokenizer(http, model!), add));
      return model;
    }
    case "sglang":
      await guarded("text probes", () => tokenizerChecks(dev, sglangTokenizer(http), add));
      return o.model;
    default: {
      const k: never = o.kind;
      throw new Error(`Unknown cloud kind ${JSON.stringify(k)}`);
    }
  }
}

/** The model a vLLM server serves: the one asked for if it serves it, else its first. */
async function servedVllmModel(http: Http, asked: string | undefined): Promise<string> {
  const list = await http.call("GET", "/v1/models");
  const served = (isObject(list) && Array.isArray(list.data) ? list.data : [])
    .map((m: unknown) => (isObject(m) ? m.id : undefined))
    .filter((id): id is string => typeof id === "string");
  if (served.length === 0) throw new Error("/v1/models lists no model");
  if (asked !== undefined && !served.includes(asked))
    throw new Error(`the server does not serve ${asked} (it serves ${served.join(", ")})`);
  return asked ?? served[0]!;
}

export async function runCloudCheck(o: CloudCheckOptions): Promise<CloudCheckReport> {
  const base = parseCloudUrl(o.url);
  const timeoutMs = o.timeoutMs ?? 15_000;
  const http = new Http(base, o.token, timeoutMs);
  const dev = o.device;
  const checks: CheckLine[] = [];
  const add = (c: CheckLine) => {
    checks.push(c);
    o.onCheck?.(c);
  };
  const servedModel = await vocabularyChecks(o, http, add);
  const next = await nextTokenCheck(o, timeoutMs);
  add(next);
  if (o.kind !== "tandem" && next.status === "PASS") add(await samplingDefaultsCheck(o, http, servedModel, timeoutMs));

  const failed = checks.some((c) => c.status === "FAIL");
  const verified = checks.some((c) => c.comparesVocabulary && (c.status === "PASS" || c.status === "WARN"));
  return {
    kind: o.kind,
    url: base,
    device: { name: dev.identity.name, vocabSize: dev.identity.vocabSize, realSize: dev.realSize, vocabHash: dev.identity.vocabHash },
    checks,
    result: failed ? "FAIL" : verified ? "PASS" : "UNVERIFIED",
  };
}

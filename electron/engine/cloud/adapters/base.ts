/**
 * Shared machinery of the adapters that use an existing serving engine (llama.cpp server, vLLM,
 * SGLang) as Tandem's cloud. Each engine is stateless per request: the adapter sends the whole token
 * history (token IDs, never text) and relies on the engine's prefix cache so that only the tokens it has
 * not seen are evaluated.
 *
 * The URL check, deadline, back-off, failure classification and reply validation are the ones every
 * cloud client shares (../callSupport.ts), so the adapters behave exactly as TandemCloudClient does.
 *
 * Vocabulary: token-level routing needs the same tokenizer on both sides. None of these engines exposes
 * a hash of its vocabulary. Each adapter verifies what its engine allows (see the adapter's header) and
 * otherwise refuses to connect unless the user confirms with `assumeSameVocabulary: true`.
 */
import { PROTOCOL_LIMITS, type ModelIdentity, type TokenLogprob } from "../../../../shared/protocol.js";
import { DEFAULT_DEADLINE_MS } from "../tandemClient.js";
import { CloudCallError, type CloudPeer, type CloudState, type CloudStats, type CloudStep } from "../peer.js";
import {
  CloudHealth,
  checkDraftReply,
  checkTokenReply,
  classifyFailure,
  cloudRequest,
  deadlineSignal,
  parseCloudUrl,
  type HealthOptions,
} from "../callSupport.js";
import { CloudLearning } from "../../cloudPolicy.js";
import { HttpError } from "../../../../shared/errors.js";
import { isGreedy, type SamplingSettings } from "../../../../shared/sampling.js";
import { drawAmong, type SampledNextOptions, type SamplingPlan } from "./sampling.js";

/** A sample text and the device tokenizer's IDs for it: the engine must tokenise it identically. */
export interface VocabularyProbe {
  text: string;
  tokens: number[];
  /**
   * Entries of the device vocabulary before its trailing `[PAD{i}]` entries (vocabulary.ts). An engine
   * whose vocabulary size differs from the device's but not below this differs only in padding
   * (Qwen2.5 0.5B: 151,936 entries, 32B: 152,064, both 151,665 real tokens) and is not refused for its
   * size alone; the probe text then decides.
   */
  paddedFrom?: number;
}

/**
 * Text covering several scripts, digits, whitespace runs and an emoji: two tokenizers that agree on it
 * are very likely the same (not a proof: only a hash of the whole vocabulary would be).
 */
export const PROBE_TEXT = "Hello, world! Tandem routes tokens: 1234567890 ÄÖÜ ß — 東京 こんにちは مرحبا 🙂\n\t  end.";

/** Builds the probe with the device model's tokenizer (e.g. `(t) => slm.model.tokenize(t, false)`). */
export function vocabularyProbe(tokenize: (text: string) => readonly number[], text = PROBE_TEXT): VocabularyProbe {
  return { text, tokens: [...tokenize(text)] };
}

export interface AdapterOptions extends HealthOptions {
  /** base URL of the engine, e.g. http://10.0.0.5:8080 */
  url: string;
  /** bearer token (API key), if the engine requires one */
  token?: string;
  /** deadline for one cloud call, ms (default 1.5 s, as TandemCloudClient) */
  deadlineMs?: number;
  /** top-k alternatives to ask for (0 = only the chosen token's log-probability) */
  topK?: number;
  /** device tokenisation of a sample text: compared with the engine's tokenisation where it can tokenise */
  probe?: VocabularyProbe;
  /**
   * The user confirms the engine serves a model with the device model's tokenizer (checked as in the
   * deployment guide). Required when the engine offers no way to verify it. A detected mismatch is
   * refused even so.
   */
  assumeSameVocabulary?: boolean;
}

/** Highest top-k asked from an engine (vLLM's default server cap is 20). */
export const MAX_ADAPTER_TOP_K = 20;

export interface EngineStep {
  tokenId: unknown;
  logprob: unknown;
  top: Array<{ tokenId: unknown; logprob: unknown }>;
  evaluated?: number;
  /** the tokens the engine generated after `tokenId`, when a continuation was asked for */
  draft?: unknown;
  /** ms the engine reports it spent generating one token, when it does */
  msPerGeneratedToken?: number;
  /** a "candidates" plan's answer: the engine's top-K after penalties at temperature 1 (weights ∝ probabilities) */
  candidates?: Array<{ tokenId: unknown; weight: unknown }>;
}

/** A sampled position: how the engine answers it (./sampling.ts) and the answer's settings. */
export interface SampledStep {
  plan: SamplingPlan;
  s: SamplingSettings;
}

/**
 * The status Tandem's own token server gives a context overflow (cloud/errors.ts: context_overflow →
 * 413). The adapters report an engine's overflow with it, as TandemCloudClient does, so the decoder
 * and the back-off see one kind of overflow whichever cloud answered: a 4xx, no back-off.
 */
export const CONTEXT_OVERFLOW_STATUS = 413;

/**
 * How each engine words a request beyond its context (all answer HTTP 400):
 * - llama.cpp server: `{"error": {"type": "exceed_context_size_error", "n_ctx": N, ...}}`, "request (M
 *   tokens) exceeds the available context size (N tokens)"
 * - vLLM: "... the model's context length is only N tokens ..." (renderers/params.py), older "This
 *   model's maximum context length is N tokens", the V1 engine "... longer than the maximum model
 *   length of N"
 * - SGLang: "The input (M tokens) is longer than the model's context length (N tokens)", "Requested
 *   token count exceeds the model's maximum context length of N tokens"
 */
const OVERFLOW_TEXT = /exceed_context_size_error|context (?:length|size)|maximum model length/i;
const CONTEXT_NUMBER = /(?:context (?:length|size)|maximum model length)\D{0,24}?(\d+)/i;

/** The context length an engine's overflow reply states, if it is one; null if it is not an overflow. */
export function contextOverflow(err: HttpError): { contextLength?: number } | null {
  if ((err.status !== 400 && err.status !== 413) || !OVERFLOW_TEXT.test(err.bodyText)) return null;
  let n: unknown;
  try {
    const j = JSON.parse(err.bodyText) as { error?: { n_ctx?: unknown } };
    n = j?.error?.n_ctx;
  } catch {
    // not JSON: the message decides
  }
  if (typeof n !== "number") n = Number(CONTEXT_NUMBER.exec(err.bodyText)?.[1]);
  return Number.isInteger(n) && (n as number) > 0 ? { contextLength: n as number } : {};
}

export function overflowError(kind: string, tokens: number, contextLength: number | undefined, engineSaid?: string): CloudCallError {
  const ctx = contextLength !== undefined ? ` (${contextLength} tokens)` : "";
  const said = engineSaid ? `; the engine answered ${engineSaid.slice(0, 200)}` : "";
  return new CloudCallError(
    "http",
    `cloud error: HTTP ${CONTEXT_OVERFLOW_STATUS} context_overflow: the conversation (${tokens} tokens) does not fit the ${kind} engine's context${ctx}${said}`,
    CONTEXT_OVERFLOW_STATUS,
  );
}

export abstract class EngineAdapter implements CloudPeer {
  abstract readonly kind: string;
  readonly stats: CloudStats = { calls: 0, failures: 0, bytesUp: 0, bytesDown: 0, sessions: 0 };
  readonly learnt = new CloudLearning();
  protected readonly base: string;
  protected readonly deadlineMs: number;
  protected readonly topK: number;
  protected device: ModelIdentity | undefined;
  /** the engine's context in tokens (prompt and generated), when it reports it or an overflow said it */
  protected contextLength: number | undefined;
  /** what the connect check established; shown to the user */
  vocabularyCheck = "not connected";
  private readonly health: CloudHealth;

  constructor(protected readonly opts: AdapterOptions) {
    this.base = parseCloudUrl(opts.url);
    this.deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
    this.topK = Math.max(0, Math.min(opts.topK ?? 0, MAX_ADAPTER_TOP_K));
    this.health = new CloudHealth(opts);
  }

  get state(): CloudState {
    return this.health.state;
  }

  /** Checks what the engine allows about the vocabulary; returns the identity to report. */
  protected abstract verify(device: ModelIdentity, signal: AbortSignal): Promise<ModelIdentity>;
  /**
   * One request: the engine's greedy next token after `history`, and with `draft` > 0 up to that
   * many more tokens of its greedy continuation (one generation request of 1 + draft tokens). With
   * `sampled`, one token only, answered as its plan says.
   */
  protected abstract step(history: readonly number[], signal: AbortSignal, draft: number, sampled?: SampledStep): Promise<EngineStep>;
  /**
   * How this engine answers a position sampled with `s` after `history` (never greedy settings);
   * throws `cannotSample` where it cannot answer reproducibly.
   */
  protected abstract samplingPlan(s: SamplingSettings, history: readonly number[]): SamplingPlan;

  async connect(device: ModelIdentity, signal?: AbortSignal): Promise<ModelIdentity> {
    this.device = device;
    const deadline = deadlineSignal(signal, Math.max(this.deadlineMs, 5000));
    try {
      const id = await this.verify(device, deadline);
      this.stats.sessions++;
      this.health.online();
      return id;
    } catch (err) {
      throw this.fail(err, deadline, signal);
    }
  }

  async next(history: readonly number[], signal?: AbortSignal, opts: SampledNextOptions = {}): Promise<CloudStep> {
    if (!this.device) throw new Error("connect() first");
    if (history.length === 0) throw new CloudCallError("malformed", "empty history");
    this.health.checkOpen();
    const t0 = performance.now();
    this.stats.calls++;
    const deadline = deadlineSignal(signal, this.deadlineMs);
    try {
      const s = opts.sampling;
      const sampled = s && !isGreedy(s) ? { plan: this.samplingPlan(s, history), s } : undefined;
      // a sampled call asks for no continuation (./sampling.ts)
      const asked = sampled ? 0 : Math.max(0, Math.min(Math.floor(opts.draft ?? 0), PROTOCOL_LIMITS.maxDraft));
      const { r, draft } = await this.stepWithinContext(history, deadline, asked, sampled);
      const v =
        sampled?.plan.how === "candidates"
          ? drawAmong(r.candidates ?? [], sampled.s, history.length, this.device.vocabSize, this.topK)
          : this.validate(r);
      const continuation = checkDraftReply(draft > 0 ? (r.draft ?? []) : undefined, draft, this.device.vocabSize);
      this.health.online();
      const perToken = r.msPerGeneratedToken;
      return {
        ...v,
        latencyMs: performance.now() - t0,
        evaluated: r.evaluated,
        ...(continuation.length > 0 ? { draft: continuation } : {}),
        ...(continuation.length > 0 && typeof perToken === "number" && Number.isFinite(perToken) && perToken >= 0
          ? { draftMs: perToken * continuation.length }
          : {}),
      };
    } catch (err) {
      this.stats.failures++;
      throw this.fail(err, deadline, signal);
    }
  }

  /**
   * One step that fits the engine's context: a continuation is cut to the room left (vLLM and SGLang
   * refuse a request whose prompt plus tokens to generate exceed it), a history that leaves no room is
   * an overflow without a request, and an overflow the engine reports teaches the context length, so a
   * request refused only for its continuation is sent once more without it.
   */
  private async stepWithinContext(
    history: readonly number[],
    signal: AbortSignal,
    asked: number,
    sampled: SampledStep | undefined,
  ): Promise<{ r: EngineStep; draft: number }> {
    for (let attempt = 0; ; attempt++) {
      const room = this.contextLength === undefined ? Infinity : this.contextLength - history.length;
      if (room < 1) throw overflowError(this.kind, history.length, this.contextLength);
      const draft = Math.min(asked, room - 1);
      try {
        return { r: await this.step(history, signal, draft, sampled), draft };
      } catch (err) {
        const o = err instanceof HttpError ? contextOverflow(err) : null;
        if (!o) throw err;
        if (o.contextLength !== undefined) this.contextLength = o.contextLength;
        const retry = attempt === 0 && draft > 0 && this.contextLength !== undefined && this.contextLength - history.length > 0;
        if (!retry) throw overflowError(this.kind, history.length, this.contextLength, (err as HttpError).message);
      }
    }
  }

  async close(): Promise<void> {
    // engines keep no per-conversation state we own; the prefix cache ages out on its own
  }

  /** Refuses a connection no check could vouch for, unless the user confirmed the vocabulary. */
  protected requireConfirmation(verifiedBy: string[], cannot: string): void {
    if (verifiedBy.length > 0) {
      this.vocabularyCheck = `verified: ${verifiedBy.join("; ")}`;
      return;
    }
    if (!this.opts.assumeSameVocabulary) {
      throw new CloudCallError(
        "vocab_mismatch",
        `${this.kind}: cannot verify that the engine uses the device model's vocabulary (${cannot}); ` +
          `check it as the deployment guide says and pass assumeSameVocabulary: true`,
      );
    }
    this.vocabularyCheck = `confirmed by the user (not verifiable: ${cannot})`;
  }

  protected mismatch(detail: string): CloudCallError {
    return new CloudCallError(
      "vocab_mismatch",
      `Vocabulary mismatch between the device model ${this.device?.name} and the ${this.kind} engine: ${detail}`,
    );
  }

  private validate(r: EngineStep): { tokenId: number; logprob: number; top: TokenLogprob[] } {
    const v = checkTokenReply(r, this.device!.vocabSize);
    return { ...v, top: v.top.slice(0, this.topK) };
  }

  protected async getJson(path: string, signal: AbortSignal): Promise<unknown> {
    return this.request("GET", path, undefined, signal);
  }

  protected async postJson(path: string, body: unknown, signal: AbortSignal): Promise<unknown> {
    return this.request("POST", path, body, signal);
  }

  private async request(method: string, path: string, body: unknown, signal: AbortSignal): Promise<unknown> {
    const res = await cloudRequest(this.base + path, method, body, this.opts.token, signal, this.stats);
    const text = res.text;
    if (!res.ok) throw new HttpError(res.status, text);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new CloudCallError("malformed", `the cloud sent malformed JSON (HTTP ${res.status})`);
    }
    if (json === null || typeof json !== "object") throw new CloudCallError("malformed", "the cloud sent a non-object reply");
    return json;
  }

  /** Classifies a failure, updates the cloud's health, and returns the error to throw. */
  private fail(err: unknown, deadline: AbortSignal, userSignal?: AbortSignal): Error {
    if (userSignal?.aborted) return new CloudCallError("aborted", "aborted");
    const e =
      err instanceof HttpError
        ? new CloudCallError("http", `cloud error: ${err.message}`, err.status)
        : classifyFailure(err, deadline, this.deadlineMs);
    this.health.failed(e);
    return e;
  }
}

/** The probe check shared by engines with a tokenize endpoint. */
export function sameTokens(a: unknown, b: readonly number[]): boolean {
  return Array.isArray(a) && a.length === b.length && a.every((t, i) => t === b[i]);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

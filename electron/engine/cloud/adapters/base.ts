/**
 * Shared machinery of the adapters that use an existing serving engine (llama.cpp server, vLLM,
 * SGLang) as Tandem's cloud. Each engine is stateless per request: the adapter sends the whole token
 * history (token IDs, never text) and relies on the engine's prefix cache so that only the tokens it has
 * not seen are evaluated.
 *
 * Deadline, back-off and failure classification follow TandemCloudClient (tandemClient.ts). Its
 * helpers (`fail`, `request`, `ServerError`) are private there, so the minimal logic is copied here;
 * `commonPrefixLength` and `DEFAULT_DEADLINE_MS` are imported.
 *
 * Vocabulary: token-level routing needs the same tokenizer on both sides. None of these engines exposes
 * a hash of its vocabulary. Each adapter verifies what its engine allows (see the adapter's header) and
 * otherwise refuses to connect unless the user confirms with `assumeSameVocabulary: true`.
 */
import type { ModelIdentity, TokenLogprob } from "../../../../shared/protocol.js";
import { DEFAULT_DEADLINE_MS } from "../tandemClient.js";
import { CloudCallError, type CloudPeer, type CloudState, type CloudStats, type CloudStep } from "../peer.js";

/** A sample text and the device tokenizer's IDs for it: the engine must tokenise it identically. */
export interface VocabularyProbe {
  text: string;
  tokens: number[];
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

export interface AdapterOptions {
  /** base URL of the engine, e.g. http://10.0.0.5:8080 */
  url: string;
  /** bearer token (API key), if the engine requires one */
  token?: string;
  /** deadline for one cloud call, ms (default 1.5 s, as TandemCloudClient) */
  deadlineMs?: number;
  /** top-k alternatives to ask for (0 = only the chosen token's log-probability) */
  topK?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
  onStateChange?: (state: CloudState, detail?: string) => void;
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
}

/** An error status from the engine (the body is kept for the message). */
export class EngineHttpError extends Error {
  constructor(
    readonly status: number,
    readonly bodyText: string,
  ) {
    super(`HTTP ${status}${bodyText ? `: ${bodyText.slice(0, 200)}` : ""}`);
  }
}

export abstract class EngineAdapter implements CloudPeer {
  abstract readonly kind: string;
  readonly stats: CloudStats = { calls: 0, failures: 0, bytesUp: 0, bytesDown: 0, sessions: 0 };
  protected readonly base: string;
  protected readonly deadlineMs: number;
  protected readonly topK: number;
  protected device: ModelIdentity | undefined;
  /** what the connect check established; shown to the user */
  vocabularyCheck = "not connected";
  private currentState: CloudState = "unknown";
  private retryAt = 0;
  private backoff: number;

  constructor(protected readonly opts: AdapterOptions) {
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      throw new Error(`Invalid cloud URL: ${JSON.stringify(opts.url)}`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`Cloud URL must be http(s): ${opts.url}`);
    this.base = u.toString().replace(/\/$/, "");
    this.deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
    this.topK = Math.max(0, Math.min(opts.topK ?? 0, MAX_ADAPTER_TOP_K));
    this.backoff = opts.backoffMs ?? 1000;
  }

  get state(): CloudState {
    return this.currentState;
  }

  /** Checks what the engine allows about the vocabulary; returns the identity to report. */
  protected abstract verify(device: ModelIdentity, signal: AbortSignal): Promise<ModelIdentity>;
  /** One request: the engine's greedy next token after `history`. */
  protected abstract step(history: readonly number[], signal: AbortSignal): Promise<EngineStep>;

  async connect(device: ModelIdentity, signal?: AbortSignal): Promise<ModelIdentity> {
    this.device = device;
    const deadline = this.deadlineSignal(signal, Math.max(this.deadlineMs, 5000));
    try {
      const id = await this.verify(device, deadline);
      this.stats.sessions++;
      this.markOnline();
      return id;
    } catch (err) {
      throw this.fail(err, deadline, signal);
    }
  }

  async next(history: readonly number[], signal?: AbortSignal): Promise<CloudStep> {
    if (!this.device) throw new Error("connect() first");
    if (history.length === 0) throw new CloudCallError("malformed", "empty history");
    if (Date.now() < this.retryAt) {
      throw new CloudCallError("offline", `cloud offline, retrying in ${Math.ceil((this.retryAt - Date.now()) / 1000)} s`);
    }
    const t0 = performance.now();
    this.stats.calls++;
    const deadline = this.deadlineSignal(signal, this.deadlineMs);
    try {
      const r = await this.step(history, deadline);
      const v = this.validate(r);
      this.markOnline();
      return { ...v, latencyMs: performance.now() - t0, evaluated: r.evaluated };
    } catch (err) {
      this.stats.failures++;
      throw this.fail(err, deadline, signal);
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
    return new CloudCallError("vocab_mismatch", `Vocabulary mismatch between the device model ${this.device?.name} and the ${this.kind} engine: ${detail}`);
  }

  private validate(r: EngineStep): { tokenId: number; logprob: number; top: TokenLogprob[] } {
    const vocab = this.device!.vocabSize;
    const okToken = (t: unknown): t is number => Number.isInteger(t) && (t as number) >= 0 && (t as number) < vocab;
    const okLogprob = (l: unknown): l is number => typeof l === "number" && Number.isFinite(l) && l <= 1e-6;
    if (!okToken(r.tokenId)) throw new CloudCallError("malformed", `the cloud returned token ${JSON.stringify(r.tokenId)}, outside the vocabulary`);
    if (!okLogprob(r.logprob)) throw new CloudCallError("malformed", "the cloud returned an invalid log-probability");
    if (!Array.isArray(r.top) || !r.top.every((c) => okToken(c?.tokenId) && okLogprob(c?.logprob))) {
      throw new CloudCallError("malformed", "the cloud returned invalid top-k entries");
    }
    const top = (r.top as TokenLogprob[]).slice(0, this.topK).map((c) => ({ tokenId: c.tokenId, logprob: c.logprob }));
    return { tokenId: r.tokenId, logprob: r.logprob, top };
  }

  protected async getJson(path: string, signal: AbortSignal): Promise<unknown> {
    return this.request("GET", path, undefined, signal);
  }

  protected async postJson(path: string, body: unknown, signal: AbortSignal): Promise<unknown> {
    return this.request("POST", path, body, signal);
  }

  private async request(method: string, path: string, body: unknown, signal: AbortSignal): Promise<unknown> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    if (payload) this.stats.bytesUp += Buffer.byteLength(payload);
    const headers: Record<string, string> = {};
    if (payload) headers["content-type"] = "application/json";
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    let res: Response;
    try {
      res = await fetch(this.base + path, { method, headers, body: payload, signal });
    } catch (err) {
      if (signal.aborted) throw err;
      const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
      throw new CloudCallError("unreachable", `cloud unreachable: ${cause?.code ?? cause?.message ?? (err as Error)?.message}`);
    }
    const text = await res.text();
    this.stats.bytesDown += Buffer.byteLength(text);
    if (!res.ok) throw new EngineHttpError(res.status, text);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new CloudCallError("malformed", `the cloud sent malformed JSON (HTTP ${res.status})`);
    }
    if (json === null || typeof json !== "object") throw new CloudCallError("malformed", "the cloud sent a non-object reply");
    return json;
  }

  private deadlineSignal(signal: AbortSignal | undefined, ms: number): AbortSignal {
    const t = AbortSignal.timeout(ms);
    return signal ? AbortSignal.any([signal, t]) : t;
  }

  /** Classifies a failure, updates the back-off, and returns the error to throw (as TandemCloudClient). */
  private fail(err: unknown, deadline: AbortSignal, userSignal?: AbortSignal): Error {
    if (userSignal?.aborted) return new CloudCallError("aborted", "aborted");
    let e: CloudCallError;
    if (err instanceof CloudCallError) e = err;
    else if (err instanceof EngineHttpError) e = new CloudCallError("http", `cloud error: ${err.message}`, err.status);
    else if (deadline.aborted) e = new CloudCallError("timeout", `no answer from the cloud within ${this.deadlineMs} ms`);
    else e = new CloudCallError("unreachable", `cloud call failed: ${(err as Error)?.message ?? String(err)}`);
    if (e.reason === "vocab_mismatch") return e;
    // a 4xx other than rate limiting is our request's fault, not the cloud's health: no back-off
    if (e.reason === "http" && (e.status ?? 0) < 500 && e.status !== 429) return e;
    this.retryAt = Date.now() + this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoffMs ?? 15_000);
    this.setState("offline", e.message);
    return e;
  }

  private markOnline(): void {
    this.backoff = this.opts.backoffMs ?? 1000;
    this.retryAt = 0;
    this.setState("online");
  }

  private setState(s: CloudState, detail?: string): void {
    if (s === this.currentState) return;
    this.currentState = s;
    this.opts.onStateChange?.(s, detail);
  }
}

/** The probe check shared by engines with a tokenize endpoint. */
export function sameTokens(a: unknown, b: readonly number[]): boolean {
  return Array.isArray(a) && a.length === b.length && a.every((t, i) => t === b[i]);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

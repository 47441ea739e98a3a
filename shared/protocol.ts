/**
 * The cloud token protocol (version 1): what the device's cloud client and the cloud token server say
 * to each other over HTTP + JSON. Token IDs only, never text: a text round trip is not invertible
 * (detokenise → tokenise can change the tokens), and sending text would make the server re-tokenise.
 *
 * A session mirrors one conversation's token history in one KV-cached sequence on the server. The
 * client tracks how many tokens the server holds (`length`) and sends only the tokens after them
 * (the delta). `base` says where the delta starts: base < length truncates the server's copy first
 * (rollback), base > length is refused with `out_of_sync` (the client resends from `length`).
 *
 *   GET    /health                      → HealthResponse                       (no auth)
 *   POST   /v1/sessions                 CreateSessionRequest → CreateSessionResponse
 *   POST   /v1/sessions/:id/next        NextRequest  → NextResponse   (apply delta, predict next token)
 *   POST   /v1/sessions/:id/append      AppendRequest → AppendResponse (apply delta only; background sync)
 *   POST   /v1/sessions/:id/truncate    TruncateRequest → AppendResponse
 *   DELETE /v1/sessions/:id             → { ok: true }
 *
 * Every request but /health carries `Authorization: Bearer <token>` unless the server was started
 * without a token on loopback. Every error is `ErrorBody` with a stable `code`.
 */

export const PROTOCOL_VERSION = 1;

/** Bounds the server enforces; the client stays within them. */
export const PROTOCOL_LIMITS = {
  /** largest request body, bytes */
  maxBodyBytes: 1 << 20,
  /** most tokens one delta may carry (a longer history is sent in several appends) */
  maxDeltaTokens: 16_384,
  /** most top-k log-probabilities the server returns */
  maxTopK: 20,
  /** most continuation tokens one /next may ask for (`NextRequest.draft`) */
  maxDraft: 16,
} as const;

export interface ModelIdentity {
  /** human-readable model name (general.name or the file name) */
  name: string;
  /** sha256 of the vocabulary (tokenizer.ggml.tokens), hex */
  vocabHash: string;
  vocabSize: number;
}

export interface HealthResponse {
  ok: true;
  protocol: number;
  model: ModelIdentity;
  sessions: number;
  maxSessions: number;
  /** tokens per session the server can hold */
  contextSize: number;
}

export interface CreateSessionRequest {
  protocol: number;
  /** the device model's identity: the server refuses a different vocabulary */
  client: ModelIdentity;
}

export interface CreateSessionResponse {
  sessionId: string;
  model: ModelIdentity;
  contextSize: number;
}

export interface AppendRequest {
  /** number of leading server tokens the delta continues from */
  base: number;
  /** token IDs to append after `base` */
  tokens: number[];
  /**
   * `prefixHash` of the client's first `base` tokens: a server holding other tokens there answers
   * out_of_sync instead of continuing the wrong text. Needed once a session can hold tokens the
   * client did not commit (a continuation, a call on guessed text) and requests can overtake each
   * other on the way.
   */
  prefix?: string;
}

/** Fingerprint of the first `length` tokens (FNV-1a in two 32-bit lanes, 16 hex digits). */
export function prefixHash(tokens: ArrayLike<number>, length = tokens.length): string {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ length;
  for (let i = 0; i < length; i++) {
    const t = tokens[i]!;
    a = Math.imul(a ^ (t & 0xffff), 0x01000193) >>> 0;
    a = Math.imul(a ^ (t >>> 16), 0x01000193) >>> 0;
    b = Math.imul(b ^ t, 0x5bd1e995) >>> 0;
    b = (b ^ (b >>> 15)) >>> 0;
  }
  return a.toString(16).padStart(8, "0") + b.toString(16).padStart(8, "0");
}

export interface AppendResponse {
  /** tokens the server's session now holds */
  length: number;
  /** tokens the LLM evaluated for this request (the delta, plus one when it had to re-read the last) */
  evaluated: number;
}

export interface NextRequest extends AppendRequest {
  /** how many top alternatives to return with log-probabilities (0..maxTopK) */
  topK?: number;
  /**
   * How many more tokens of the LLM's greedy continuation to return after the predicted one
   * (0..maxDraft, default 0): a verified continuation. The device accepts them where its own router
   * would also have sent those positions to the cloud (or where the SLM agrees), so clustered cloud
   * positions cost one round trip. The server keeps them evaluated: a device that accepts them sends
   * nothing more for them; one that does not sends a `base` that truncates them.
   */
  draft?: number;
  /**
   * Whether to return the predicted token's log-probability (default true). false: the token only, and
   * no top-k. A log-probability costs the server a sort of the whole vocabulary per call through
   * node-llama-cpp (~12 ms of CPU on Qwen's 152k), which bounds how many calls a server answers.
   */
  logprob?: boolean;
}

export interface TokenLogprob {
  tokenId: number;
  logprob: number;
}

export interface NextResponse extends AppendResponse {
  /** the LLM's greedy next token after the session's tokens */
  tokenId: number;
  /** absent when the request said `logprob: false` */
  logprob?: number;
  top: TokenLogprob[];
  /**
   * When `draft` was asked for: the LLM's greedy continuation after `tokenId` (it may stop early, at
   * an end-of-generation token or the session's capacity). Token IDs only: a log-probability costs a
   * sort of the whole vocabulary per token in node-llama-cpp, the price of the draft itself. The
   * session then holds `tokenId` and every draft token but the last (`length` says so).
   */
  draft?: number[];
  /** ms the server spent on the continuation: lets the device judge whether asking for one pays */
  draftMs?: number;
}

export interface TruncateRequest {
  length: number;
}

export type ErrorCode =
  | "unauthorized"
  | "bad_request"
  | "payload_too_large"
  | "not_found"
  | "session_not_found"
  | "vocab_mismatch"
  | "protocol_mismatch"
  | "out_of_sync"
  | "context_overflow"
  | "too_many_sessions"
  | "rate_limited"
  | "internal";

export interface ErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    /** for out_of_sync: the length the server holds */
    length?: number;
    /** for out_of_sync: the tokens before `base` are not the ones the client believes (`prefix`) */
    prefixMismatch?: true;
  };
}

/** Narrow runtime check of a JSON value's shape: a misbehaving server must not crash the client. */
export function isTokenArray(v: unknown, vocabSize: number): v is number[] {
  return Array.isArray(v) && v.every((t) => Number.isInteger(t) && t >= 0 && t < vocabSize);
}

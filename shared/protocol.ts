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
 *   POST   /v1/sessions/:id/route       RouteRequest → NDJSON stream of RouteLine (servers with an SLM replica)
 *   POST   /v1/sessions/:id/router      a router network for the replica → RouterUploadResponse
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
  /** most positions one /route stream may cover (`RouteRequest.max`) */
  maxRoute: 512,
  /** largest reply body a client reads (a /route stream is bounded by its lines), bytes */
  maxReplyBytes: 1 << 20,
} as const;

export interface ModelIdentity {
  /** human-readable model name (general.name or the file name) */
  name: string;
  /** sha256 of the vocabulary (tokenizer.ggml.tokens), hex */
  vocabHash: string;
  vocabSize: number;
  /**
   * Fingerprint of the weights file (`weightsFingerprint`): set for the device's SLM, so a server
   * whose SLM replica is another file (same vocabulary, other weights) is not used as one.
   */
  weights?: string;
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
  /** the SLM this server can replicate for /route (absent: the server has none) */
  replica?: ReplicaInfo;
}

/**
 * A server started with the device's SLM beside its LLM keeps a replica of the device's routed decoding
 * (/route): it can then answer not one routed position per round trip but every routed position of a
 * stretch of the answer, streaming them as it makes them, while the device verifies them.
 */
export interface ReplicaInfo {
  /** the SLM it runs, with `weights` set: the device uses the replica only if this is its own SLM */
  model: ModelIdentity;
  /** routers it can run: "confidence" (the SLM's top-1 probability), "mlp" (a router network the session uploaded) */
  routers: ReplicaRouterKind[];
}

export type ReplicaRouterKind = "confidence" | "mlp";

/**
 * The router the replica decides with: the device's own, so both make the same decisions.
 * "mlp": a router file's network (`RouterUpload`), uploaded to the session first; `digest` names it.
 */
export type ReplicaRouter = { kind: "confidence" } | { kind: "mlp"; digest: string };

/**
 * POST /v1/sessions/:id/router: a router network for the session's replica (a Tandem router file,
 * without its training record: format, version, slm, features, network). The answer names it by digest.
 */
export interface RouterUploadResponse {
  digest: string;
}

/**
 * The device's routed decoding continued on the server, from the position after the session's tokens
 * (after the delta): the LLM's greedy token there (the device routed it), then position after position
 * the replica SLM's step, the device's router on it, and, where that router routes, the LLM's greedy
 * token (the LLM reads the positions in between in one batch), else the SLM's. Each position is a
 * line as soon as it is decided. The device accepts each routed position whose preceding tokens are
 * exactly its own and where its own router routes too: the LLM's token after exactly that history is
 * what a call would have returned, so the answer is the blocking client's, with one round trip for
 * the stretch instead of one per routed position.
 *
 * The stream ends after `max` positions, an end-of-generation token, a full session or replica, when
 * the client closes the connection, or at once when another request for the session arrives (the
 * device sends one when its own tokens leave the replica's: the server's copy is then truncated by
 * that request's `base` as usual).
 */
export interface RouteRequest extends AppendRequest {
  /** τ: the replica routes positions whose router confidence is below it */
  tau: number;
  router: ReplicaRouter;
  /** the answer position of the first routed position (routers may read it) */
  position: number;
  /** most positions to cover, the first included (1..maxRoute) */
  max: number;
}

/**
 * One line of the /route stream (NDJSON). Positions: `{ tokenId, routed }`, in order from the first;
 * `routed` says whose token it is (the LLM's where true). The last line: `{ end, length }`, with
 * `length` the tokens the session's LLM has read (the history, and the stream's tokens before its last
 * routed position). An error after the stream began is a last line `{ error }` instead.
 */
export type RouteLine =
  | { tokenId: number; routed: boolean }
  | { end: RouteEnd; length: number }
  | { error: ErrorBody["error"] };

/** "replica-busy": the replica could not follow (every slot busy, or a history longer than a slot holds) */
export type RouteEnd = "max" | "eog" | "full" | "preempted" | "replica-busy";


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
  | "no_replica"
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

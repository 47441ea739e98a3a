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
 *   POST   /v1/sessions/:id/forget      ForgetRequest → ForgetResponse (delete, confirmed: the user's Forget)
 *
 * Every request but /health carries `Authorization: Bearer <token>` unless the server was started
 * without a token on loopback. Every error is `ErrorBody` with a stable `code`.
 */

import { z } from "zod";
import { samplingWireSchema } from "./sampling.js";

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

// ---------------------------------------------------------------------------------------------------
// Each message is a zod schema with its type derived from it (`z.infer`), used by both ends: the
// server parses requests with them (cloud/validate.ts), the device's client parses replies with them
// (electron/engine/cloud/*). Schemas that depend on the vocabulary (token IDs must lie in it) are
// functions of its size. Unknown fields are stripped, so a newer peer may add optional fields.

/**
 * A schema factory that builds each schema once per argument list: zod compiles a schema on its first
 * parse (about 4 ms for a /next reply), which per request would cost more than the request.
 */
function memo<A extends unknown[], R>(make: (...args: A) => R): (...args: A) => R {
  const made = new Map<string, R>();
  return (...args: A) => {
    const key = args.map(String).join("|");
    let schema = made.get(key);
    if (schema === undefined) {
      if (made.size >= 64) made.clear(); // a few vocabularies and draft lengths in practice
      schema = make(...args);
      made.set(key, schema);
    }
    return schema;
  };
}

/** Pieces of messages, and how they say what is wrong (short, never echoing a value at length). */
const integer = (min: number, max = Number.MAX_SAFE_INTEGER) => {
  const error = (iss: { input?: unknown }) => `must be an integer in [${min}, ${max}], got ${describeValue(iss.input)}`;
  return z.int({ error }).min(min, { error }).max(max, { error });
};
const hex = (digits: number, what: string) =>
  z
    .string({ error: `must be ${what} (${digits} hex digits)` })
    .regex(new RegExp(`^[0-9a-fA-F]{${digits}}$`), { error: `must be ${what} (${digits} hex digits)` });
const object = <T extends z.core.$ZodLooseShape>(shape: T) => z.object(shape, { error: "must be a JSON object" });

/** Whether `t` is a token ID of a vocabulary of `vocabSize`. */
export function isTokenId(t: unknown, vocabSize: number): t is number {
  return typeof t === "number" && Number.isInteger(t) && t >= 0 && t < vocabSize;
}

/**
 * Token IDs of the vocabulary, at most `max`. One check over the array that stops at the first bad
 * element: an issue per element would be half a million objects for a 1 MB body of bad tokens.
 */
function tokenIdsSchemaOf(vocabSize: number, max: number = PROTOCOL_LIMITS.maxDeltaTokens) {
  return z.custom<number[]>().superRefine((v, ctx) => {
    if (!Array.isArray(v)) return void ctx.addIssue({ code: "custom", message: "must be an array of token IDs", input: v });
    if (v.length > max)
      return void ctx.addIssue({ code: "custom", message: `carries ${v.length} tokens; at most ${max} per message`, input: v });
    for (let i = 0; i < v.length; i++) {
      if (!isTokenId(v[i], vocabSize))
        return void ctx.addIssue({
          code: "custom",
          path: [i],
          message: `= ${describeValue(v[i])} is not a token ID in [0, ${vocabSize})`,
          input: v[i],
        });
    }
  });
}
export const tokenIdsSchema = memo(tokenIdsSchemaOf);

export const ModelIdentitySchema = object({
  /** human-readable model name (general.name or the file name) */
  name: z
    .string({ error: "must be a string of 1 to 512 characters" })
    .min(1, { error: "must be a string of 1 to 512 characters" })
    .max(512, { error: "must be a string of 1 to 512 characters" }),
  /** sha256 of the vocabulary (tokenizer.ggml.tokens), hex (lowercased on parsing) */
  vocabHash: hex(64, "a sha256 digest").transform((h) => h.toLowerCase()),
  vocabSize: integer(1),
  /**
   * Fingerprint of the weights file (`weightsFingerprint`): set for the device's SLM, so a server
   * whose SLM replica is another file (same vocabulary, other weights) is not used as one.
   */
  weights: z.string().max(256).optional(),
});
export type ModelIdentity = z.infer<typeof ModelIdentitySchema>;

export interface HealthResponse {
  ok: true;
  protocol: number;
  model: ModelIdentity;
  sessions: number;
  maxSessions: number;
  /** tokens per session the server can hold */
  contextSize: number;
}

export const CreateSessionRequestSchema = object({
  /** checked first by the server: a client of another version may shape everything else differently */
  protocol: integer(0),
  /** the device model's identity: the server refuses a different vocabulary */
  client: ModelIdentitySchema,
});
export type CreateSessionRequest = z.infer<typeof CreateSessionRequestSchema>;

export const REPLICA_ROUTER_KINDS = ["confidence", "mlp"] as const;
export type ReplicaRouterKind = (typeof REPLICA_ROUTER_KINDS)[number];

/**
 * A server started with the device's SLM beside its LLM keeps a replica of the device's routed decoding
 * (/route): it can then answer not one routed position per round trip but every routed position of a
 * stretch of the answer, streaming them as it makes them, while the device verifies them.
 */
export const ReplicaInfoSchema = object({
  /** the SLM it runs, with `weights` set: the device uses the replica only if this is its own SLM */
  model: ModelIdentitySchema,
  /** routers it can run: "confidence" (the SLM's top-1 probability), "mlp" (a router network the session uploaded); kinds unknown to this side are dropped */
  routers: z
    .array(z.string())
    .max(16)
    .transform((ks) => ks.filter((k): k is ReplicaRouterKind => (REPLICA_ROUTER_KINDS as readonly string[]).includes(k))),
});
export type ReplicaInfo = z.infer<typeof ReplicaInfoSchema>;

/** Session IDs travel in URL paths: a server's must be a plain word (a UUID from ours). */
const SESSION_ID = /^[A-Za-z0-9_-]{1,128}$/;

export const CreateSessionResponseSchema = object({
  sessionId: z.string().regex(SESSION_ID, { error: "must be a plain identifier" }),
  model: ModelIdentitySchema,
  contextSize: integer(1),
  /** the SLM this server can replicate for /route (absent: the server has none; a malformed one counts as none) */
  replica: ReplicaInfoSchema.optional().catch(undefined),
});
export type CreateSessionResponse = z.infer<typeof CreateSessionResponseSchema>;

/**
 * The router the replica decides with: the device's own, so both make the same decisions.
 * "mlp": a router file's network (`RouterUpload`), uploaded to the session first; `digest` names it.
 */
export const ReplicaRouterSchema = z.discriminatedUnion(
  "kind",
  [
    z.object({ kind: z.literal("confidence") }),
    z.object({
      kind: z.literal("mlp"),
      digest: z.string().regex(/^[0-9a-f]{64}$/, { error: "must be the sha256 the router upload answered with (64 lowercase hex digits)" }),
    }),
  ],
  {
    error: (iss) =>
      iss.code === "invalid_union"
        ? `must be "confidence" or "mlp", got ${describeValue((iss.input as { kind?: unknown } | undefined)?.kind)}`
        : "must be a JSON object",
  },
);
export type ReplicaRouter = z.infer<typeof ReplicaRouterSchema>;

/**
 * POST /v1/sessions/:id/router: a router network for the session's replica (a Tandem router file,
 * without its training record: format, version, slm, features, network). Every field is type-checked
 * here; the sizes must chain (`weights[l]` is sizes[l] × sizes[l+1] float32 values, base64) and end in
 * one output. Other fields (`llm`, `training`, `seen`) are ignored.
 */
export const RouterUploadSchema = object({
  format: z.literal("tandem-router", { error: 'must be "tandem-router"' }),
  version: z.literal(1, { error: "must be 1 (the router file format this server reads)" }),
  slm: object({
    name: z.string({ error: "must be a string" }).max(512, { error: "must be at most 512 characters" }),
    vocabHash: hex(64, "a sha256 digest"),
    hiddenSize: integer(1, 1 << 16),
    vocabSize: integer(1).optional(),
  }),
  features: object({
    hidden: z.boolean({ error: "must be true or false" }),
    top1: z.boolean({ error: "must be true or false" }),
    dist: z.boolean({ error: "must be true or false" }),
    topK: integer(0, 64),
  }),
  network: object({
    sizes: z
      .array(integer(1, 1 << 16), { error: "must be an array of layer widths" })
      .min(2, { error: "must name at least 2 layers" })
      .max(16, { error: "must name at most 16 layers" }),
    weights: z.array(z.string({ error: "must be base64 float32 values" }), { error: "must be an array of base64 strings" }).max(15),
    biases: z.array(z.string({ error: "must be base64 float32 values" }), { error: "must be an array of base64 strings" }).max(15),
    mean: z.string({ error: "must be base64 float32 values" }),
    std: z.string({ error: "must be base64 float32 values" }),
  }).superRefine((n, ctx) => {
    const layers = n.sizes.length - 1;
    if (n.sizes[layers] !== 1)
      ctx.addIssue({ code: "custom", path: ["sizes"], message: `must end in 1 (one output), got ${n.sizes[layers]}` });
    if (n.weights.length !== layers || n.biases.length !== layers)
      ctx.addIssue({ code: "custom", message: `must have ${layers} weight and bias arrays for ${n.sizes.length} sizes` });
  }),
});
export type RouterUpload = z.infer<typeof RouterUploadSchema>;

export const RouterUploadResponseSchema = object({
  digest: z.string().regex(/^[0-9a-f]{64}$/, { error: "must be a sha256 in lowercase hex" }),
});
export type RouterUploadResponse = z.infer<typeof RouterUploadResponseSchema>;

const PREFIX = z.string({ error: "must be 16 lowercase hex digits" }).regex(/^[0-9a-f]{16}$/, { error: "must be 16 lowercase hex digits" });

function appendRequestSchemaOf(vocabSize: number) {
  return object({
    /** number of leading server tokens the delta continues from */
    base: integer(0),
    /** token IDs to append after `base` */
    tokens: tokenIdsSchema(vocabSize),
    /**
     * `prefixHash` of the client's first `base` tokens: a server holding other tokens there answers
     * out_of_sync instead of continuing the wrong text. Needed once a session can hold tokens the
     * client did not commit (a continuation, a call on guessed text) and requests can overtake each
     * other on the way.
     */
    prefix: PREFIX.optional(),
  });
}
export const appendRequestSchema = memo(appendRequestSchemaOf);
export type AppendRequest = z.infer<ReturnType<typeof appendRequestSchema>>;

function nextRequestSchemaOf(vocabSize: number) {
  return appendRequestSchema(vocabSize)
    .extend({
      /** how many top alternatives to return with log-probabilities (0..maxTopK) */
      topK: integer(0, PROTOCOL_LIMITS.maxTopK).optional(),
      /**
       * How many more tokens of the LLM's greedy continuation to return after the predicted one
       * (0..maxDraft, default 0): a verified continuation. The device accepts them where its own router
       * would also have sent those positions to the cloud (or where the SLM agrees), so clustered cloud
       * positions cost one round trip. The server keeps them evaluated: a device that accepts them sends
       * nothing more for them; one that does not sends a `base` that truncates them.
       */
      draft: integer(0, PROTOCOL_LIMITS.maxDraft).optional(),
      /**
       * Whether to return the predicted token's log-probability (default true). false: the token only, and
       * no top-k. A log-probability costs the server a sort of the whole vocabulary per call through
       * node-llama-cpp (~12 ms of CPU on Qwen's 152k), which bounds how many calls a server answers.
       */
      logprob: z.boolean({ error: "must be true or false" }).optional(),
      /**
       * Draw the token, and each continuation token, with these settings (shared/sampling.ts): each at
       * its position with the number keyed by (seed, position), so a continuation's token is what a call
       * at that history returns. Absent: greedy. With it, `logprob` is the drawn token's in the
       * distribution it was drawn from, and `top` is empty: the LLM's distribution is never sent. The
       * fields at their "off" value may be left out (shared/sampling.ts SAMPLING_OFF).
       */
      sampling: samplingWireSchema.optional(),
    })
    .refine((r) => r.logprob !== false || !r.topK, { error: "needs logprob (the alternatives are log-probabilities)", path: ["topK"] });
}
export const nextRequestSchema = memo(nextRequestSchemaOf);
export type NextRequest = z.infer<ReturnType<typeof nextRequestSchema>>;
/** A /next body as sent (the sampling settings compact: `compactSampling`) */
export type NextRequestBody = z.input<ReturnType<typeof nextRequestSchema>>;

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
function routeRequestSchemaOf(vocabSize: number) {
  return appendRequestSchema(vocabSize).extend({
    /** τ: the replica routes positions whose router confidence is below it */
    tau: z
      .number({ error: (iss) => `must be a number in [0, 1], got ${describeValue(iss.input)}` })
      .min(0, { error: (iss) => `must be a number in [0, 1], got ${describeValue(iss.input)}` })
      .max(1, { error: (iss) => `must be a number in [0, 1], got ${describeValue(iss.input)}` }),
    router: ReplicaRouterSchema,
    /** the answer position of the first routed position (routers may read it) */
    position: integer(0),
    /** most positions to cover, the first included (1..maxRoute) */
    max: integer(1, PROTOCOL_LIMITS.maxRoute),
    /** how the answer is sampled (absent: greedy): the replica's SLM and the LLM draw as the device does */
    sampling: samplingWireSchema.optional(),
  });
}
export const routeRequestSchema = memo(routeRequestSchemaOf);
export type RouteRequest = z.infer<ReturnType<typeof routeRequestSchema>>;
/** A /route body as sent (the sampling settings compact: `compactSampling`) */
export type RouteRequestBody = z.input<ReturnType<typeof routeRequestSchema>>;

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

export const AppendResponseSchema = object({
  /** tokens the server's session now holds */
  length: integer(0),
  /** tokens the LLM evaluated for this request (the delta, plus one when it had to re-read the last) */
  evaluated: integer(0),
});
export type AppendResponse = z.infer<typeof AppendResponseSchema>;

/** A log-probability: finite and ≤ 0 (a tiny positive rounding error allowed). */
export const LogprobSchema = z
  .number({ error: "must be a finite log-probability ≤ 0" })
  .max(1e-6, { error: "must be a finite log-probability ≤ 0" });

function tokenLogprobSchemaOf(vocabSize: number) {
  return object({
    tokenId: z.number().refine((t) => isTokenId(t, vocabSize), { error: "is outside the vocabulary" }),
    logprob: LogprobSchema,
  });
}
export const tokenLogprobSchema = memo(tokenLogprobSchemaOf);
export type TokenLogprob = z.infer<ReturnType<typeof tokenLogprobSchema>>;

/**
 * A /next reply for a device of `vocabSize`. `draftAsked`: the most continuation tokens it may carry
 * (what the request asked for).
 */
function nextResponseSchemaOf(vocabSize: number, draftAsked: number = PROTOCOL_LIMITS.maxDraft) {
  return AppendResponseSchema.extend({
    /** the LLM's greedy next token after the session's tokens */
    tokenId: z.number({ error: "must be a token ID" }).refine((t) => isTokenId(t, vocabSize), { error: "is outside the vocabulary" }),
    /** absent when the request said `logprob: false` */
    logprob: LogprobSchema.optional(),
    top: z.array(tokenLogprobSchema(vocabSize)).max(PROTOCOL_LIMITS.maxTopK),
    /**
     * When `draft` was asked for: the LLM's greedy continuation after `tokenId` (it may stop early, at
     * an end-of-generation token or the session's capacity). Token IDs only: a log-probability costs a
     * sort of the whole vocabulary per token in node-llama-cpp, the price of the draft itself. The
     * session then holds `tokenId` and every draft token but the last (`length` says so).
     */
    draft: tokenIdsSchema(vocabSize, draftAsked).optional(),
    /** ms the server spent on the continuation: lets the device judge whether asking for one pays */
    draftMs: z.number().min(0).optional().catch(undefined),
  });
}
export const nextResponseSchema = memo(nextResponseSchemaOf);
export type NextResponse = z.infer<ReturnType<typeof nextResponseSchema>>;

export const TruncateRequestSchema = object({ length: integer(0) });
export type TruncateRequest = z.infer<typeof TruncateRequestSchema>;

/**
 * The user's Forget: the server deletes the session with everything it holds and says so. A session
 * it does not have (evicted, restarted) is confirmed too: nothing of it is held.
 */
export const ForgetRequestSchema = object({ forget: z.literal(true, { error: "must be true" }) });
export type ForgetRequest = z.infer<typeof ForgetRequestSchema>;

export const ForgetResponseSchema = object({
  forgotten: z.literal(true),
  /** whether the session was there to delete */
  existed: z.boolean(),
  /** tokens the session held when it was deleted */
  tokensDropped: integer(0),
});
export type ForgetResponse = z.infer<typeof ForgetResponseSchema>;

export const ERROR_CODES = [
  "unauthorized",
  "bad_request",
  "payload_too_large",
  "not_found",
  "session_not_found",
  "vocab_mismatch",
  "protocol_mismatch",
  "out_of_sync",
  "context_overflow",
  "too_many_sessions",
  "no_replica",
  "rate_limited",
  "internal",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const ErrorBodySchema = object({
  error: object({
    code: z.enum(ERROR_CODES),
    message: z.string().max(4096),
    /** for out_of_sync: the length the server holds */
    length: integer(0).optional(),
    /** for out_of_sync: the tokens before `base` are not the ones the client believes (`prefix`) */
    prefixMismatch: z.literal(true).optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

/** "replica-busy": the replica could not follow (every slot busy, or a history longer than a slot holds) */
export const ROUTE_ENDS = ["max", "eog", "full", "preempted", "replica-busy"] as const;
export type RouteEnd = (typeof ROUTE_ENDS)[number];

/**
 * One line of the /route stream (NDJSON). Positions: `{ tokenId, routed }`, in order from the first;
 * `routed` says whose token it is (the LLM's where true). The last line: `{ end, length }`, with
 * `length` the tokens the session's LLM has read (the history, and the stream's tokens before its last
 * routed position). An error after the stream began is a last line `{ error }` instead.
 */
function routeLineSchemaOf(vocabSize: number) {
  return z.union([
    z.object({ tokenId: z.number().refine((t) => isTokenId(t, vocabSize), { error: "is outside the vocabulary" }), routed: z.boolean() }),
    z.object({ end: z.enum(ROUTE_ENDS), length: integer(0) }),
    ErrorBodySchema,
  ]);
}
export const routeLineSchema = memo(routeLineSchemaOf);
export type RouteLine = z.infer<ReturnType<typeof routeLineSchema>>;

/**
 * The first problem a failed parse found, in a sentence: "tokens[3] = -1 is not a token ID in [0, 512)",
 * "client.vocabSize must be an integer …", "request body must be a JSON object".
 */
export function describeIssue(error: z.ZodError, root = "request body"): string {
  const issue = error.issues[0];
  if (!issue) return `${root} is malformed`;
  const path = issue.path.reduce<string>((p, k) => (typeof k === "number" ? `${p}[${k}]` : p ? `${p}.${String(k)}` : String(k)), "");
  return `${path || root} ${issue.message}`;
}

/**
 * A short description of a peer's value for an error message. Never JSON.stringify the value itself:
 * a deeply nested array (which JSON.parse accepts iteratively) overflows the stack of the recursive
 * JSON.stringify — a 500 found by the fuzz test — and a long string would be echoed back at length.
 */
export function describeValue(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null || typeof v === "number" || typeof v === "boolean") return String(v);
  if (typeof v === "string")
    return v.length <= 32 ? JSON.stringify(v) : `${JSON.stringify(v.slice(0, 32))}… (a string of ${v.length} characters)`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return "an object";
}

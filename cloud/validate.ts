/**
 * Strict validation of request bodies. Every field is checked for type and range before anything
 * reaches the session manager (and through it, native code). Unknown fields are ignored so a newer
 * client can add optional fields without breaking an older server of the same protocol version.
 */
import {
  type ReplicaRouter,
  type RouteRequest,
  PROTOCOL_LIMITS,
  PROTOCOL_VERSION,
  type AppendRequest,
  type CreateSessionRequest,
  type ModelIdentity,
  type NextRequest,
  type TruncateRequest,
} from "../shared/protocol.js";
import { CloudError } from "./errors.js";

type JsonObject = Record<string, unknown>;

/** Deepest nesting a request may have: the protocol's bodies nest two levels ({"client": {...}}). */
export const MAX_JSON_DEPTH = 8;

export function parseJson(body: Buffer): unknown {
  if (body.length === 0) throw bad("The request body is empty; expected a JSON object");
  const depth = nestingDepth(body);
  if (depth > MAX_JSON_DEPTH) {
    // parsed, 1 MB of "[[[[…" is some 400,000 nested arrays, tens of MB of heap (seen in the fuzz test):
    // refuse before parsing
    throw bad(`The request body nests ${depth > 1000 ? "more than 1000" : depth} levels deep; requests nest at most ${MAX_JSON_DEPTH}`);
  }
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (err) {
    throw bad(`The request body is not valid JSON: ${(err as Error).message}`);
  }
}

/** Bracket nesting outside JSON strings, stopping early past 1000; malformed input is JSON.parse's to refuse. */
function nestingDepth(body: Buffer): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
      if (max > 1000) return max;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

export function parseCreateSession(v: unknown): CreateSessionRequest {
  const o = object(v, "request body");
  // the protocol first: a client of another version may shape everything else differently
  const protocol = integer(o.protocol, "protocol", 0);
  if (protocol !== PROTOCOL_VERSION) {
    throw new CloudError(
      "protocol_mismatch",
      `The client speaks protocol ${protocol}, this server protocol ${PROTOCOL_VERSION}; update the older side`,
    );
  }
  return { protocol, client: modelIdentity(o.client, "client") };
}

export function parseAppend(v: unknown, vocabSize: number): AppendRequest {
  const o = object(v, "request body");
  return { base: integer(o.base, "base", 0), tokens: tokens(o.tokens, vocabSize), ...prefixOf(o) };
}

function prefixOf(o: Record<string, unknown>): { prefix?: string } {
  if (o.prefix === undefined) return {};
  if (typeof o.prefix !== "string" || !/^[0-9a-f]{16}$/.test(o.prefix)) throw bad("prefix must be 16 lowercase hex digits");
  return { prefix: o.prefix };
}

export function parseNext(v: unknown, vocabSize: number): Required<Omit<NextRequest, "prefix">> & Pick<NextRequest, "prefix"> {
  const o = object(v, "request body");
  const topK = o.topK === undefined ? 0 : integer(o.topK, "topK", 0, PROTOCOL_LIMITS.maxTopK);
  const draft = o.draft === undefined ? 0 : integer(o.draft, "draft", 0, PROTOCOL_LIMITS.maxDraft);
  if (o.logprob !== undefined && typeof o.logprob !== "boolean") throw bad("logprob must be true or false");
  const logprob = o.logprob !== false;
  if (!logprob && topK > 0) throw bad("topK needs logprob (the alternatives are log-probabilities)");
  return { base: integer(o.base, "base", 0), tokens: tokens(o.tokens, vocabSize), topK, draft, logprob, ...prefixOf(o) };
}

/** A /route request; `routers` are the kinds this server's replica can run. */
export function parseRoute(v: unknown, vocabSize: number): RouteRequest {
  const o = object(v, "request body");
  const tau = o.tau;
  if (typeof tau !== "number" || !Number.isFinite(tau) || tau < 0 || tau > 1) throw bad(`tau must be a number in [0, 1], got ${describe(tau)}`);
  const r = object(o.router, "router");
  let router: ReplicaRouter;
  if (r.kind === "confidence") router = { kind: "confidence" };
  else if (r.kind === "mlp") {
    if (typeof r.digest !== "string" || !/^[0-9a-f]{64}$/.test(r.digest)) throw bad("router.digest must be the sha256 the router upload answered with (64 lowercase hex digits)");
    router = { kind: "mlp", digest: r.digest };
  } else throw bad(`router.kind must be "confidence" or "mlp", got ${describe(r.kind)}`);
  return {
    base: integer(o.base, "base", 0),
    tokens: tokens(o.tokens, vocabSize),
    ...prefixOf(o),
    tau,
    router,
    position: integer(o.position, "position", 0),
    max: integer(o.max, "max", 1, PROTOCOL_LIMITS.maxRoute),
  };
}

export function parseTruncate(v: unknown): TruncateRequest {
  const o = object(v, "request body");
  return { length: integer(o.length, "length", 0) };
}

function modelIdentity(v: unknown, field: string): ModelIdentity {
  const o = object(v, field);
  if (typeof o.name !== "string" || o.name.length === 0 || o.name.length > 512) {
    throw bad(`${field}.name must be a string of 1 to 512 characters`);
  }
  if (typeof o.vocabHash !== "string" || !/^[0-9a-f]{64}$/i.test(o.vocabHash)) {
    throw bad(`${field}.vocabHash must be a sha256 digest in hex (64 characters)`);
  }
  return { name: o.name, vocabHash: o.vocabHash.toLowerCase(), vocabSize: integer(o.vocabSize, `${field}.vocabSize`, 1) };
}

function tokens(v: unknown, vocabSize: number): number[] {
  if (!Array.isArray(v)) throw bad("tokens must be an array of token IDs");
  if (v.length > PROTOCOL_LIMITS.maxDeltaTokens) {
    throw bad(`tokens carries ${v.length} tokens; at most ${PROTOCOL_LIMITS.maxDeltaTokens} per request (send the rest with append)`);
  }
  for (let i = 0; i < v.length; i++) {
    const t: unknown = v[i];
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t >= vocabSize) {
      throw bad(`tokens[${i}] = ${describe(t)} is not a token ID in [0, ${vocabSize})`);
    }
  }
  return v as number[]; // every element checked above
}

function integer(v: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
    throw bad(`${field} must be an integer in [${min}, ${max}], got ${describe(v)}`);
  }
  return v;
}

function object(v: unknown, field: string): JsonObject {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad(`${field} must be a JSON object`);
  return v as JsonObject;
}

/**
 * A short description of a client's value for an error message. Never JSON.stringify the value itself:
 * a deeply nested array (which JSON.parse accepts iteratively) overflows the stack of the recursive
 * JSON.stringify — a 500 found by the fuzz test — and a long string would be echoed back at length.
 */
export function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null || typeof v === "number" || typeof v === "boolean") return String(v);
  if (typeof v === "string") return v.length <= 32 ? JSON.stringify(v) : `${JSON.stringify(v.slice(0, 32))}… (a string of ${v.length} characters)`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return "an object";
}

function bad(message: string): CloudError {
  return new CloudError("bad_request", message);
}

/**
 * Request bodies: bounded JSON parsing, then the protocol's schemas (shared/protocol.ts), which check
 * every field for type and range before anything reaches the session manager (and through it, native
 * code). Unknown fields are ignored so a newer client can add optional fields without breaking an
 * older server of the same protocol version.
 */
import type { z } from "zod";
import {
  appendRequestSchema,
  CreateSessionRequestSchema,
  describeIssue,
  nextRequestSchema,
  PROTOCOL_VERSION,
  routeRequestSchema,
  RouterUploadSchema,
  TruncateRequestSchema,
  type AppendRequest,
  type CreateSessionRequest,
  type NextRequest,
  type RouteRequest,
  type RouterUpload,
  type TruncateRequest,
  ForgetRequestSchema,
  type ForgetRequest,
} from "../shared/protocol.js";
import { CloudError } from "./errors.js";
import { errorMessage } from "../shared/errors.js";

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
    throw bad(`The request body is not valid JSON: ${errorMessage(err)}`);
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
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
      if (max > 1000) return max;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** `v` as the message `schema` describes, or a bad_request naming the first problem. */
export function parseMessage<S extends z.ZodType>(schema: S, v: unknown): z.infer<S> {
  const r = schema.safeParse(v);
  if (!r.success) throw bad(describeIssue(r.error));
  return r.data;
}

export function parseCreateSession(v: unknown): CreateSessionRequest {
  // the protocol first: a client of another version may shape everything else differently
  const protocol = (v as { protocol?: unknown } | null)?.protocol;
  if (Number.isSafeInteger(protocol) && protocol !== PROTOCOL_VERSION) {
    throw new CloudError(
      "protocol_mismatch",
      `The client speaks protocol ${String(protocol)}, this server protocol ${PROTOCOL_VERSION}; update the older side`,
    );
  }
  return parseMessage(CreateSessionRequestSchema, v);
}

export function parseAppend(v: unknown, vocabSize: number): AppendRequest {
  return parseMessage(appendRequestSchema(vocabSize), v);
}

export function parseNext(
  v: unknown,
  vocabSize: number,
): Required<Omit<NextRequest, "prefix" | "sampling">> & Pick<NextRequest, "prefix" | "sampling"> {
  const r = parseMessage(nextRequestSchema(vocabSize), v);
  return { ...r, topK: r.topK ?? 0, draft: r.draft ?? 0, logprob: r.logprob !== false };
}

export function parseRoute(v: unknown, vocabSize: number): RouteRequest {
  return parseMessage(routeRequestSchema(vocabSize), v);
}

export function parseForget(v: unknown): ForgetRequest {
  return parseMessage(ForgetRequestSchema, v);
}

export function parseTruncate(v: unknown): TruncateRequest {
  return parseMessage(TruncateRequestSchema, v);
}

export function parseRouterUpload(v: unknown): RouterUpload {
  return parseMessage(RouterUploadSchema, v);
}

function bad(message: string): CloudError {
  return new CloudError("bad_request", message);
}

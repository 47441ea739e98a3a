/**
 * The Tandem client's HTTP: requests to the token server with the bearer token and the bytes counted,
 * replies parsed by the protocol's schemas (shared/protocol.ts), refusals turned into `ServerError`
 * (the one HttpError of shared/errors, with the server's error body), and failures classified into
 * the CloudCallError a caller throws.
 */
import type { z } from "zod";
import { ErrorBodySchema, PROTOCOL_LIMITS, type ErrorBody } from "../../../shared/protocol.js";
import { HttpError } from "../../../shared/errors.js";
import { VocabularyMismatchError } from "../../../inference/modelFile.js";
import { CloudCallError, type CloudStats } from "./peer.js";
import { classifyFailure, cloudFetch, cloudRequest, parseReply, readBounded, type RawReply } from "./callSupport.js";

/** Errors the server answers with a JSON body; anything else is a failure of the call itself. */
export class ServerError extends HttpError {
  constructor(
    status: number,
    readonly body: ErrorBody["error"] | undefined,
  ) {
    super(status, "", body ? `${body.code}: ${body.message}` : `HTTP ${status}`);
  }
}

export class CloudHttp {
  constructor(
    /** the server's base URL, checked (parseCloudUrl) */
    private readonly base: string,
    private readonly token: string | undefined,
    private readonly stats: Pick<CloudStats, "bytesUp" | "bytesDown">,
  ) {}

  /** A POST whose reply is the message `schema` describes (shared/protocol.ts). */
  async call<S extends z.ZodType>(path: string, body: unknown, signal: AbortSignal, schema: S, what: string): Promise<z.infer<S>> {
    return parseReply(schema, await this.request("POST", path, body, signal), what);
  }

  async request(method: string, path: string, body: unknown, signal: AbortSignal): Promise<unknown> {
    return reply(await cloudRequest(this.base + path, method, body, this.token, signal, this.stats, PROTOCOL_LIMITS.maxReplyBytes));
  }

  /** A POST whose reply is streamed (its body not read yet); a refusal throws as `request` does. */
  async stream(path: string, body: unknown, signal: AbortSignal): Promise<Response> {
    const res = await cloudFetch(this.base + path, "POST", body, this.token, signal, this.stats);
    // an error (before the first line) is an ordinary JSON reply
    if (!res.ok) reply({ status: res.status, ok: false, text: await readBounded(res, PROTOCOL_LIMITS.maxReplyBytes, this.stats) });
    return res;
  }

  /** Whether the server answers /health now (the background health check; its bytes are not the conversation's). */
  async healthy(deadlineMs: number): Promise<boolean> {
    const r = await cloudRequest(
      `${this.base}/health`,
      "GET",
      undefined,
      this.token,
      AbortSignal.timeout(deadlineMs),
      { bytesUp: 0, bytesDown: 0 },
      64 * 1024,
    );
    return r.ok && (JSON.parse(r.text) as { ok?: unknown }).ok === true;
  }
}

/** A reply's JSON object; a refusal is a ServerError with the server's error body, when it sent one. */
function reply(res: RawReply): unknown {
  const text = res.text;
  let json: unknown;
  try {
    json = text === "" ? undefined : JSON.parse(text);
  } catch {
    if (!res.ok) throw new ServerError(res.status, undefined);
    throw new CloudCallError("malformed", `the cloud sent malformed JSON (HTTP ${res.status})`);
  }
  if (!res.ok) {
    const e = ErrorBodySchema.safeParse(json);
    throw new ServerError(res.status, e.success ? e.data.error : undefined);
  }
  if (json === null || typeof json !== "object") throw new CloudCallError("malformed", "the cloud sent a non-object reply");
  return json;
}

/**
 * The error a failed call throws: a vocabulary mismatch as it is, a user's abort as "aborted", a
 * refusal as "http" with the server's words, anything else classified (timeout, unreachable, ...).
 */
export function callError(err: unknown, deadline: AbortSignal, userSignal: AbortSignal | undefined, deadlineMs: number): Error {
  if (err instanceof VocabularyMismatchError) return err;
  if (userSignal?.aborted) return new CloudCallError("aborted", "aborted");
  if (err instanceof ServerError) {
    const detail = err.body ? ` ${err.body.code}: ${err.body.message}` : "";
    return new CloudCallError("http", `cloud error: HTTP ${err.status}${detail}`, err.status);
  }
  return classifyFailure(err, deadline, deadlineMs);
}

/** Throws CloudCallError("malformed") unless the server reports holding `expected` tokens. */
export function expectLength(actual: unknown, expected: number): void {
  if (actual !== expected) {
    throw new CloudCallError("malformed", `the cloud reported ${JSON.stringify(actual)} tokens, expected ${expected}`);
  }
}

/**
 * What every cloud client (Tandem's own, the engine adapters) shares: the URL check, a call deadline,
 * failure classification, reply validation, and the cloud's health with back-off. After a failure the
 * client stops calling for a while (doubling up to a cap), so the decoder uses the SLM's own tokens at
 * once instead of waiting on a dead server; one success resets it.
 */
import type { z } from "zod";
import { CloudCallError, fallbackCause, type CloudState } from "./peer.js";
import {
  describeIssue,
  LogprobSchema,
  tokenIdsSchema,
  tokenLogprobSchema,
  isTokenId,
  type TokenLogprob,
} from "../../../shared/protocol.js";
import { errorMessage } from "../../../shared/errors.js";

export interface HealthOptions {
  /** first back-off after a failure, ms (doubles up to maxBackoffMs) */
  backoffMs?: number;
  maxBackoffMs?: number;
  onStateChange?: (state: CloudState, detail?: string) => void;
  /**
   * A background health check: while offline it is asked every `healthCheckMs` whether the cloud answers,
   * and a yes ends the back-off at once (the status is back online without waiting for a call).
   */
  healthCheck?: () => Promise<boolean>;
  /** default 1000 */
  healthCheckMs?: number;
}

export class CloudHealth {
  private current: CloudState = "unknown";
  private retryAt = 0;
  private backoff: number;
  private probeTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;

  constructor(private readonly opts: HealthOptions = {}) {
    this.backoff = opts.backoffMs ?? 1000;
  }

  get state(): CloudState {
    return this.current;
  }

  /** False while backing off after a failure. */
  get open(): boolean {
    return this.retryAt <= Date.now();
  }

  /** Throws CloudCallError("offline") while backing off. */
  checkOpen(): void {
    const wait = this.retryAt - Date.now();
    if (wait > 0) throw new CloudCallError("offline", `cloud offline, retrying in ${Math.ceil(wait / 1000)} s`);
  }

  online(): void {
    this.backoff = this.opts.backoffMs ?? 1000;
    this.retryAt = 0;
    this.set("online");
  }

  /**
   * Records a failed call. A 4xx other than rate limiting is the request's fault, not the cloud's
   * health, and a vocabulary mismatch is permanent: neither starts a back-off. Returns whether it did.
   */
  failed(e: CloudCallError): boolean {
    if (e.reason === "vocab_mismatch" || e.reason === "aborted") return false;
    if (e.reason === "http" && (e.status ?? 0) < 500 && e.status !== 429) return false;
    this.retryAt = Date.now() + this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoffMs ?? 15_000);
    // the status names the cause first, as fallback tokens do ("timeout: no answer from the cloud within 1500 ms")
    this.set("offline", `${fallbackCause(e.reason)}: ${e.message}`);
    this.scheduleProbe();
    return true;
  }

  /** No more health checks (the client is closed). */
  stop(): void {
    this.stopped = true;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
  }

  private scheduleProbe(): void {
    if (!this.opts.healthCheck || this.probeTimer || this.stopped) return;
    this.probeTimer = setTimeout(() => void this.runProbe(), this.opts.healthCheckMs ?? 1000);
    this.probeTimer.unref?.();
  }

  private async runProbe(): Promise<void> {
    let ok = false;
    try {
      ok = await this.opts.healthCheck!();
    } catch {
      // not answering is what a health check is for
    }
    this.probeTimer = null;
    if (this.stopped || this.current !== "offline") return; // a call came back meanwhile
    if (ok) this.online();
    else this.scheduleProbe();
  }

  private set(s: CloudState, detail?: string): void {
    if (s === this.current) return;
    this.current = s;
    this.opts.onStateChange?.(s, detail);
  }
}

/** The user's abort signal combined with a deadline. */
export function deadlineSignal(signal: AbortSignal | undefined, ms: number): AbortSignal {
  const t = AbortSignal.timeout(ms);
  return signal ? AbortSignal.any([signal, t]) : t;
}

/** A cloud's HTTP reply, read whole; what it means is the caller's protocol's business. */
export interface RawReply {
  status: number;
  ok: boolean;
  text: string;
}

/**
 * One request to a cloud: JSON body, bearer token, bytes counted into `stats` both ways. A network
 * failure is CloudCallError("unreachable"); an abort (deadline or user) is rethrown as it is, so the
 * caller's classification can tell the two apart.
 */
export async function cloudRequest(
  url: string,
  method: string,
  body: unknown,
  token: string | undefined,
  signal: AbortSignal,
  stats: { bytesUp: number; bytesDown: number },
  maxBytes = MAX_REPLY_BYTES,
): Promise<RawReply> {
  const res = await cloudFetch(url, method, body, token, signal, stats);
  const text = await readBounded(res, maxBytes, stats);
  return { status: res.status, ok: res.ok, text };
}

/**
 * Largest reply a call reads, bytes: a Tandem reply is under a kilobyte and an engine's with top-k
 * log-probabilities a few; a server that sends more is broken or hostile (a client that read
 * everything took 2 GB in 5 s on loopback), and the call fails like any malformed reply.
 */
export const MAX_REPLY_BYTES = 4 << 20;

/**
 * A response body as text, refusing more than `maxBytes` (the declared length is checked first, the
 * bytes as they arrive second: a server may lie about or omit its length). Over the bound the body is
 * cancelled, which closes the connection, and the call fails with CloudCallError("malformed").
 */
export async function readBounded(res: Response, maxBytes: number, stats: { bytesDown: number }): Promise<string> {
  const tooLarge = (n: string) => new CloudCallError("malformed", `the cloud's reply is larger than ${maxBytes} bytes (${n}): refused`);
  const declared = Number(res.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw tooLarge(`${declared} declared`);
  }
  if (!res.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    stats.bytesDown += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(`${size} bytes read`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size).toString("utf8");
}

/**
 * The request of `cloudRequest`, its response not read yet (a streamed reply is read as it arrives;
 * the reader counts the bytes down).
 */
export async function cloudFetch(
  url: string,
  method: string,
  body: unknown,
  token: string | undefined,
  signal: AbortSignal,
  stats: { bytesUp: number },
): Promise<Response> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  if (payload) stats.bytesUp += Buffer.byteLength(payload);
  const headers: Record<string, string> = {};
  if (payload) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  try {
    return await fetch(url, { method, headers, body: payload, signal });
  } catch (err) {
    if (signal.aborted) throw err;
    throw new CloudCallError("unreachable", `cloud unreachable: ${describeFetchError(err)}`);
  }
}

/** The most telling part of a fetch failure (ECONNREFUSED rather than "fetch failed"). */
export function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? errorMessage(err);
}

/** Classifies a thrown value as a CloudCallError (timeouts, unreachable, already-classified errors). */
export function classifyFailure(err: unknown, deadline: AbortSignal, deadlineMs: number): CloudCallError {
  if (err instanceof CloudCallError) return err;
  if (deadline.aborted) return new CloudCallError("timeout", `no answer from the cloud within ${deadlineMs} ms`);
  return new CloudCallError("unreachable", `cloud call failed: ${errorMessage(err)}`);
}

/** The base URL of a cloud, checked: a clear error for anything but http(s). */
export function parseCloudUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`Invalid cloud URL: ${JSON.stringify(url)}`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`Cloud URL must be http(s): ${url}`);
  return u.toString().replace(/\/$/, "");
}

interface CheckedToken {
  tokenId: number;
  logprob?: number;
  top: TokenLogprob[];
}

/**
 * Checks a next-token reply from any cloud: a token inside the device's vocabulary, finite log-probabilities
 * ≤ 0 (a tiny positive rounding error allowed), well-formed top-k. A misbehaving server must never
 * put an impossible token into the answer.
 */
export function checkTokenReply(
  r: { tokenId: unknown; logprob?: unknown; top: unknown },
  vocabSize: number,
): CheckedToken & { logprob: number };
/** `wantLogprob` false: the request asked for the token only (NextRequest.logprob), so it may be absent */
export function checkTokenReply(
  r: { tokenId: unknown; logprob?: unknown; top: unknown },
  vocabSize: number,
  wantLogprob: boolean,
): CheckedToken;
export function checkTokenReply(
  r: { tokenId: unknown; logprob?: unknown; top: unknown },
  vocabSize: number,
  wantLogprob = true,
): CheckedToken {
  if (!isTokenId(r.tokenId, vocabSize))
    throw new CloudCallError("malformed", `the cloud returned token ${JSON.stringify(r.tokenId)}, outside the vocabulary`);
  const logprob = r.logprob === undefined && !wantLogprob ? undefined : r.logprob;
  if (logprob !== undefined && !LogprobSchema.safeParse(logprob).success)
    throw new CloudCallError("malformed", "the cloud returned an invalid log-probability");
  const top = tokenLogprobSchema(vocabSize).array().safeParse(r.top);
  if (!top.success) throw new CloudCallError("malformed", "the cloud returned invalid top-k entries");
  return { tokenId: r.tokenId, logprob: logprob as number | undefined, top: top.data };
}

/**
 * A reply as the message `schema` describes (shared/protocol.ts), or CloudCallError("malformed") naming
 * the first problem: a misbehaving server fails the call, and the decoder falls back.
 */
export function parseReply<S extends z.ZodType>(schema: S, json: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(json);
  if (!r.success) throw new CloudCallError("malformed", `the cloud sent a malformed ${what}: ${describeIssue(r.error, "reply")}`);
  return r.data;
}

/** Checks a continuation (NextResponse.draft): at most `asked` in-vocabulary token IDs. */
export function checkDraftReply(draft: unknown, asked: number, vocabSize: number): number[] {
  if (draft === undefined) return [];
  if (!tokenIdsSchema(vocabSize, asked).safeParse(draft).success)
    throw new CloudCallError("malformed", "the cloud returned an invalid continuation");
  return draft as number[];
}

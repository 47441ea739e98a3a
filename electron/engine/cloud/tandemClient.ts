/**
 * Client for Tandem's cloud token server (shared/protocol.ts).
 *
 * It mirrors the tokens the server's session holds and sends only the delta, as token IDs. Every call
 * has a deadline (default 1.5 s): the chat never waits longer than that on the network. A lost session
 * (server restarted, evicted) is re-created and re-synced transparently; after a failure the client
 * backs off (the decoder then uses the SLM's own tokens at once instead of waiting on a dead server).
 *
 * Background sync: the decoder reports every committed token (`observe`), and the client streams them
 * to the server with /append while the SLM keeps writing — one request in flight at a time, the tokens
 * made meanwhile going in the next — so when a token is routed to the cloud the server has already
 * read the conversation and the call costs one LLM step plus the round trip, not a catch-up of the
 * whole delta. A call does not wait for an append still on its way: the server runs one session's
 * requests in arrival order, so the call builds on the append's tokens (and should it overtake the
 * append, or the append fail, the server answers out_of_sync and the call re-sends from what it holds).
 * The sync never decides a token's fate: a failed append only pauses it, and the call that follows
 * re-syncs (or fails) exactly as the blocking client would.
 */
import {
  PROTOCOL_LIMITS,
  PROTOCOL_VERSION,
  prefixHash,
  AppendResponseSchema,
  CreateSessionResponseSchema,
  ErrorBodySchema,
  ForgetResponseSchema,
  type ForgetRequest,
  type ForgetResponse,
  nextResponseSchema,
  routeLineSchema,
  RouterUploadResponseSchema,
  type AppendRequest,
  type CreateSessionRequest,
  type CreateSessionResponse,
  type ErrorBody,
  type ModelIdentity,
  type NextRequestBody,
  type NextResponse,
  type ReplicaInfo,
  type ReplicaRouter,
  type RouteRequestBody,
} from "../../../shared/protocol.js";
import type { z } from "zod";
import type { Router } from "../../../shared/router.js";
import { compactSampling, type SamplingSettings } from "../../../shared/sampling.js";
import { RouteStream } from "./routeStream.js";
import { VocabularyMismatchError } from "../../../inference/modelFile.js";
import {
  CloudCallError,
  type CloudPeer,
  type CloudState,
  type CloudStats,
  type CloudStep,
  type NextOptions,
  type RouteOptions,
} from "./peer.js";
import { CloudLearning } from "../cloudPolicy.js";
import {
  CloudHealth,
  classifyFailure,
  cloudFetch,
  cloudRequest,
  deadlineSignal,
  parseCloudUrl,
  parseReply,
  readBounded,
  type HealthOptions,
  type RawReply,
} from "./callSupport.js";
import { HttpError } from "../../../shared/errors.js";

export interface TandemClientOptions extends HealthOptions {
  /** base URL of the token server, e.g. http://127.0.0.1:8788 */
  url: string;
  /** bearer token */
  token?: string;
  /** deadline for one cloud call, ms */
  deadlineMs?: number;
  /** top-k alternatives to ask for (0 = only the chosen token's log-probability) */
  topK?: number;
  /**
   * Ask for the cloud token's log-probability (default true; shown in the inspector). On a large
   * vocabulary it costs the server a full sort per call (NextRequest.logprob): false spares it.
   */
  logprob?: boolean;
  /** stream committed tokens to the server between calls (default true; false = the blocking client) */
  backgroundSync?: boolean;
  /**
   * Use the server's replica of the device's SLM when it has one (default true): one /route stream
   * answers every routed position of a stretch of the answer (RouteRequest). false = one call per
   * routed position.
   */
  replica?: boolean;
  /**
   * Tokens to gather before a background append (default 4). One token per append makes a call's
   * catch-up smallest, but the LLM then reads the conversation one token per decode, which costs a
   * CPU-bound server several times the work of reading a few at once.
   */
  syncChunk?: number;
}

export const DEFAULT_DEADLINE_MS = 1500;

/**
 * The cloud's reading speed before it is measured, ms per token, and the margin on a measured one. A
 * call's deadline allows for the tokens the server has not read yet (a pasted page the background
 * sync is still uploading): the server reads them first, in order, and a deadline that counted that
 * work would mark a healthy cloud offline. Too generous a guess only delays noticing a hung server on
 * such a call; an unreachable one fails at once.
 */
export const PRIOR_READ_MS_PER_TOKEN = 5;
const READ_MARGIN = 2;
/** most extra time a call's deadline allows for catching up */
export const MAX_CATCH_UP_MS = 120_000;
/** replies that read fewer tokens than this say more about the round trip than the reading speed */
const MIN_READ_SAMPLE = 32;
export const DEFAULT_SYNC_CHUNK = 4;

/** Errors the server answers with a JSON body; anything else is a failure of the call itself. */
class ServerError extends HttpError {
  constructor(
    status: number,
    readonly body: ErrorBody["error"] | undefined,
  ) {
    super(status, "", body ? `${body.code}: ${body.message}` : `HTTP ${status}`);
  }
}

export class TandemCloudClient implements CloudPeer {
  readonly kind = "tandem";
  readonly stats: CloudStats & { tokensUp: number } = { calls: 0, failures: 0, bytesUp: 0, bytesDown: 0, sessions: 0, tokensUp: 0 };
  readonly learnt = new CloudLearning();
  private readonly base: string;
  private readonly deadlineMs: number;
  private readonly topK: number;
  private device: ModelIdentity | undefined;
  private cloudModel: ModelIdentity | undefined;
  private sessionId: string | undefined;
  /** tokens the server's session is known to hold, in order */
  private confirmed: number[] = [];
  private readonly health: CloudHealth;
  /** the decoder's committed history (a growing array) and how much of it to sync */
  private observed: readonly number[] = [];
  private observedLength = 0;
  /** the background append in flight, if any (it never rejects), and the history it sends */
  private syncing: Promise<void> | null = null;
  private inflight: readonly number[] | null = null;
  /** bumped by every /next sent: a reply that arrives after a later request went out must not rewrite the mirror */
  private epoch = 0;
  /** set by a failed background append; the next call re-syncs and clears it */
  private syncPaused = false;
  /**
   * Calls in flight (the decoder may pipeline several: one per routed position of its guessed text),
   * and the history each will leave the server holding. While any is in flight the sync waits.
   */
  private readonly callsInFlight = new Map<readonly number[], { draft: boolean }>();
  /** a session being created, awaited by every call that needs one */
  private creating: Promise<void> | null = null;
  /** close() was called: no new sessions */
  private closed = false;
  /** the session's SLM replica, when the server has one and it runs the device's SLM */
  private replica: ReplicaInfo | undefined;
  /** router networks uploaded (or on their way) to the current session, by router */
  private uploaded = new WeakMap<Router, Promise<string>>();
  /** the server's measured reading speed, ms per token (smoothed); null until a large enough reply */
  private readMsPerToken: number | null = null;

  constructor(private readonly opts: TandemClientOptions) {
    this.base = parseCloudUrl(opts.url);
    this.deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
    this.topK = Math.max(0, Math.min(opts.topK ?? 0, PROTOCOL_LIMITS.maxTopK));
    if (opts.logprob === false && this.topK > 0) throw new Error("topK alternatives are log-probabilities: they need logprob");
    // while offline, /health is asked every second: the status is back online as soon as the cloud answers
    this.health = new CloudHealth({ healthCheck: () => this.probe(), ...opts });
  }

  get state(): CloudState {
    return this.health.state;
  }

  get model(): ModelIdentity | undefined {
    return this.cloudModel;
  }

  /** Whether the session's server runs this device's SLM, so routed stretches are streamed (`route`). */
  get replicated(): boolean {
    return this.opts.replica !== false && this.replica !== undefined;
  }

  async connect(device: ModelIdentity, signal?: AbortSignal): Promise<ModelIdentity> {
    this.device = device;
    // opening a session may wait for the server to admit it: a longer deadline than one token's
    const ms = Math.max(this.deadlineMs, 5000);
    const deadline = deadlineSignal(signal, ms);
    try {
      await this.createSession(deadline);
      this.health.online();
      return this.cloudModel!;
    } catch (err) {
      throw this.fail(err, deadline, undefined, ms);
    }
  }

  async next(history: readonly number[], signal?: AbortSignal, opts: NextOptions = {}): Promise<CloudStep> {
    if (!this.device) throw new Error("connect() first");
    if (this.closed) throw new CloudCallError("offline", "the cloud client was closed");
    this.health.checkOpen();
    const t0 = performance.now();
    this.stats.calls++;
    const deadlineMs = this.deadlineMs + this.catchUpMs(history);
    const deadline = deadlineSignal(signal, deadlineMs);
    const snapshot = history.slice();
    const draft = Math.max(0, Math.min(Math.floor(opts.draft ?? 0), PROTOCOL_LIMITS.maxDraft));
    this.callsInFlight.set(snapshot, { draft: draft > 0 });
    try {
      await this.ensureSession(deadline);
      const res = await this.nextWithResync(snapshot, deadline, draft, opts.sampling);
      this.learnReading(res.evaluated, performance.now() - t0);
      this.health.online();
      this.syncPaused = false;
      return {
        tokenId: res.tokenId,
        logprob: res.logprob,
        top: res.top,
        latencyMs: performance.now() - t0,
        evaluated: res.evaluated,
        ...(res.draft ? { draft: res.draft } : {}),
        ...(res.draft && typeof res.draftMs === "number" && Number.isFinite(res.draftMs) && res.draftMs >= 0
          ? { draftMs: res.draftMs }
          : {}),
      };
    } catch (err) {
      this.stats.failures++;
      throw this.fail(err, deadline, signal, deadlineMs);
    } finally {
      this.callsInFlight.delete(snapshot);
    }
  }

  /** Extra time for a request on `history`: the server's reading of the tokens it is not known to hold. */
  private catchUpMs(history: readonly number[]): number {
    const unread = history.length - commonPrefixLength(this.confirmed, history);
    const perToken = (this.readMsPerToken ?? PRIOR_READ_MS_PER_TOKEN) * READ_MARGIN;
    return Math.ceil(Math.min(MAX_CATCH_UP_MS, unread * perToken)); // AbortSignal.timeout takes whole ms
  }

  /** Learns the server's reading speed from a reply that read `evaluated` tokens in `ms` (round trip included: an overestimate, the safe side). */
  private learnReading(evaluated: number | undefined, ms: number): void {
    if (evaluated === undefined || evaluated < MIN_READ_SAMPLE) return;
    const rate = ms / evaluated;
    this.readMsPerToken = this.readMsPerToken === null ? rate : this.readMsPerToken + 0.3 * (rate - this.readMsPerToken);
  }

  route(history: readonly number[], opts: RouteOptions, signal?: AbortSignal): RouteStream | null {
    if (this.opts.replica === false || this.closed || !this.device || !this.health.open) return null;
    const kind = opts.router.replica?.kind;
    if (!kind || !this.replica?.routers.includes(kind)) return null;
    const stream = new RouteStream(this.deadlineMs, this.catchUpMs(history));
    const snapshot = history.slice();
    // a stream leaves tokens beyond its history (like a continuation); while it runs the sync waits
    this.callsInFlight.set(snapshot, { draft: true });
    this.stats.calls++;
    const requestSignal = signal ? AbortSignal.any([signal, stream.signal]) : stream.signal;
    void this.readRoute(snapshot, opts, stream, requestSignal).finally(() => this.callsInFlight.delete(snapshot));
    return stream;
  }

  /**
   * After a request the server refused: re-creates a lost session or corrects what the client
   * believes the server holds, and says whether to send again; false for every other failure.
   */
  private async resync(err: unknown, signal: AbortSignal, session: string | undefined): Promise<boolean> {
    if (!(err instanceof ServerError)) return false;
    if (err.body?.code === "session_not_found") {
      await this.ensureSession(signal, session);
    } else if (err.body?.code === "out_of_sync" && err.body.prefixMismatch) {
      // the server holds other tokens than believed (a request overtook another on the way):
      // nothing of it is certain, so the next attempt sends the whole history
      this.confirmed = [];
    } else if (err.body?.code === "out_of_sync" && typeof err.body.length === "number") {
      this.confirmed = this.confirmed.slice(0, Math.max(0, Math.min(err.body.length, this.confirmed.length)));
    } else {
      return false;
    }
    return true;
  }

  /** Sends the /route request (re-syncing as a call does) and fills `stream` from its lines. */
  private async readRoute(history: readonly number[], opts: RouteOptions, stream: RouteStream, signal: AbortSignal): Promise<void> {
    let failure: CloudCallError | null = null;
    try {
      await this.ensureSession(signal);
      for (let attempt = 0; ; attempt++) {
        const session = this.sessionId;
        try {
          await this.sendRoute(history, opts, stream, signal, attempt === 0);
          this.health.online();
          this.syncPaused = false;
          return;
        } catch (err) {
          // a stream that has begun cannot be re-sent: the decoder has its first positions already
          if (stream.entries.length > 0 || attempt >= 3) throw err;
          if (err instanceof ServerError && err.body?.code === "no_replica" && opts.router.replica?.kind === "mlp") {
            this.uploaded.delete(opts.router); // the server dropped the network (or restarted): upload it again
          } else if (!(await this.resync(err, signal, session))) throw err;
        }
      }
    } catch (err) {
      if (stream.signal.aborted) {
        // cancelled by the decoder: it has what it needs, unless it gave up waiting (a failure, for the back-off)
        if (stream.cancelReason) {
          this.stats.failures++;
          this.health.failed(stream.cancelReason);
        }
        return;
      }
      this.stats.failures++;
      const e = this.fail(err, NOT_A_DEADLINE, signal);
      failure = e instanceof CloudCallError ? e : new CloudCallError("malformed", e.message);
    } finally {
      stream.end(failure);
    }
  }

  private async sendRoute(
    history: readonly number[],
    opts: RouteOptions,
    stream: RouteStream,
    signal: AbortSignal,
    optimistic: boolean,
  ): Promise<void> {
    const router = await this.replicaRouter(opts.router, signal);
    const base = await this.deltaBase(history, signal, optimistic);
    const body: RouteRequestBody = {
      ...this.delta(history, base, history.slice(base)),
      tau: opts.tau,
      router,
      ...(opts.sampling ? { sampling: compactSampling(opts.sampling) } : {}),
      position: opts.position,
      max: Math.max(1, Math.min(PROTOCOL_LIMITS.maxRoute, Math.floor(opts.max))),
    };
    const epoch = ++this.epoch;
    this.confirmed = this.confirmed.slice(0, base);
    const res = await cloudFetch(`${this.base}/v1/sessions/${this.sessionId}/route`, "POST", body, this.opts.token, signal, this.stats);
    // an error (before the first line) is an ordinary JSON reply
    if (!res.ok) this.reply({ status: res.status, ok: false, text: await readBounded(res, PROTOCOL_LIMITS.maxReplyBytes, this.stats) });
    const lineSchema = routeLineSchema(this.device!.vocabSize);
    // the tokens the server holds once the LLM has predicted a position: the history and the stream's tokens before it
    const held = (k: number) => [...history, ...stream.entries.slice(0, k).map((e) => e.tokenId)];
    for await (const line of ndjsonLines(res, this.stats)) {
      const l = parseReply(lineSchema, line, "route line");
      if ("tokenId" in l) {
        if (stream.entries.length === 0 && !l.routed)
          throw new CloudCallError("malformed", "a route stream must begin with the LLM's token");
        if (stream.entries.length >= body.max)
          throw new CloudCallError("malformed", `the cloud sent more than the ${body.max} positions asked for`);
        if (l.routed && epoch === this.epoch) this.confirmed = held(stream.entries.length);
        stream.push({ tokenId: l.tokenId, routed: l.routed });
      } else if ("end" in l) {
        let lastRouted = 0;
        stream.entries.forEach((e, i) => e.routed && (lastRouted = i));
        this.expectLength(l.length, history.length + lastRouted);
        if (stream.entries.length === 0) throw new CloudCallError("malformed", "the route stream ended before its first position");
        return;
      } else throw new CloudCallError("http", `cloud error during the route stream: ${l.error.code}: ${l.error.message}`);
    }
    throw new CloudCallError("malformed", "the route stream ended without its last line");
  }

  /**
   * Uploads `router`'s network to the session's replica in the background, if it needs one, so the
   * answer's first stream does not wait a round trip for it. Never throws: a failed upload is retried
   * by the stream that needs it.
   */
  prepareRoute(router: Router): void {
    if (
      this.opts.replica === false ||
      this.closed ||
      !this.sessionId ||
      router.replica?.kind !== "mlp" ||
      !this.replica?.routers.includes("mlp")
    )
      return;
    if (!this.uploaded.has(router)) this.upload(router, AbortSignal.timeout(Math.max(this.deadlineMs, 5000))).catch(() => {});
  }

  /** How the replica is to run `router`: uploading its network to this session first when needed. */
  private async replicaRouter(router: Router, signal: AbortSignal): Promise<ReplicaRouter> {
    if (router.replica!.kind === "confidence") return { kind: "confidence" };
    return { kind: "mlp", digest: await (this.uploaded.get(router) ?? this.upload(router, signal)) };
  }

  private upload(router: Router, signal: AbortSignal): Promise<string> {
    const r = router.replica as { kind: "mlp"; network(): unknown };
    const uploads = this.uploaded;
    const done = (async () => {
      const res = await this.call(
        `/v1/sessions/${this.sessionId}/router`,
        r.network(),
        signal,
        RouterUploadResponseSchema,
        "router upload reply",
      );
      return res.digest;
    })();
    uploads.set(router, done);
    done.catch(() => uploads.delete(router)); // the next stream tries again
    return done;
  }

  observe(history: readonly number[]): void {
    if (this.opts.backgroundSync === false) return;
    this.observed = history;
    this.observedLength = history.length;
    this.pump();
  }

  /** Starts a background append of what the server lacks, unless one is running or it must not. */
  private pump(): void {
    if (this.closed || this.syncing || this.callsInFlight.size > 0 || this.syncPaused || !this.sessionId || !this.health.open) return;
    // runs after every token: compare in place, copy only when an append goes out
    const base = commonPrefixLength(this.confirmed, this.observed, this.observedLength);
    if (this.observedLength - base < Math.max(1, this.opts.syncChunk ?? DEFAULT_SYNC_CHUNK)) return;
    const target = this.observed.slice(0, this.observedLength);
    this.syncing = this.appendInBackground(target, base).finally(() => {
      this.syncing = null;
      this.pump(); // tokens committed while that append was on its way go in the next one
    });
  }

  private async appendInBackground(target: readonly number[], base: number): Promise<void> {
    const signal = AbortSignal.timeout(this.deadlineMs + this.catchUpMs(target));
    let t0 = performance.now();
    const epoch = this.epoch;
    // until the reply arrives the server may hold either state; only the common prefix is certain
    this.confirmed = this.confirmed.slice(0, base);
    this.inflight = target.length - base <= PROTOCOL_LIMITS.maxDeltaTokens ? target : null;
    try {
      while (base < target.length) {
        const chunk = target.slice(base, base + PROTOCOL_LIMITS.maxDeltaTokens);
        const r = await this.call(
          `/v1/sessions/${this.sessionId}/append`,
          this.delta(target, base, chunk),
          signal,
          AppendResponseSchema,
          "append reply",
        );
        this.expectLength(r.length, base + chunk.length);
        this.learnReading(r.evaluated, performance.now() - t0);
        t0 = performance.now();
        base = r.length;
        if (epoch === this.epoch) this.confirmed = target.slice(0, base);
      }
    } catch {
      // the next call finds out what is wrong (a lost session, an unreachable server) and deals with
      // it as the blocking client would; until then, don't send on every token into a failure
      this.syncPaused = true;
    } finally {
      if (this.inflight === target) this.inflight = null;
    }
  }

  /** Whether the server answers /health now (the background health check; its bytes are not the conversation's). */
  private async probe(): Promise<boolean> {
    if (this.closed) return false;
    const r = await cloudRequest(
      `${this.base}/health`,
      "GET",
      undefined,
      this.opts.token,
      AbortSignal.timeout(this.deadlineMs),
      { bytesUp: 0, bytesDown: 0 },
      64 * 1024,
    );
    return r.ok && (JSON.parse(r.text) as { ok?: unknown }).ok === true;
  }

  async close(): Promise<void> {
    // terminal: a call still in flight must not open a new session when it finds this one deleted
    // (it would hold a server slot until idle eviction)
    this.closed = true;
    this.health.stop();
    this.observed = [];
    this.observedLength = 0;
    this.syncPaused = false;
    await this.syncing;
    const id = this.sessionId;
    this.sessionId = undefined;
    this.confirmed = [];
    if (!id) return;
    try {
      await this.request("DELETE", `/v1/sessions/${id}`, undefined, AbortSignal.timeout(this.deadlineMs));
    } catch {
      // the server evicts idle sessions anyway; closing must never fail the caller
    }
  }

  /** Applies the delta and predicts; re-creates a lost session and re-syncs once. */
  private async nextWithResync(
    history: readonly number[],
    signal: AbortSignal,
    draft: number,
    sampling: SamplingSettings | undefined,
  ): Promise<NextResponse> {
    for (let attempt = 0; ; attempt++) {
      const session = this.sessionId;
      try {
        return await this.sendNext(history, signal, attempt === 0, draft, sampling);
      } catch (err) {
        if (attempt >= 3 || !(await this.resync(err, signal, session))) throw err;
      }
    }
  }

  private async sendNext(
    history: readonly number[],
    signal: AbortSignal,
    optimistic: boolean,
    draft: number,
    sampling: SamplingSettings | undefined,
  ): Promise<NextResponse> {
    const base = await this.deltaBase(history, signal, optimistic);
    const body: NextRequestBody = {
      ...this.delta(history, base, history.slice(base)),
      topK: this.topK,
      ...(draft > 0 ? { draft } : {}),
      // with every call, not once per answer: calls may overtake each other, and sessions be re-made (docs/sampling.md)
      ...(sampling ? { sampling: compactSampling(sampling) } : {}),
      ...(this.opts.logprob === false ? { logprob: false } : {}),
    };
    const epoch = ++this.epoch;
    // until the reply arrives the server may hold either state; only the common prefix is certain
    this.confirmed = this.confirmed.slice(0, base);
    const r = await this.call(
      `/v1/sessions/${this.sessionId}/next`,
      body,
      signal,
      nextResponseSchema(this.device!.vocabSize, draft),
      "next-token reply",
    );
    const continuation = r.draft ?? [];
    // with a continuation the server also evaluated the predicted token and all but its last token
    const held = continuation.length > 0 ? [...history, r.tokenId, ...continuation.slice(0, -1)] : history.slice();
    this.expectLength(r.length, held.length);
    // a request sent after this one may already have changed what the server holds: then only the
    // common prefix, set when that one went out, is certain
    if (epoch === this.epoch) this.confirmed = held;
    return continuation.length > 0 ? { ...r, draft: continuation } : { ...r, draft: undefined };
  }

  /**
   * Where the delta of a request for `history` starts: after what the server holds (or will, once the
   * requests on their way arrive: `optimistic`). A delta longer than one request allows goes up in
   * appends first.
   */
  private async deltaBase(history: readonly number[], signal: AbortSignal, optimistic: boolean): Promise<number> {
    let base = commonPrefixLength(this.confirmed, history);
    if (optimistic) base = this.optimisticBase(history, base);
    while (history.length - base > PROTOCOL_LIMITS.maxDeltaTokens) {
      const chunk = history.slice(base, base + PROTOCOL_LIMITS.maxDeltaTokens);
      const r = await this.call(
        `/v1/sessions/${this.sessionId}/append`,
        this.delta(history, base, chunk),
        signal,
        AppendResponseSchema,
        "append reply",
      );
      this.expectLength(r.length, base + chunk.length);
      this.confirmed = history.slice(0, r.length);
      base = r.length;
    }
    return base;
  }

  /**
   * Where a request for `history` may start when other requests are on their way: after the longest
   * history an in-flight request (an append, or a call the decoder pipelined) will leave the server
   * holding, if that is a prefix of `history` — the server runs one session's requests in arrival
   * order. Only if every request in flight agrees with `history` up to there: whatever order they are
   * applied in, the server then holds `history`'s first tokens or fewer (then it answers out_of_sync
   * and the request is re-sent from what it holds), never other tokens.
   */
  private optimisticBase(history: readonly number[], base: number): number {
    const inFlight = [...this.callsInFlight].filter(([h]) => h !== history).map(([h, o]) => ({ h, extra: o.draft }));
    if (this.inflight) inFlight.push({ h: this.inflight, extra: false });
    let best = base;
    for (const { h } of inFlight) if (h.length > best && commonPrefixLength(h, history) === h.length) best = h.length;
    if (best === base) return base;
    // a call that asked for a continuation leaves tokens beyond its history, unknown until it answers
    const safe = inFlight.every(({ h, extra }) =>
      extra && h.length < best ? false : commonPrefixLength(h, history) >= Math.min(best, h.length),
    );
    return safe ? best : base;
  }

  /**
   * A session to send to: the current one, unless it is `lost`; then a new one — one for all the
   * calls in flight that found it lost (the decoder pipelines several), not one each.
   */
  private async ensureSession(signal: AbortSignal, lost?: string): Promise<void> {
    if (this.closed) throw new CloudCallError("offline", "the cloud client was closed");
    if (this.sessionId && this.sessionId !== lost) return;
    this.creating ??= this.createSession(signal).finally(() => (this.creating = null));
    await this.creating;
  }

  private async createSession(signal: AbortSignal): Promise<void> {
    const req: CreateSessionRequest = { protocol: PROTOCOL_VERSION, client: this.device! };
    let res: CreateSessionResponse;
    try {
      res = await this.call("/v1/sessions", req, signal, CreateSessionResponseSchema, "session reply");
    } catch (err) {
      if (err instanceof ServerError && err.body?.code === "vocab_mismatch") {
        throw new CloudCallError("vocab_mismatch", err.body.message, err.status);
      }
      throw err;
    }
    if (this.closed) {
      // closed while the session was being opened: give it back at once
      await this.request("DELETE", `/v1/sessions/${res.sessionId}`, undefined, AbortSignal.timeout(this.deadlineMs)).catch(() => undefined);
      throw new CloudCallError("offline", "the cloud client was closed");
    }
    this.cloudModel = res.model;
    if (res.model.vocabHash !== this.device!.vocabHash) throw new VocabularyMismatchError(this.device!, res.model);
    this.sessionId = res.sessionId;
    this.confirmed = [];
    this.uploaded = new WeakMap();
    // a replica is used only if it runs the very weights of the device's SLM (ModelIdentity.weights)
    const r = res.replica;
    this.replica =
      r && r.model.weights !== undefined && r.model.weights === this.device!.weights && r.model.vocabHash === this.device!.vocabHash
        ? r
        : undefined;
    this.stats.sessions++;
  }

  /** A delta to send, counted into what the cloud has been shown (stats.tokensUp). */
  private delta(history: readonly number[], base: number, tokens: number[]): AppendRequest {
    this.stats.tokensUp += tokens.length;
    return delta(history, base, tokens);
  }

  /** The server session holding this client's conversation, if one is open. */
  get session(): string | undefined {
    return this.sessionId;
  }

  /**
   * The user's Forget: the server deletes `sessionId` (default: the current session) with everything
   * it holds, and confirms it (ForgetResponse). The next call opens a new session and syncs again.
   * Throws when the server does not confirm (unreachable, refused): then nothing is known to be forgotten.
   */
  async forget(sessionId = this.sessionId): Promise<ForgetResponse | null> {
    if (!sessionId) return null;
    if (sessionId === this.sessionId) {
      await this.syncing;
      this.sessionId = undefined;
      this.confirmed = [];
      this.uploaded = new WeakMap();
    }
    const signal = AbortSignal.timeout(Math.max(this.deadlineMs, 5000));
    const body: ForgetRequest = { forget: true };
    return this.call(`/v1/sessions/${encodeURIComponent(sessionId)}/forget`, body, signal, ForgetResponseSchema, "forget reply");
  }

  private expectLength(actual: unknown, expected: number): void {
    if (actual !== expected) {
      throw new CloudCallError("malformed", `the cloud reported ${JSON.stringify(actual)} tokens, expected ${expected}`);
    }
  }

  /** A POST whose reply is the message `schema` describes (shared/protocol.ts). */
  private async call<S extends z.ZodType>(path: string, body: unknown, signal: AbortSignal, schema: S, what: string): Promise<z.infer<S>> {
    return parseReply(schema, await this.request("POST", path, body, signal), what);
  }

  private async request(method: string, path: string, body: unknown, signal: AbortSignal): Promise<unknown> {
    return this.reply(
      await cloudRequest(this.base + path, method, body, this.opts.token, signal, this.stats, PROTOCOL_LIMITS.maxReplyBytes),
    );
  }

  /** A reply's JSON object; a refusal is a ServerError with the server's error body, when it sent one. */
  private reply(res: RawReply): unknown {
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

  /** Classifies a failure, updates the back-off, and returns the error to throw. */
  private fail(err: unknown, deadline: AbortSignal, userSignal?: AbortSignal, deadlineMs = this.deadlineMs): Error {
    if (err instanceof VocabularyMismatchError) return err;
    if (userSignal?.aborted) return new CloudCallError("aborted", "aborted");
    const e =
      err instanceof ServerError
        ? new CloudCallError(
            "http",
            `cloud error: HTTP ${err.status}${err.body ? ` ${err.body.code}: ${err.body.message}` : ""}`,
            err.status,
          )
        : classifyFailure(err, deadline, deadlineMs);
    // a failed or timed-out call may have left the server anywhere after the common prefix: the next
    // call's `base` (≤ what it holds) makes it truncate, so the mirror stays truthful. A request the
    // server refused (4xx, no back-off) starts again from a fresh session, in case the session state
    // is what it objects to.
    if (!this.health.failed(e) && e.reason === "http") this.sessionId = undefined;
    return e;
  }
}

/** A stream's wait for each position has its own deadline (RouteStream.at): the request itself has none. */
const NOT_A_DEADLINE = new AbortController().signal;

/** Longest route line accepted: a position is ~40 bytes; anything far longer is not a route stream. */
const MAX_LINE = 4096;
/**
 * Most bytes one route stream may carry: its positions (at most maxRoute) and last line, with room to
 * spare. Blank lines or a server that never ends would otherwise be read without bound.
 */
const MAX_ROUTE_BYTES = (PROTOCOL_LIMITS.maxRoute + 2) * 256;

/** The JSON values of an NDJSON response body, as they arrive. */
async function* ndjsonLines(res: Response, stats: { bytesDown: number }): AsyncGenerator<unknown> {
  if (!res.body) throw new CloudCallError("malformed", "the route stream has no body");
  const decoder = new TextDecoder();
  let buffered = "";
  let total = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    stats.bytesDown += chunk.byteLength;
    total += chunk.byteLength;
    // leaving the loop by this throw cancels the body, which closes the connection
    if (total > MAX_ROUTE_BYTES)
      throw new CloudCallError("malformed", `the route stream carried more than ${MAX_ROUTE_BYTES} bytes: refused`);
    buffered += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.trim() === "") continue;
      try {
        yield JSON.parse(line) as unknown;
      } catch {
        throw new CloudCallError("malformed", "the cloud sent a malformed route line");
      }
    }
    if (buffered.length > MAX_LINE) throw new CloudCallError("malformed", "the cloud sent an over-long route line");
  }
}

/** A delta of `history` from `base`, fingerprinting the tokens before it (AppendRequest.prefix). */
function delta(history: readonly number[], base: number, tokens: number[]): AppendRequest {
  return base > 0 ? { base, tokens, prefix: prefixHash(history, base) } : { base, tokens };
}

/** Length of the common prefix of `a` and the first `bLength` entries of `b`. */
export function commonPrefixLength(a: readonly number[], b: readonly number[], bLength = b.length): number {
  const n = Math.min(a.length, bLength);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

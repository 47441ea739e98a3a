/**
 * Client for Tandem's cloud token server (shared/protocol.ts): a façade implementing CloudPeer over
 * the parts that hold each concern.
 *
 *   sessionMirror.ts   the server's session as the client knows it: id, confirmed tokens, deltas, re-sync
 *   backgroundSync.ts  committed tokens streamed to the server with /append between calls
 *   nextCall.ts        one /next request (the LLM's token, its continuation), re-sent after a re-sync
 *   routeReader.ts     /route streams from the server's replica of the device's SLM, router uploads
 *   cloudHttp.ts       requests, replies, refusals (ServerError) and failure classification
 *   readingSpeed.ts    the server's learnt reading speed: a call's deadline allows for its catch-up
 *
 * It mirrors the tokens the server's session holds and sends only the delta, as token IDs. Every call
 * has a deadline (default 1.5 s): the chat never waits longer than that on the network. A lost session
 * (server restarted, evicted) is re-created and re-synced transparently; after a failure the client
 * backs off (the decoder then uses the SLM's own tokens at once instead of waiting on a dead server).
 */
import {
  PROTOCOL_LIMITS,
  type ForgetRequest,
  type ForgetResponse,
  ForgetResponseSchema,
  type ModelIdentity,
} from "../../../shared/protocol.js";
import type { Router } from "../../../shared/router.js";
import type { RouteStream } from "./routeStream.js";
import { CloudCallError, type CloudPeer, type CloudState, type CloudStep, type NextOptions, type RouteOptions } from "./peer.js";
import { CloudLearning } from "../cloudPolicy.js";
import { CloudHealth, deadlineSignal, parseCloudUrl, type HealthOptions } from "./callSupport.js";
import { CloudHttp, callError } from "./cloudHttp.js";
import { SessionMirror, type TandemStats } from "./sessionMirror.js";
import { BackgroundSync, DEFAULT_SYNC_CHUNK } from "./backgroundSync.js";
import { NextCaller } from "./nextCall.js";
import { RouteReader } from "./routeReader.js";

export { commonPrefixLength } from "./sessionMirror.js";
export { PRIOR_READ_MS_PER_TOKEN, MAX_CATCH_UP_MS } from "./readingSpeed.js";
export { DEFAULT_SYNC_CHUNK };

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

export class TandemCloudClient implements CloudPeer {
  readonly kind = "tandem";
  readonly stats: TandemStats = { calls: 0, failures: 0, bytesUp: 0, bytesDown: 0, sessions: 0, tokensUp: 0 };
  readonly learnt = new CloudLearning();
  private readonly deadlineMs: number;
  private readonly health: CloudHealth;
  private readonly http: CloudHttp;
  private readonly mirror: SessionMirror;
  private readonly sync: BackgroundSync;
  private readonly calls: NextCaller;
  private readonly routes: RouteReader;

  constructor(private readonly opts: TandemClientOptions) {
    this.http = new CloudHttp(parseCloudUrl(opts.url), opts.token, this.stats);
    this.deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
    const topK = Math.max(0, Math.min(opts.topK ?? 0, PROTOCOL_LIMITS.maxTopK));
    if (opts.logprob === false && topK > 0) throw new Error("topK alternatives are log-probabilities: they need logprob");
    // while offline, /health is asked every second: the status is back online as soon as the cloud answers
    this.health = new CloudHealth({ healthCheck: () => this.probe(), ...opts });
    this.mirror = new SessionMirror(this.http, this.stats, this.deadlineMs, () => this.routes.forgetUploads());
    this.sync = new BackgroundSync(this.mirror, this.http, this.health, this.deadlineMs, opts.syncChunk);
    this.calls = new NextCaller(this.mirror, this.http, topK, opts.logprob !== false);
    const fail = (err: unknown, deadline: AbortSignal, userSignal?: AbortSignal) => this.fail(err, deadline, userSignal);
    this.routes = new RouteReader({
      mirror: this.mirror,
      http: this.http,
      health: this.health,
      sync: this.sync,
      stats: this.stats,
      deadlineMs: this.deadlineMs,
      fail,
    });
  }

  get state(): CloudState {
    return this.health.state;
  }

  get model(): ModelIdentity | undefined {
    return this.mirror.cloudModel;
  }

  /** Whether the session's server runs this device's SLM, so routed stretches are streamed (`route`). */
  get replicated(): boolean {
    return this.opts.replica !== false && this.mirror.replica !== undefined;
  }

  /** The server session holding this client's conversation, if one is open. */
  get session(): string | undefined {
    return this.mirror.sessionId;
  }

  async connect(device: ModelIdentity, signal?: AbortSignal): Promise<ModelIdentity> {
    this.mirror.device = device;
    // opening a session may wait for the server to admit it: a longer deadline than one token's
    const ms = Math.max(this.deadlineMs, 5000);
    const deadline = deadlineSignal(signal, ms);
    try {
      await this.mirror.createSession(deadline);
      this.health.online();
      return this.mirror.cloudModel!;
    } catch (err) {
      throw this.fail(err, deadline, undefined, ms);
    }
  }

  async next(history: readonly number[], signal?: AbortSignal, opts: NextOptions = {}): Promise<CloudStep> {
    if (!this.mirror.device) throw new Error("connect() first");
    if (this.mirror.closed) throw new CloudCallError("offline", "the cloud client was closed");
    this.health.checkOpen();
    const t0 = performance.now();
    this.stats.calls++;
    const deadlineMs = this.deadlineMs + this.mirror.catchUpMs(history);
    const deadline = deadlineSignal(signal, deadlineMs);
    const snapshot = history.slice();
    const draft = Math.max(0, Math.min(Math.floor(opts.draft ?? 0), PROTOCOL_LIMITS.maxDraft));
    this.mirror.callsInFlight.set(snapshot, { draft: draft > 0 });
    try {
      await this.mirror.ensureSession(deadline);
      const res = await this.calls.next(snapshot, deadline, draft, opts.sampling);
      this.mirror.reading.learn(res.evaluated, performance.now() - t0);
      this.health.online();
      this.sync.resume();
      const draftMs =
        res.draft && typeof res.draftMs === "number" && Number.isFinite(res.draftMs) && res.draftMs >= 0 ? res.draftMs : undefined;
      return {
        tokenId: res.tokenId,
        logprob: res.logprob,
        top: res.top,
        latencyMs: performance.now() - t0,
        evaluated: res.evaluated,
        ...(res.draft ? { draft: res.draft } : {}),
        ...(draftMs !== undefined ? { draftMs } : {}),
      };
    } catch (err) {
      this.stats.failures++;
      throw this.fail(err, deadline, signal, deadlineMs);
    } finally {
      this.mirror.callsInFlight.delete(snapshot);
    }
  }

  route(history: readonly number[], opts: RouteOptions, signal?: AbortSignal): RouteStream | null {
    if (this.opts.replica === false || this.mirror.closed || !this.mirror.device || !this.health.open) return null;
    return this.routes.runs(opts.router) ? this.routes.open(history, opts, signal) : null;
  }

  /** Uploads `router`'s network to the session's replica in the background, if it needs one (RouteReader.prepare). */
  prepareRoute(router: Router): void {
    if (this.opts.replica !== false) this.routes.prepare(router);
  }

  observe(history: readonly number[]): void {
    if (this.opts.backgroundSync !== false) this.sync.observe(history);
  }

  async close(): Promise<void> {
    // terminal: a call still in flight must not open a new session when it finds this one deleted
    // (it would hold a server slot until idle eviction)
    this.mirror.closed = true;
    this.health.stop();
    await this.sync.stop();
    const id = this.mirror.sessionId;
    this.mirror.drop();
    if (!id) return;
    try {
      await this.http.request("DELETE", `/v1/sessions/${id}`, undefined, AbortSignal.timeout(this.deadlineMs));
    } catch {
      // the server evicts idle sessions anyway; closing must never fail the caller
    }
  }

  /**
   * The user's Forget: the server deletes `sessionId` (default: the current session) with everything
   * it holds, and confirms it (ForgetResponse). The next call opens a new session and syncs again.
   * Throws when the server does not confirm (unreachable, refused): then nothing is known to be forgotten.
   */
  async forget(sessionId = this.mirror.sessionId): Promise<ForgetResponse | null> {
    if (!sessionId) return null;
    if (sessionId === this.mirror.sessionId) {
      await this.sync.settled();
      this.mirror.drop();
    }
    const signal = AbortSignal.timeout(Math.max(this.deadlineMs, 5000));
    const body: ForgetRequest = { forget: true };
    return this.http.call(`/v1/sessions/${encodeURIComponent(sessionId)}/forget`, body, signal, ForgetResponseSchema, "forget reply");
  }

  /** Whether the server answers /health now (the background health check). */
  private async probe(): Promise<boolean> {
    return !this.mirror.closed && (await this.http.healthy(this.deadlineMs));
  }

  /** Classifies a failure, updates the back-off, and returns the error to throw. */
  private fail(err: unknown, deadline: AbortSignal, userSignal?: AbortSignal, deadlineMs = this.deadlineMs): Error {
    const e = callError(err, deadline, userSignal, deadlineMs);
    // a failed or timed-out call may have left the server anywhere after the common prefix: the next
    // call's `base` (≤ what it holds) makes it truncate, so the mirror stays truthful. A request the
    // server refused (4xx, no back-off) starts again from a fresh session, in case the session state
    // is what it objects to.
    if (e instanceof CloudCallError && !this.health.failed(e) && e.reason === "http") this.mirror.sessionId = undefined;
    return e;
  }
}

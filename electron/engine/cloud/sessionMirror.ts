/**
 * The client's copy of the server's session: its id, the tokens it is known to hold (`confirmed`), the
 * requests on their way that will change them, and the session's (re-)creation and re-sync. Requests
 * send only the delta after what the server holds (`deltaBase`), as token IDs.
 */
import {
  PROTOCOL_LIMITS,
  PROTOCOL_VERSION,
  prefixHash,
  AppendResponseSchema,
  CreateSessionResponseSchema,
  type AppendRequest,
  type CreateSessionRequest,
  type CreateSessionResponse,
  type ModelIdentity,
  type ReplicaInfo,
} from "../../../shared/protocol.js";
import { VocabularyMismatchError } from "../../../inference/modelFile.js";
import { CloudCallError, type CloudStats } from "./peer.js";
import { ServerError, expectLength, type CloudHttp } from "./cloudHttp.js";
import { ReadingSpeed } from "./readingSpeed.js";

export type TandemStats = CloudStats & { tokensUp: number };

export class SessionMirror {
  sessionId: string | undefined;
  /** the device's SLM (set by connect) and the cloud's model (set by the first session) */
  device: ModelIdentity | undefined;
  cloudModel: ModelIdentity | undefined;
  /** the session's SLM replica, when the server has one and it runs the device's SLM */
  replica: ReplicaInfo | undefined;
  /** close() was called: no new sessions */
  closed = false;
  /**
   * Calls in flight (the decoder may pipeline several: one per routed position of its guessed text),
   * and the history each will leave the server holding; `draft`: it leaves tokens beyond that history.
   * While any is in flight the background sync waits.
   */
  readonly callsInFlight = new Map<readonly number[], { draft: boolean }>();
  /** the history the background append in flight will leave the server holding, if it fits one request */
  appendInFlight: readonly number[] | null = null;
  readonly reading = new ReadingSpeed();
  /** tokens the server's session is known to hold, in order */
  private confirmed: number[] = [];
  /** bumped by every call sent: a reply that arrives after a later call went out must not rewrite the mirror */
  private epoch = 0;
  /** a session being created, awaited by every call that needs one */
  private creating: Promise<void> | null = null;

  constructor(
    private readonly http: CloudHttp,
    private readonly stats: TandemStats,
    private readonly deadlineMs: number,
    /** a new session, or none: what was kept per session (uploaded router networks) is gone */
    private readonly onNewSession: () => void,
  ) {}

  /** The path of the current session's `op`. */
  path(op: string): string {
    return `/v1/sessions/${this.sessionId}/${op}`;
  }

  /** How many of the first `length` tokens of `history` the server is known to hold. */
  heldOf(history: readonly number[], length = history.length): number {
    return commonPrefixLength(this.confirmed, history, length);
  }

  /** Extra time for a request on `history`: the server's reading of the tokens it is not known to hold. */
  catchUpMs(history: readonly number[]): number {
    return this.reading.catchUpMs(history.length - this.heldOf(history));
  }

  /**
   * A request building on the first `base` tokens goes out: until it answers the server may hold
   * either state, so only the common prefix is certain. Returns the epoch its reply must match;
   * a call (`supersedes`) starts a new one.
   */
  sending(base: number, supersedes: boolean): number {
    this.confirmed = this.confirmed.slice(0, base);
    return supersedes ? ++this.epoch : this.epoch;
  }

  /** A reply says the server holds `held`, unless a call sent after its request has changed that. */
  confirm(epoch: number, held: number[]): void {
    if (epoch === this.epoch) this.confirmed = held;
  }

  /** The session is gone (closed, forgotten): nothing is held. */
  drop(): void {
    this.sessionId = undefined;
    this.confirmed = [];
    this.onNewSession();
  }

  /**
   * A session to send to: the current one, unless it is `lost`; then a new one — one for all the
   * calls in flight that found it lost (the decoder pipelines several), not one each.
   */
  async ensureSession(signal: AbortSignal, lost?: string): Promise<void> {
    if (this.closed) throw new CloudCallError("offline", "the cloud client was closed");
    if (this.sessionId && this.sessionId !== lost) return;
    this.creating ??= this.createSession(signal).finally(() => (this.creating = null));
    await this.creating;
  }

  async createSession(signal: AbortSignal): Promise<void> {
    const device = this.device!;
    const req: CreateSessionRequest = { protocol: PROTOCOL_VERSION, client: device };
    let res: CreateSessionResponse;
    try {
      res = await this.http.call("/v1/sessions", req, signal, CreateSessionResponseSchema, "session reply");
    } catch (err) {
      if (err instanceof ServerError && err.body?.code === "vocab_mismatch") {
        throw new CloudCallError("vocab_mismatch", err.body.message, err.status);
      }
      throw err;
    }
    if (this.closed) {
      // closed while the session was being opened: give it back at once
      await this.http
        .request("DELETE", `/v1/sessions/${res.sessionId}`, undefined, AbortSignal.timeout(this.deadlineMs))
        .catch(() => undefined);
      throw new CloudCallError("offline", "the cloud client was closed");
    }
    this.cloudModel = res.model;
    if (res.model.vocabHash !== device.vocabHash) throw new VocabularyMismatchError(device, res.model);
    this.sessionId = res.sessionId;
    this.confirmed = [];
    this.onNewSession();
    // a replica is used only if it runs the very weights of the device's SLM (ModelIdentity.weights)
    const r = res.replica;
    this.replica =
      r && r.model.weights !== undefined && r.model.weights === device.weights && r.model.vocabHash === device.vocabHash ? r : undefined;
    this.stats.sessions++;
  }

  /**
   * After a request the server refused: re-creates a lost session or corrects what the client
   * believes the server holds, and says whether to send again; false for every other failure.
   */
  async resync(err: unknown, signal: AbortSignal, session: string | undefined): Promise<boolean> {
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

  /**
   * Where the delta of a request for `history` starts: after what the server holds (or will, once the
   * requests on their way arrive: `optimistic`). A delta longer than one request allows goes up in
   * appends first.
   */
  async deltaBase(history: readonly number[], signal: AbortSignal, optimistic: boolean): Promise<number> {
    let base = this.heldOf(history);
    if (optimistic) base = this.optimisticBase(history, base);
    while (history.length - base > PROTOCOL_LIMITS.maxDeltaTokens) {
      const chunk = history.slice(base, base + PROTOCOL_LIMITS.maxDeltaTokens);
      const r = await this.http.call(this.path("append"), this.delta(history, base, chunk), signal, AppendResponseSchema, "append reply");
      expectLength(r.length, base + chunk.length);
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
    if (this.appendInFlight) inFlight.push({ h: this.appendInFlight, extra: false });
    let best = base;
    for (const { h } of inFlight) if (h.length > best && commonPrefixLength(h, history) === h.length) best = h.length;
    if (best === base) return base;
    // a call that asked for a continuation leaves tokens beyond its history, unknown until it answers
    const safe = inFlight.every(({ h, extra }) =>
      extra && h.length < best ? false : commonPrefixLength(h, history) >= Math.min(best, h.length),
    );
    return safe ? best : base;
  }

  /** A delta of `history` from `base` to send, counted into what the cloud has been shown (stats.tokensUp). */
  delta(history: readonly number[], base: number, tokens: number[]): AppendRequest {
    this.stats.tokensUp += tokens.length;
    // the tokens before the delta are fingerprinted (AppendRequest.prefix)
    return base > 0 ? { base, tokens, prefix: prefixHash(history, base) } : { base, tokens };
  }
}

/** Length of the common prefix of `a` and the first `bLength` entries of `b`. */
export function commonPrefixLength(a: readonly number[], b: readonly number[], bLength = b.length): number {
  const n = Math.min(a.length, bLength);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

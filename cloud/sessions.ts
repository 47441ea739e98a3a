/**
 * Sessions of the cloud token server: each one mirrors one conversation's token history in one KV-cached
 * sequence of a single shared LlamaContext.
 *
 * Why one context with N sequences rather than N contexts: node-llama-cpp queues the evaluations of all
 * sequences of a context and decodes whatever is queued in one llama_decode call, so concurrent
 * requests of different sessions share one forward pass (measured: 8 concurrent 4-token prompts → 1
 * decode, the same prompts one after another → 8). How a shared batch is laid out matters for
 * correctness, not only speed: cloud/batching.ts (without it, sessions could get each other's tokens).
 *
 * How node-llama-cpp 3.21.1 sizes the context: `createContext({contextSize, sequences})` treats
 * `contextSize` as the size of EACH sequence and allocates `contextSize × sequences` KV cells
 * (LlamaContext.js: "each sequence needs its own <contextSize> of cells"); `context.contextSize` reports
 * the per-sequence size. A requested size at or below the model's training context is padded up to a
 * multiple of 256. A sequence holds at most `contextSize - 1` tokens: evaluating beyond that triggers
 * node-llama-cpp's context shift, which would silently drop tokens from the client's history, so this
 * manager refuses such requests with `context_overflow` before evaluating anything (and installs a
 * context-shift strategy that throws, as a backstop).
 *
 * Requests of one session run one after another (a promise queue per session); different sessions run
 * concurrently. Sessions are never evicted while in use: only sessions idle beyond `idleTimeoutMs`.
 *
 * Admission: the KV cache is allocated once for `maxSessions` sequences (cloud/memory.ts), and with a
 * budget (`maxKvBytes`) `maxSessions` is checked against it, or derived from it, before anything is
 * allocated. Work waiting for the model is bounded too: a session queues at most `maxQueuedPerSession`
 * requests (429 beyond), the server at most `maxQueued` in all (503 beyond), so a client that keeps
 * sending (or abandons requests on its deadline and sends again) cannot pile up parsed deltas.
 */
import { randomUUID } from "node:crypto";
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { prefixHash, type AppendResponse, type NextResponse, type RouteEnd, type RouteLine, type TokenLogprob } from "../shared/protocol.js";
import { threadsFor } from "../shared/node/llama.js";
import { CloudError, overloaded } from "./errors.js";
import { orderedOutputsStrategy } from "./batching.js";
import { kvLayout, MAX_SEQUENCES, sessionsWithinBudget } from "./memory.js";
import type { ReplicaRun } from "./replica.js";

export const DEFAULT_MAX_SESSIONS = 8;
export const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60_000;
/** the device client sends one request at a time per session; a few more cover abandoned ones */
export const DEFAULT_MAX_QUEUED_PER_SESSION = 8;
const DEFAULT_CONTEXT_SIZE = 4096;
/** node-llama-cpp pads a sequence's context to a multiple of this (padSafeContextSize) */
const CONTEXT_PAD = 256;
/** Retry-After for a full server when no session will be idle soon: a hint, not a promise */
const MAX_RETRY_AFTER_MS = 60_000;

/** Default bound on requests waiting for the model across all sessions: room for every session's usual one and then some. */
export function defaultMaxQueued(maxSessions: number): number {
  return Math.max(32, 4 * maxSessions);
}

/** ln of the smallest positive double: stands in for ln(0), which JSON cannot carry (-Infinity → null). */
const LOG_FLOOR = Math.log(Number.MIN_VALUE);

export interface SessionManagerOptions {
  model: LlamaModel;
  /** token IDs must lie in [0, vocabSize): llama.cpp must never see an out-of-range ID */
  vocabSize: number;
  /** sequences of the shared context = most concurrent sessions (default 8, or what fits `maxKvBytes`) */
  maxSessions?: number;
  /** KV-cache budget in bytes: `maxSessions` must fit in it, or is derived from it when not given */
  maxKvBytes?: number;
  /** requests one session may have queued or running (default 8); more get 429 rate_limited */
  maxQueuedPerSession?: number;
  /** requests queued or running across all sessions (default max(32, 4 × maxSessions)); more get 503 */
  maxQueued?: number;
  /** tokens per session (default: the model's training context, at most 4096) */
  contextSize?: number;
  /** context threads (default: threadsFor(model size)) */
  threads?: number;
  /** a session unused for this long may be evicted (default 10 min) */
  idleTimeoutMs?: number;
  /** most sessions one client (owner key) may hold (default: maxSessions) */
  maxSessionsPerOwner?: number;
  /** clock, for tests */
  now?: () => number;
}

export interface SessionCounters {
  created: number;
  deleted: number;
  evicted: number;
  /** append/next/truncate requests served */
  requests: number;
  predictions: number;
  /** tokens the LLM evaluated, re-evaluations included */
  tokensEvaluated: number;
  /** next() calls with an empty delta, answered by re-evaluating the last held token */
  rePredictions: number;
  /** continuation tokens predicted for NextRequest.draft */
  draftTokens: number;
  /** /route streams served, positions they sent, and those the replica routed to the LLM */
  routeStreams: number;
  routePositions: number;
  routeRouted: number;
  rollbacks: number;
  tokensRolledBack: number;
  outOfSync: number;
  overflows: number;
  refusedTooMany: number;
  /** requests refused because their session's queue was full */
  refusedSessionQueue: number;
  /** requests refused because the server's queue was full */
  refusedServerQueue: number;
}

export interface SessionStats extends SessionCounters {
  sessions: number;
  maxSessions: number;
  /** tokens one session can hold */
  contextSize: number;
}

export interface MemoryStats {
  /** KV bytes one held token takes (all layers, keys and values) */
  kvBytesPerToken: number;
  /** KV cache allocated up front: maxSessions × cells per session × kvBytesPerToken */
  kvBytesAllocated: number;
  /** the budget it was checked against, if any */
  kvBytesBudget: number | null;
  /** tokens held by all sessions */
  tokensHeld: number;
  /** tokensHeld × kvBytesPerToken: the part of the allocation in use */
  kvBytesInUse: number;
}

export interface QueueStats {
  /** requests queued or running, all sessions */
  pending: number;
  maxPending: number;
  maxPendingPerSession: number;
  /** most requests ever pending at once */
  peakPending: number;
}

/** One session as operators see it: no ID (IDs are the only thing guarding a session besides the token). */
export interface SessionUsage {
  tokens: number;
  kvBytes: number;
  pending: number;
  idleMs: number;
}

interface Session {
  readonly id: string;
  readonly owner: string;
  readonly sequence: LlamaContextSequence;
  lastUsed: number;
  /** requests queued or running: a session with pending work is never idle */
  pending: number;
  /** settles when the last queued request has finished */
  tail: Promise<void>;
  closed: boolean;
}

class ContextShiftRefused extends Error {}

export class SessionManager {
  readonly maxSessions: number;
  /** tokens one session can hold (the sequence size minus the one cell node-llama-cpp keeps free) */
  readonly capacity: number;
  readonly idleTimeoutMs: number;
  private readonly maxPerOwner: number;
  readonly maxQueuedPerSession: number;
  readonly maxQueued: number;
  readonly kvBytesPerToken: number;
  readonly kvBytesAllocated: number;
  readonly kvBytesBudget: number | null;
  /** requests queued or running, all sessions */
  private pendingTotal = 0;
  private peakPending = 0;
  private readonly sessions = new Map<string, Session>();
  /** cleared sequences ready for reuse (see release()) */
  private readonly free: LlamaContextSequence[] = [];
  /** sequences taken from the context so far: free + in sessions + being released */
  private sequencesCreated = 0;
  /** closes in progress: their sequences come back to `free` when they settle */
  private readonly releasing = new Set<Promise<void>>();
  private readonly counters: SessionCounters = {
    created: 0,
    deleted: 0,
    evicted: 0,
    requests: 0,
    predictions: 0,
    tokensEvaluated: 0,
    rePredictions: 0,
    draftTokens: 0,
    routeStreams: 0,
    routePositions: 0,
    routeRouted: 0,
    rollbacks: 0,
    tokensRolledBack: 0,
    outOfSync: 0,
    overflows: 0,
    refusedTooMany: 0,
    refusedSessionQueue: 0,
    refusedServerQueue: 0,
  };
  private readonly sweepTimer: NodeJS.Timeout;
  private disposed = false;

  private constructor(
    private readonly context: LlamaContext,
    private readonly vocabSize: number,
    private readonly now: () => number,
    opts: {
      maxSessions: number;
      idleTimeoutMs: number;
      maxPerOwner: number;
      maxQueuedPerSession: number;
      maxQueued: number;
      kvBytesPerToken: number;
      kvBytesBudget: number | null;
    },
  ) {
    this.maxSessions = opts.maxSessions;
    this.idleTimeoutMs = opts.idleTimeoutMs;
    this.maxPerOwner = opts.maxPerOwner;
    this.maxQueuedPerSession = opts.maxQueuedPerSession;
    this.maxQueued = opts.maxQueued;
    this.kvBytesPerToken = opts.kvBytesPerToken;
    this.kvBytesBudget = opts.kvBytesBudget;
    // context.contextSize is per sequence (see the file comment); every sequence's cells exist from the start
    this.kvBytesAllocated = context.contextSize * opts.maxSessions * opts.kvBytesPerToken;
    this.capacity = context.contextSize - 1;
    // sweep often enough that a session goes at most ~1.5 idle timeouts unnoticed, at most every 30 s
    const every = Math.max(10, Math.min(30_000, Math.floor(this.idleTimeoutMs / 2)));
    // sweep() cannot reject (release() catches everything); the catch only keeps that true for good
    this.sweepTimer = setInterval(() => this.sweep().catch(noop), every);
    this.sweepTimer.unref(); // idle sessions must not keep the process alive
  }

  static async create(opts: SessionManagerOptions): Promise<SessionManager> {
    const contextSize = positiveInt(
      opts.contextSize ?? Math.min(DEFAULT_CONTEXT_SIZE, opts.model.trainContextSize),
      "contextSize",
    );
    const { bytesPerToken } = kvLayout(opts.model);
    const budget = opts.maxKvBytes === undefined ? null : positiveInt(opts.maxKvBytes, "maxKvBytes");
    const maxSessions =
      budget === null
        ? positiveInt(opts.maxSessions ?? DEFAULT_MAX_SESSIONS, "maxSessions")
        : sessionsWithinBudget({
            bytesPerToken,
            // before the context exists its padded size is not known: assume the padding, which only grows it
            cellsPerSession: Math.ceil(contextSize / CONTEXT_PAD) * CONTEXT_PAD,
            budgetBytes: budget,
            maxSessions: opts.maxSessions === undefined ? undefined : positiveInt(opts.maxSessions, "maxSessions"),
          });
    if (maxSessions > MAX_SEQUENCES) {
      // llama.cpp refuses more sequences per context with an opaque "Failed to create context"
      throw new RangeError(`maxSessions must be at most ${MAX_SEQUENCES} (llama.cpp's limit of sequences per context), got ${maxSessions}`);
    }
    const idleTimeoutMs = positiveInt(opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, "idleTimeoutMs");
    const maxPerOwner = positiveInt(opts.maxSessionsPerOwner ?? maxSessions, "maxSessionsPerOwner");
    const maxQueuedPerSession = positiveInt(opts.maxQueuedPerSession ?? DEFAULT_MAX_QUEUED_PER_SESSION, "maxQueuedPerSession");
    const maxQueued = positiveInt(opts.maxQueued ?? defaultMaxQueued(maxSessions), "maxQueued");
    let created: LlamaContext | undefined;
    const context = await opts.model.createContext({
      // per sequence: node-llama-cpp multiplies it by `sequences` itself (see the file comment)
      contextSize,
      sequences: maxSessions,
      threads: opts.threads ?? threadsFor(opts.model.size),
      // token-level routing rolls back constantly; with a sliding-window cache, erasing tokens would force
      // node-llama-cpp to re-evaluate the whole sequence, so keep the full cache for SWA models
      swaFullCache: true,
      // sessions must never receive each other's predictions (cloud/batching.ts)
      batching: { itemPrioritizationStrategy: orderedOutputsStrategy(() => created) },
    });
    created = context;
    const manager = new SessionManager(context, opts.vocabSize, opts.now ?? Date.now, {
      maxSessions,
      idleTimeoutMs,
      maxPerOwner,
      maxQueuedPerSession,
      maxQueued,
      kvBytesPerToken: bytesPerToken,
      kvBytesBudget: budget,
    });
    if (budget !== null && manager.kvBytesAllocated > budget) {
      // cannot happen with the padding assumed above; if node-llama-cpp pads differently, say so rather than overrun
      await manager.dispose();
      throw new Error(`The context took ${manager.kvBytesAllocated} bytes of KV cache, more than the budget of ${budget}`);
    }
    return manager;
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Opens a session for `owner` (the client's key), after evicting sessions idle beyond the threshold. */
  async open(owner: string): Promise<{ sessionId: string }> {
    this.ensureOpen();
    // idle sessions would be swept soon anyway; freeing them now lets their owner and others start new ones
    await this.sweep();
    const owned = this.countOwned(owner);
    if (owned >= this.maxPerOwner) {
      this.counters.refusedTooMany++;
      throw new CloudError("too_many_sessions", `This client already holds ${owned} sessions (the most allowed); delete one first`, {
        retryAfterMs: this.retryAfterMs(owner),
      });
    }
    const sequence = await this.takeSequence();
    this.ensureOpen();
    if (this.countOwned(owner) >= this.maxPerOwner) {
      // a concurrent open() of the same client won the race while we waited for a sequence
      this.free.push(sequence);
      this.counters.refusedTooMany++;
      throw new CloudError("too_many_sessions", "This client already holds the most sessions allowed; delete one first", {
        retryAfterMs: this.retryAfterMs(owner),
      });
    }
    const id = randomUUID();
    this.sessions.set(id, { id, owner, sequence, lastUsed: this.now(), pending: 0, tail: Promise.resolve(), closed: false });
    this.counters.created++;
    return { sessionId: id };
  }

  /** Applies the delta: tokens[base..] of the client's history. */
  append(id: string, base: number, tokens: readonly number[], prefix?: string): Promise<AppendResponse> {
    return this.enqueue(id, async (s) => {
      this.checkDelta(s, base, tokens, prefix);
      await this.rollback(s, base);
      await this.evaluate(s, tokens);
      return { length: s.sequence.nextTokenIndex, evaluated: tokens.length };
    });
  }

  /**
   * Applies the delta, predicts the LLM's token after it, then continues the device's routed decoding
   * with the replica (RouteRequest): `emit` gets each position as soon as it is decided. `follow` starts
   * the replica at a history (null: no slot free). Ends after `max` positions, an end-of-generation
   * token, a full session, when `signal` aborts (the client left) or at once when another request for
   * the session is waiting (the device's tokens have left the replica's: that request truncates them).
   */
  route(
    id: string,
    req: { base: number; tokens: readonly number[]; prefix?: string; max: number; position: number },
    follow: (session: string, history: readonly number[]) => Promise<ReplicaRun | null>,
    emit: (line: RouteLine) => void,
    signal: AbortSignal,
  ): Promise<{ end: RouteEnd; length: number }> {
    return this.enqueue(id, async (s) => {
      const { delta, keep } = this.predictionDelta(s, req.base, req.tokens, req.prefix);
      await this.rollback(s, keep);
      const history: number[] = [...s.sequence.contextTokens, ...delta];
      // the replica reads the history while the LLM predicts: they are separate contexts, and the
      // replica's prompt read would otherwise delay every position after the first
      const following = req.max > 1 ? follow(s.id, history) : Promise.resolve(null);
      following.catch(noop); // awaited below; a failure here must not count as unhandled meanwhile
      let first: number;
      try {
        first = (await this.evaluate(s, delta, 0, false)).tokenId;
      } catch (err) {
        void following.then((run) => run?.release(), noop);
        throw err;
      }
      this.counters.predictions++;
      this.counters.routeStreams++;
      this.counters.routePositions++;
      emit({ tokenId: first, routed: true });
      const run = await following;
      if (!run) return { end: req.max > 1 ? "replica-busy" : "max", length: s.sequence.nextTokenIndex };
      try {
        const end = await this.continueRouted(s, [...history, first], run, req, emit, signal);
        return { end, length: s.sequence.nextTokenIndex };
      } finally {
        run.release();
      }
    });
  }

  /** The positions after `history` (whose last token is the LLM's first), decided by the replica `run` (positioned before it). */
  private async continueRouted(
    s: Session,
    history: number[],
    run: ReplicaRun,
    req: { max: number; position: number },
    emit: (line: RouteLine) => void,
    signal: AbortSignal,
  ): Promise<RouteEnd> {
    const first = history[history.length - 1]!;
    if (this.context.model.isEogToken(first as Token)) return "eog";
    await run.advance(first);
    // tokens the LLM has not read yet: it reads them in one batch at the next routed position
    const pending = [first];
    for (let k = 1; k < req.max; k++) {
      if (signal.aborted || s.pending > 1 || s.closed) return "preempted";
      if (history.length >= Math.min(this.capacity, run.capacity)) return "full";
      const d = run.decide(req.position + k);
      let token = d.tokenId;
      if (d.routes) {
        token = (await this.evaluate(s, pending, 0, false)).tokenId;
        pending.length = 0;
        this.counters.routeRouted++;
      }
      this.counters.routePositions++;
      emit({ tokenId: token, routed: d.routes });
      pending.push(token);
      history.push(token);
      if (this.context.model.isEogToken(token as Token)) return "eog";
      await run.advance(token);
    }
    return "max";
  }

  /**
   * Applies the delta and predicts, greedily, the token after the session's history; with `draft`,
   * goes on predicting that many more tokens (the verified continuation: NextRequest.draft).
   */
  next(id: string, base: number, tokens: readonly number[], topK: number, draft = 0, prefix?: string, logprob = true): Promise<NextResponse> {
    return this.enqueue(id, async (s) => {
      const { delta, keep } = this.predictionDelta(s, base, tokens, prefix);
      await this.rollback(s, keep);
      const prediction = await this.evaluate(s, delta, logprob ? topK : 0, logprob);
      this.counters.predictions++;
      const t0 = performance.now();
      const continuation = draft > 0 ? await this.continueGreedily(s, prediction.tokenId, draft) : undefined;
      return {
        length: s.sequence.nextTokenIndex,
        evaluated: delta.length + (continuation?.length ?? 0),
        ...prediction,
        ...(continuation ? { draft: continuation, draftMs: +(performance.now() - t0).toFixed(3) } : {}),
      };
    });
  }

  /** The tokens to evaluate for a prediction after `tokens[base..]`, and how many held tokens to keep. */
  private predictionDelta(s: Session, base: number, tokens: readonly number[], prefix?: string): { delta: readonly number[]; keep: number } {
    this.checkDelta(s, base, tokens, prefix);
    if (tokens.length > 0) return { delta: tokens, keep: base };
    // the logits of the last held token are gone (only the most recent decode keeps any, and it
    // may not have asked for them): drop that token and evaluate it again to predict from it
    if (base === 0) throw new CloudError("bad_request", "Nothing to predict from: the session holds no tokens and the delta is empty");
    this.counters.rePredictions++;
    return { delta: [s.sequence.contextTokens[base - 1]!], keep: base - 1 };
  }

  /**
   * The LLM's greedy continuation after `token`: up to `n` tokens, one decode each (batched with
   * other sessions' work like any evaluation), stopping after an end-of-generation token or where
   * the session is full. Leaves `token` and all continuation tokens but the last evaluated.
   */
  private async continueGreedily(s: Session, token: number, n: number): Promise<number[]> {
    const out: number[] = [];
    // each step evaluates one more token; a sequence holds at most `capacity` tokens
    const room = Math.min(n, this.capacity - s.sequence.nextTokenIndex);
    if (room <= 0) return out;
    // node-llama-cpp's own loop: one sampler for the whole continuation, and the token only — no
    // confidence, which would sort the whole vocabulary (NextResponse.draft)
    const gen = s.sequence.evaluate([token as Token], { temperature: 0, yieldEogToken: true });
    try {
      for await (const next of gen) {
        this.counters.tokensEvaluated++;
        this.counters.draftTokens++;
        out.push(next);
        if (out.length >= room || this.context.model.isEogToken(next)) break;
      }
    } catch (err) {
      if (err instanceof ContextShiftRefused) throw new CloudError("context_overflow", `The session is full (${this.capacity} tokens)`);
      throw err;
    }
    return out;
  }

  /** Checks that the session exists (throws session_not_found otherwise) and marks it used. */
  touch(id: string): void {
    this.get(id).lastUsed = this.now();
  }

  /** Cuts the session's history to `length` tokens. */
  truncate(id: string, length: number): Promise<AppendResponse> {
    return this.enqueue(id, async (s) => {
      this.checkDelta(s, length, []);
      await this.rollback(s, length);
      return { length: s.sequence.nextTokenIndex, evaluated: 0 };
    });
  }

  /** Deletes a session; requests already running finish first, queued ones fail with session_not_found. */
  async delete(id: string): Promise<void> {
    const s = this.get(id);
    this.counters.deleted++;
    await this.close(s);
  }

  /** Evicts every session idle for longer than the idle timeout; resolves to how many. */
  async sweep(): Promise<number> {
    const idle = [...this.sessions.values()].filter((s) => this.isIdle(s));
    this.counters.evicted += idle.length;
    await Promise.all(idle.map((s) => this.close(s)));
    return idle.length;
  }

  stats(): SessionStats {
    return { ...this.counters, sessions: this.sessions.size, maxSessions: this.maxSessions, contextSize: this.capacity };
  }

  memory(): MemoryStats {
    let tokensHeld = 0;
    for (const s of this.sessions.values()) tokensHeld += s.sequence.nextTokenIndex;
    return {
      kvBytesPerToken: this.kvBytesPerToken,
      kvBytesAllocated: this.kvBytesAllocated,
      kvBytesBudget: this.kvBytesBudget,
      tokensHeld,
      kvBytesInUse: tokensHeld * this.kvBytesPerToken,
    };
  }

  queue(): QueueStats {
    return { pending: this.pendingTotal, maxPending: this.maxQueued, maxPendingPerSession: this.maxQueuedPerSession, peakPending: this.peakPending };
  }

  /** Per-session usage, largest first, without IDs. */
  usage(): SessionUsage[] {
    const now = this.now();
    return [...this.sessions.values()]
      .map((s) => {
        const tokens = s.sequence.nextTokenIndex;
        return { tokens, kvBytes: tokens * this.kvBytesPerToken, pending: s.pending, idleMs: s.pending > 0 ? 0 : Math.max(0, now - s.lastUsed) };
      })
      .sort((a, b) => b.tokens - a.tokens);
  }

  /** Frees everything. Requests still running finish (or fail) first; queued ones fail. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    clearInterval(this.sweepTimer);
    const tails = [...this.sessions.values()].map((s) => {
      s.closed = true;
      return s.tail;
    });
    this.sessions.clear();
    await Promise.allSettled(tails);
    await this.context.dispose();
  }

  // ---- internals ----

  private ensureOpen(): void {
    // not the client's fault and not a bug: 503, so clients back off and come back to the restarted server
    if (this.disposed) throw new CloudError("internal", "The server is shutting down", { status: 503, retryAfterMs: 5000 });
  }

  private get(id: string): Session {
    this.ensureOpen();
    const s = this.sessions.get(id);
    if (!s) throw new CloudError("session_not_found", `No session ${id} (it was deleted, evicted after being idle, or the server restarted)`);
    if (this.isIdle(s)) {
      // the sweep timer has not come round yet: evict now so expiry does not depend on its timing
      this.counters.evicted++;
      void this.close(s);
      throw new CloudError("session_not_found", `Session ${id} was evicted after being idle for more than ${this.idleTimeoutMs} ms`);
    }
    return s;
  }

  private countOwned(owner: string): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.owner === owner) n++;
    return n;
  }

  private isIdle(s: Session): boolean {
    return s.pending === 0 && this.now() - s.lastUsed >= this.idleTimeoutMs;
  }

  /**
   * When a refused client may try again: when the first session that could be evicted goes idle (its
   * owner's, if the owner is at its cap), within [1 s, 60 s]; a hint, since deletions free sessions sooner.
   */
  private retryAfterMs(owner?: string): number {
    const now = this.now();
    let soonest = Infinity;
    for (const s of this.sessions.values()) {
      if (owner !== undefined && s.owner !== owner) continue;
      soonest = Math.min(soonest, s.pending > 0 ? this.idleTimeoutMs : s.lastUsed + this.idleTimeoutMs - now);
    }
    return Math.min(MAX_RETRY_AFTER_MS, Math.max(1000, soonest));
  }

  /** Runs `fn` after the session's earlier requests; other sessions are not held up. */
  private enqueue<T>(id: string, fn: (s: Session) => Promise<T>): Promise<T> {
    const s = this.get(id);
    if (s.pending >= this.maxQueuedPerSession) {
      this.counters.refusedSessionQueue++;
      throw new CloudError(
        "rate_limited",
        `This session already has ${s.pending} requests waiting (the most allowed); wait for their answers before sending more`,
        { retryAfterMs: 1000 },
      );
    }
    if (this.pendingTotal >= this.maxQueued) {
      this.counters.refusedServerQueue++;
      throw overloaded(`The server is busy: ${this.pendingTotal} requests are waiting for the model (the most it queues); retry shortly`, 1000);
    }
    this.counters.requests++;
    s.pending++;
    this.pendingTotal++;
    this.peakPending = Math.max(this.peakPending, this.pendingTotal);
    s.lastUsed = this.now();
    const result = s.tail.then(() => {
      if (s.closed) throw new CloudError("session_not_found", `Session ${id} was deleted`);
      return fn(s);
    });
    s.tail = result.then(noop, noop);
    return result.finally(() => {
      s.pending--;
      this.pendingTotal--;
      s.lastUsed = this.now();
    });
  }

  private checkDelta(s: Session, base: number, tokens: readonly number[], prefix?: string): void {
    const length = s.sequence.nextTokenIndex;
    if (base > length) {
      this.counters.outOfSync++;
      throw new CloudError("out_of_sync", `The session holds ${length} tokens; the delta starts at ${base}`, { length });
    }
    if (prefix !== undefined && base > 0 && prefixHash(s.sequence.contextTokens, base) !== prefix) {
      this.counters.outOfSync++;
      throw new CloudError("out_of_sync", `The session's first ${base} tokens are not the ones the client sent`, { length, prefixMismatch: true });
    }
    if (base + tokens.length > this.capacity) {
      this.counters.overflows++;
      throw new CloudError(
        "context_overflow",
        `${base + tokens.length} tokens do not fit in a session of ${this.capacity} tokens`,
      );
    }
    for (const t of tokens) {
      // the server validates requests already; this guards the native code against any other caller
      if (!Number.isInteger(t) || t < 0 || t >= this.vocabSize) throw new CloudError("bad_request", `Token ID ${t} is outside [0, ${this.vocabSize})`);
    }
  }

  private async rollback(s: Session, keep: number): Promise<void> {
    const length = s.sequence.nextTokenIndex;
    if (keep >= length) return;
    await s.sequence.eraseContextTokenRanges([{ start: keep, end: length }]);
    this.counters.rollbacks++;
    this.counters.tokensRolledBack += length - keep;
  }

  private async evaluate(s: Session, tokens: readonly number[]): Promise<void>;
  private async evaluate(s: Session, tokens: readonly number[], topK: number, logprob: boolean): Promise<Omit<NextResponse, keyof AppendResponse>>;
  private async evaluate(
    s: Session,
    tokens: readonly number[],
    topK?: number,
    logprob = true,
  ): Promise<Omit<NextResponse, keyof AppendResponse> | void> {
    try {
      if (topK === undefined) {
        if (tokens.length > 0) await s.sequence.evaluateWithoutGeneratingNewTokens(asTokens(tokens));
        this.counters.tokensEvaluated += tokens.length;
        return;
      }
      const ids = asTokens(tokens);
      const last = ids[ids.length - 1];
      const results = await s.sequence.controlledEvaluate([
        ...ids.slice(0, -1),
        // temperature 0: greedy, and the probabilities are the full softmax, not renormalised over a
        // truncated candidate set (FACTS.md)
        // the log-probability (`confidence`) sorts the whole vocabulary: only when asked (NextRequest.logprob)
        [last, { generateNext: { token: true, confidence: logprob, probabilities: logprob && topK > 0, options: { temperature: 0 } } }],
      ]);
      this.counters.tokensEvaluated += tokens.length;
      const next = results[tokens.length - 1]?.next;
      if (next?.token == null || (logprob && next.confidence === undefined)) throw new Error("node-llama-cpp returned no next token");
      if (!logprob) return { tokenId: next.token, top: [] };
      return { tokenId: next.token, logprob: safeLog(next.confidence!), top: topLogprobs(next.probabilities, topK) };
    } catch (err) {
      if (err instanceof ContextShiftRefused) {
        throw new CloudError("context_overflow", `The session is full (${this.capacity} tokens)`);
      }
      throw err;
    }
  }

  /**
   * A cleared sequence: a free one, a new one from the context, or one a closing session is about to
   * give back. Idle sessions were evicted by open() already; sessions in use are never taken over.
   */
  private async takeSequence(): Promise<LlamaContextSequence> {
    for (;;) {
      const reused = this.free.pop();
      if (reused) return reused;
      if (this.sequencesCreated < this.maxSessions && this.context.sequencesLeft > 0) {
        this.sequencesCreated++;
        return this.context.getSequence({
          // never let node-llama-cpp drop tokens to make room: the client's history must stay intact
          contextShift: {
            strategy: () => {
              throw new ContextShiftRefused("context shift refused");
            },
          },
        });
      }
      if (this.releasing.size === 0) {
        this.counters.refusedTooMany++;
        throw new CloudError(
          "too_many_sessions",
          `All ${this.maxSessions} sessions are in use; try again later (idle sessions are freed after ${Math.round(this.idleTimeoutMs / 1000)} s)`,
          { retryAfterMs: this.retryAfterMs() },
        );
      }
      // a deleted or evicted session's sequence is on its way back; another open() may still win it
      await Promise.all(this.releasing);
    }
  }

  /** Ends a session: it leaves the map at once, its sequence is cleared for reuse once idle. */
  private close(s: Session): Promise<void> {
    if (s.closed) return Promise.resolve();
    s.closed = true;
    this.sessions.delete(s.id);
    const done: Promise<void> = this.release(s).finally(() => this.releasing.delete(done));
    this.releasing.add(done);
    return done;
  }

  /**
   * Clears the sequence and puts it on the free list. Clearing (erasing every token frees its KV cells)
   * instead of `sequence.dispose()`: disposal returns the slot to the context asynchronously, under an
   * internal lock with no promise to await, so a session created right after a delete could find no
   * sequence left.
   */
  private async release(s: Session): Promise<void> {
    await s.tail; // a running request finishes first
    if (this.disposed) return;
    try {
      await s.sequence.eraseContextTokenRanges([{ start: 0, end: s.sequence.nextTokenIndex }]);
      this.free.push(s.sequence);
    } catch {
      // the sequence is unusable: give its slot back to the context instead
      try {
        s.sequence.dispose();
      } catch {
        // already gone with the context
      }
      this.sequencesCreated--;
    }
  }
}

/** node-llama-cpp brands token IDs; these were range-checked against the vocabulary in checkDelta(). */
function asTokens(ids: readonly number[]): Token[] {
  return ids.slice() as Token[];
}

function topLogprobs(probabilities: Map<Token, number> | undefined, k: number): TokenLogprob[] {
  if (k === 0 || !probabilities) return [];
  const top: TokenLogprob[] = [];
  // node-llama-cpp returns the map sorted by probability, highest first
  for (const [tokenId, p] of probabilities) {
    if (top.length >= k) break;
    top.push({ tokenId, logprob: safeLog(p) });
  }
  return top.sort((a, b) => b.logprob - a.logprob); // stable: keeps the map's order on ties
}

/** ln p, clamped to [LOG_FLOOR, 0]: rounding can give p a hair above 1, and ln 0 is not JSON. */
function safeLog(p: number): number {
  return p > 0 ? Math.min(0, Math.max(LOG_FLOOR, Math.log(p))) : LOG_FLOOR;
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
}

function noop(): void {}

/**
 * The session pool of the cloud server: admission (per client, against the sessions and KV budget),
 * the per-session request queues and the server's bound on waiting work, idle eviction, and the
 * sequences of the shared context the sessions hold. What runs on a session is the predictor's
 * (predictor.ts); sessions.ts puts the two together.
 */
import { randomUUID } from "node:crypto";
import type { LlamaContext, LlamaContextSequence } from "node-llama-cpp";
import { prefixHash, type AppendResponse } from "../shared/protocol.js";
import { threadsFor } from "../inference/llama.js";
import { CloudError, overloaded } from "./errors.js";
import { orderedOutputsStrategy } from "./batching.js";
import { kvLayout } from "./memory.js";
import {
  ContextShiftRefused,
  MAX_RETRY_AFTER_MS,
  newCounters,
  resolveLimits,
  type MemoryStats,
  type QueueStats,
  type Session,
  type SessionCounters,
  type SessionManagerOptions,
  type SessionStats,
  type SessionUsage,
} from "./sessionTypes.js";

export class SessionPool {
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
  /** what the pool and the predictor count (SessionStats) */
  readonly counters: SessionCounters = newCounters();
  private readonly sweepTimer: NodeJS.Timeout;
  private disposed = false;

  private constructor(
    /** the shared context: one sequence per session */
    readonly context: LlamaContext,
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

  static async create(opts: SessionManagerOptions): Promise<SessionPool> {
    const { bytesPerToken } = kvLayout(opts.model);
    const limits = resolveLimits(opts, bytesPerToken);
    // assigned once the context exists; the batching strategy, made first, reads it through a closure
    // eslint-disable-next-line prefer-const
    let created: LlamaContext | undefined;
    const context = await opts.model.createContext({
      // per sequence: node-llama-cpp multiplies it by `sequences` itself (see sessions.ts)
      contextSize: limits.contextSize,
      sequences: limits.maxSessions,
      threads: opts.threads ?? threadsFor(opts.model.size),
      // token-level routing rolls back constantly; with a sliding-window cache, erasing tokens would force
      // node-llama-cpp to re-evaluate the whole sequence, so keep the full cache for SWA models
      swaFullCache: true,
      // sessions must never receive each other's predictions (cloud/batching.ts)
      batching: { itemPrioritizationStrategy: orderedOutputsStrategy(() => created) },
    });
    created = context;
    const pool = new SessionPool(context, opts.vocabSize, opts.now ?? Date.now, { ...limits, kvBytesPerToken: bytesPerToken });
    const budget = limits.kvBytesBudget;
    if (budget !== null && pool.kvBytesAllocated > budget) {
      // cannot happen with the padding assumed in resolveLimits; if node-llama-cpp pads differently, say so rather than overrun
      await pool.dispose();
      throw new Error(`The context took ${pool.kvBytesAllocated} bytes of KV cache, more than the budget of ${budget}`);
    }
    return pool;
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

  /** Deletes a session if it is there (the user's Forget), after the requests already running on it. */
  async forget(id: string): Promise<{ existed: boolean; tokensDropped: number }> {
    this.ensureOpen();
    const s = this.sessions.get(id);
    if (!s) return { existed: false, tokensDropped: 0 };
    const tokensDropped = s.sequence.nextTokenIndex;
    this.counters.deleted++;
    await this.close(s);
    return { existed: true, tokensDropped };
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
    return {
      pending: this.pendingTotal,
      maxPending: this.maxQueued,
      maxPendingPerSession: this.maxQueuedPerSession,
      peakPending: this.peakPending,
    };
  }

  /** Per-session usage, largest first, without IDs. */
  usage(): SessionUsage[] {
    const now = this.now();
    return [...this.sessions.values()]
      .map((s) => {
        const tokens = s.sequence.nextTokenIndex;
        return {
          tokens,
          kvBytes: tokens * this.kvBytesPerToken,
          pending: s.pending,
          idleMs: s.pending > 0 ? 0 : Math.max(0, now - s.lastUsed),
        };
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

  private ensureOpen(): void {
    // not the client's fault and not a bug: 503, so clients back off and come back to the restarted server
    if (this.disposed) throw new CloudError("internal", "The server is shutting down", { status: 503, retryAfterMs: 5000 });
  }

  private get(id: string): Session {
    this.ensureOpen();
    const s = this.sessions.get(id);
    if (!s)
      throw new CloudError("session_not_found", `No session ${id} (it was deleted, evicted after being idle, or the server restarted)`);
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
  enqueue<T>(id: string, fn: (s: Session) => Promise<T>): Promise<T> {
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
      throw overloaded(
        `The server is busy: ${this.pendingTotal} requests are waiting for the model (the most it queues); retry shortly`,
        1000,
      );
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

  checkDelta(s: Session, base: number, tokens: readonly number[], prefix?: string): void {
    const length = s.sequence.nextTokenIndex;
    if (base > length) {
      this.counters.outOfSync++;
      throw new CloudError("out_of_sync", `The session holds ${length} tokens; the delta starts at ${base}`, { length });
    }
    if (prefix !== undefined && base > 0 && prefixHash(s.sequence.contextTokens, base) !== prefix) {
      this.counters.outOfSync++;
      throw new CloudError("out_of_sync", `The session's first ${base} tokens are not the ones the client sent`, {
        length,
        prefixMismatch: true,
      });
    }
    if (base + tokens.length > this.capacity) {
      this.counters.overflows++;
      throw new CloudError("context_overflow", `${base + tokens.length} tokens do not fit in a session of ${this.capacity} tokens`);
    }
    for (const t of tokens) {
      // the server validates requests already; this guards the native code against any other caller
      if (!Number.isInteger(t) || t < 0 || t >= this.vocabSize)
        throw new CloudError("bad_request", `Token ID ${t} is outside [0, ${this.vocabSize})`);
    }
  }

  async rollback(s: Session, keep: number): Promise<void> {
    const length = s.sequence.nextTokenIndex;
    if (keep >= length) return;
    await s.sequence.eraseContextTokenRanges([{ start: keep, end: length }]);
    this.counters.rollbacks++;
    this.counters.tokensRolledBack += length - keep;
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

function noop(): void {}

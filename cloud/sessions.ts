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
 *
 * The work is split along its seams: the session pool (sessionPool.ts: admission, queues, eviction)
 * and the predictor (predictor.ts: next, continuation, route). This class is the one the server uses.
 */
import type { AppendResponse, NextResponse, RouteEnd, RouteLine } from "../shared/protocol.js";
import type { SamplingSettings } from "../shared/sampling.js";
import type { ReplicaRun } from "./replica.js";
import { Predictor } from "./predictor.js";
import { SessionPool } from "./sessionPool.js";
import type { MemoryStats, QueueStats, SessionManagerOptions, SessionStats, SessionUsage } from "./sessionTypes.js";

export {
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_QUEUED_PER_SESSION,
  DEFAULT_MAX_SESSIONS,
  defaultMaxQueued,
  type MemoryStats,
  type QueueStats,
  type SessionCounters,
  type SessionManagerOptions,
  type SessionStats,
  type SessionUsage,
} from "./sessionTypes.js";

export class SessionManager {
  private constructor(
    private readonly pool: SessionPool,
    private readonly predictor: Predictor,
  ) {}

  static async create(opts: SessionManagerOptions): Promise<SessionManager> {
    const pool = await SessionPool.create(opts);
    return new SessionManager(pool, new Predictor(pool));
  }

  /** open sessions */
  get size(): number {
    return this.pool.size;
  }
  get maxSessions(): number {
    return this.pool.maxSessions;
  }
  /** tokens one session can hold */
  get capacity(): number {
    return this.pool.capacity;
  }
  get idleTimeoutMs(): number {
    return this.pool.idleTimeoutMs;
  }
  get kvBytesAllocated(): number {
    return this.pool.kvBytesAllocated;
  }

  /** Opens a session for `owner` (the client's key), after evicting sessions idle beyond the threshold. */
  open(owner: string): Promise<{ sessionId: string }> {
    return this.pool.open(owner);
  }

  /** Applies the delta: tokens[base..] of the client's history. */
  append(id: string, base: number, tokens: readonly number[], prefix?: string): Promise<AppendResponse> {
    return this.predictor.append(id, base, tokens, prefix);
  }

  /** Applies the delta and predicts the LLM's greedy next token; with `draft`, that many more (NextRequest.draft). */
  next(
    id: string,
    base: number,
    tokens: readonly number[],
    topK: number,
    draft = 0,
    prefix?: string,
    logprob = true,
    sampling?: SamplingSettings,
  ): Promise<NextResponse> {
    return this.predictor.next(id, base, tokens, topK, draft, prefix, logprob, sampling);
  }

  /** The routed decoding continued with the replica, each position to `emit` as decided (Predictor.route). */
  route(
    id: string,
    req: { base: number; tokens: readonly number[]; prefix?: string; max: number; position: number; sampling?: SamplingSettings },
    follow: (session: string, history: readonly number[]) => Promise<ReplicaRun | null>,
    emit: (line: RouteLine) => void,
    signal: AbortSignal,
  ): Promise<{ end: RouteEnd; length: number }> {
    return this.predictor.route(id, req, follow, emit, signal);
  }

  /** Checks that the session exists (throws session_not_found otherwise) and marks it used. */
  touch(id: string): void {
    this.pool.touch(id);
  }

  /** Cuts the session's history to `length` tokens. */
  truncate(id: string, length: number): Promise<AppendResponse> {
    return this.pool.truncate(id, length);
  }

  /** Deletes a session; requests already running finish first, queued ones fail with session_not_found. */
  delete(id: string): Promise<void> {
    return this.pool.delete(id);
  }

  /** Deletes a session if it is there (the user's Forget): whether it was, and how many tokens it held. */
  forget(id: string): Promise<{ existed: boolean; tokensDropped: number }> {
    return this.pool.forget(id);
  }

  /** Evicts every session idle for longer than the idle timeout; resolves to how many. */
  sweep(): Promise<number> {
    return this.pool.sweep();
  }

  stats(): SessionStats {
    return this.pool.stats();
  }

  memory(): MemoryStats {
    return this.pool.memory();
  }

  queue(): QueueStats {
    return this.pool.queue();
  }

  /** Per-session usage, largest first, without IDs. */
  usage(): SessionUsage[] {
    return this.pool.usage();
  }

  /** Frees everything. Requests still running finish (or fail) first; queued ones fail. */
  dispose(): Promise<void> {
    return this.pool.dispose();
  }
}

/**
 * What the cloud server's session pool (sessionPool.ts) and predictor (predictor.ts) share: the
 * options, the counters and statistics operators read, a session's record, and how the options
 * resolve to limits before anything is allocated.
 */
import type { LlamaContextSequence, LlamaModel } from "node-llama-cpp";
import { MAX_SEQUENCES, sessionsWithinBudget } from "./memory.js";

export const DEFAULT_MAX_SESSIONS = 8;
export const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60_000;
/** the device client sends one request at a time per session; a few more cover abandoned ones */
export const DEFAULT_MAX_QUEUED_PER_SESSION = 8;
const DEFAULT_CONTEXT_SIZE = 4096;
/** node-llama-cpp pads a sequence's context to a multiple of this (padSafeContextSize) */
const CONTEXT_PAD = 256;
/** Retry-After for a full server when no session will be idle soon: a hint, not a promise */
export const MAX_RETRY_AFTER_MS = 60_000;

/** Default bound on requests waiting for the model across all sessions: room for every session's usual one and then some. */
export function defaultMaxQueued(maxSessions: number): number {
  return Math.max(32, 4 * maxSessions);
}

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

export interface Session {
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

/** thrown by the context-shift strategy: a session never drops tokens to make room */
export class ContextShiftRefused extends Error {}

export function newCounters(): SessionCounters {
  return {
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
}

/** The pool's limits, resolved from the options and checked, before the context is made. */
export interface PoolLimits {
  contextSize: number;
  maxSessions: number;
  idleTimeoutMs: number;
  maxPerOwner: number;
  maxQueuedPerSession: number;
  maxQueued: number;
  kvBytesBudget: number | null;
}

export function resolveLimits(opts: SessionManagerOptions, bytesPerToken: number): PoolLimits {
  const contextSize = positiveInt(opts.contextSize ?? Math.min(DEFAULT_CONTEXT_SIZE, opts.model.trainContextSize), "contextSize");
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
  return {
    contextSize,
    maxSessions,
    idleTimeoutMs: positiveInt(opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, "idleTimeoutMs"),
    maxPerOwner: positiveInt(opts.maxSessionsPerOwner ?? maxSessions, "maxSessionsPerOwner"),
    maxQueuedPerSession: positiveInt(opts.maxQueuedPerSession ?? DEFAULT_MAX_QUEUED_PER_SESSION, "maxQueuedPerSession"),
    maxQueued: positiveInt(opts.maxQueued ?? defaultMaxQueued(maxSessions), "maxQueued"),
    kvBytesBudget: budget,
  };
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
}

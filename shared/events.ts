import type { SamplingSettings } from "./sampling.js";

/**
 * Token events: what the collaborative decoder emits for every token it commits.
 * One definition, used by the engine (producer), the terminal chat, the bridge and the renderer.
 */

/** Where a committed token came from. */
export type Origin =
  /** the local small model (SLM) chose it: the router was confident enough */
  | "local"
  /** the cloud large model (LLM) chose it: the router's confidence was below τ */
  | "cloud"
  /** the router wanted the cloud, but the call failed or missed its deadline: the SLM's own token */
  | "fallback";

/** One candidate of a model's next-token distribution. */
export interface Candidate {
  tokenId: number;
  /** probability in [0, 1] (SLM) */
  prob: number;
  text?: string;
}

/** What the cloud said about one position (present when a cloud call answered). */
export interface CloudVerdict {
  tokenId: number;
  /** natural log-probability of that token under the LLM; absent for a continuation's token (`fromDraft`) */
  logprob?: number;
  top: { tokenId: number; logprob: number }[];
  /**
   * The token came with an earlier call's continuation (NextRequest.draft), not from a call of its
   * own: the device verified that the text before it is what the LLM continued from.
   */
  fromDraft?: boolean;
}

export interface TokenEvent {
  /** position in the answer, from 0 */
  index: number;
  tokenId: number;
  /**
   * Text this token releases. May be "" when the token ends inside a multi-byte character (the
   * text arrives with the token that completes it) or could still be the start of a stop string.
   */
  text: string;
  origin: Origin;
  /** router confidence that the SLM's token is acceptable, in [0, 1] */
  confidence: number;
  /** the threshold in force for this token */
  tau: number;
  /** wall time of the cloud call for this token in ms; null when no call was made */
  cloudLatencyMs: number | null;
  /** the SLM's token at this position, greedy or drawn (equal to tokenId unless origin is "cloud") */
  slmTokenId: number;
  /**
   * In a sampled answer: the probability of `slmTokenId` in the distribution the SLM drew it from
   * (after penalties, truncation and temperature). The LLM's probability of a cloud token is `cloud.logprob`.
   */
  slmProb?: number;
  /** the SLM's top candidates, when the engine was asked for them */
  slmTop?: Candidate[];
  cloud?: CloudVerdict;
  /** why a fallback happened (timeout, http 500, unreachable, ...) */
  fallbackReason?: string;
}

export type StopReason = "eog" | "stop-string" | "max-tokens" | "abort" | "context-full";

/** Totals over one answer. */
export interface AnswerSummary {
  tokens: number;
  cloudTokens: number;
  fallbackTokens: number;
  cloudCalls: number;
  bytesUp: number;
  bytesDown: number;
  tokensPerSecond: number;
  text: string;
  stopReason: StopReason;
  /** name of the router that scored the tokens */
  router: string;
  elapsedMs: number;
  /** what the answer was sampled with (seed included): enough to reproduce it; absent: greedy, as before sampling */
  sampling?: SamplingSettings;
}

/** Pure fold of token events into the counters of a summary (used by the CLI and the UI). */
export function countOrigins(events: readonly Pick<TokenEvent, "origin" | "cloudLatencyMs">[]): {
  tokens: number;
  cloudTokens: number;
  fallbackTokens: number;
  cloudCalls: number;
} {
  let cloudTokens = 0;
  let fallbackTokens = 0;
  let cloudCalls = 0;
  for (const e of events) {
    if (e.origin === "cloud") cloudTokens++;
    else if (e.origin === "fallback") fallbackTokens++;
    if (e.cloudLatencyMs != null) cloudCalls++;
  }
  return { tokens: events.length, cloudTokens, fallbackTokens, cloudCalls };
}

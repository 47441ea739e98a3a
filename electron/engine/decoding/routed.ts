/**
 * A routed position: what the cloud said there (one tagged result), the one function that makes the
 * token event from it, and the interface every way of getting that answer implements.
 */
import type { Candidate, CloudVerdict, TokenEvent } from "../../../shared/events.js";
import type { RoutingDecision } from "../../../shared/routing.js";
import type { SamplingSettings } from "../../../shared/sampling.js";
import type { LocalModel, SlmStep } from "../../../inference/localModel.js";

/** What a routed position got: the cloud's token, the SLM's own marked fallback, or nothing (aborted). */
export type RoutedResult =
  | {
      kind: "cloud";
      tokenId: number;
      /** wall time of the request that brought it; null when it came without one (a continuation) */
      latencyMs: number | null;
      verdict: CloudVerdict;
      /** the LLM's continuation after this token, when one was asked for (else empty) */
      continuation: readonly number[];
    }
  | { kind: "fallback"; reason: string; latencyMs: number | null }
  | { kind: "aborted" };

export type Answered = Exclude<RoutedResult, { kind: "aborted" }>;

/** The event for keeping the SLM's own token at `index` (the router kept it, or before a routed position is answered). */
export function localEvent(slm: Pick<LocalModel, "detokenize">, step: SlmStep, decision: RoutingDecision, index: number): TokenEvent {
  const event: TokenEvent = {
    index,
    tokenId: step.tokenId,
    text: "",
    origin: "local",
    confidence: decision.confidence,
    tau: decision.tau,
    cloudLatencyMs: null,
    slmTokenId: step.tokenId,
  };
  if (step.sampledProb !== undefined) event.slmProb = step.sampledProb;
  if (step.top) event.slmTop = step.top.map((c): Candidate => ({ ...c, text: slm.detokenize([c.tokenId]) }));
  return event;
}

/** The event of a routed position: its local event with what the cloud said there. */
export function routedEvent(local: TokenEvent, result: Answered): TokenEvent {
  if (result.kind === "fallback") {
    return { ...local, origin: "fallback", fallbackReason: result.reason, cloudLatencyMs: result.latencyMs };
  }
  return { ...local, tokenId: result.tokenId, origin: "cloud", cloudLatencyMs: result.latencyMs, cloud: result.verdict };
}

/** A routed position to answer. */
export interface RoutedAt {
  /** the committed tokens (prompt and answer so far), or guessed ones for a pipelined call; the position follows them */
  history: readonly number[];
  /** the answer position (0 = the answer's first token) */
  position: number;
  tau: number;
  /** answer positions left after this one (bounded by the context too) */
  room: number;
  /** most tokens of the LLM's continuation worth asking for (0 = none) */
  continuation: number;
  /** whether the position before was routed too (a continuation is likely to be used then) */
  previousRouted: boolean;
  signal: AbortSignal | undefined;
  /** how the answer is sampled (absent: greedy): the cloud draws its token with the same settings */
  sampling?: SamplingSettings;
}

/** The answer at a routed position as it comes: `settled` is set once `result` has resolved. */
export class Pending {
  settled: RoutedResult | undefined;

  constructor(
    readonly result: Promise<RoutedResult>,
    /** the answer is in already (or needs no network): running ahead would only cost a step to undo */
    readonly ready = false,
    /** the SLM may ask ahead about later positions (pipelined calls) while this is awaited */
    readonly pipelinable = true,
  ) {
    void result.then((r) => (this.settled = r));
  }

  /** Whether the settled answer overrules the SLM's `guess` (a failure leaves the guess standing). */
  overrules(guess: number): boolean {
    return this.settled?.kind === "cloud" && this.settled.tokenId !== guess;
  }
}

/**
 * A source of the token at a routed position: a call per position (`callSource.ts`), or the cloud
 * replica's stream (`replicaSource.ts`). Each is told what is committed, so it can keep the cloud's
 * copy of the conversation current (background sync) or check its stream against it.
 */
export interface TokenSource {
  ask(at: RoutedAt): Pending;
  /** after the prompt and after every committed token */
  committed(history: readonly number[]): void;
  /** the answer has ended */
  close(): void;
}
